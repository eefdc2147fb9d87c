"""BiSeNet face parsing (zllrunning/face-parsing.PyTorch) in the ``79999_iter.pth`` layout.

A ResNet-18 context path (``cp.resnet``) with two attention refinement modules and a global
context branch, a feature fusion module on the 1/8 features and three output heads. Trained
on CelebAMask-HQ (19 classes, :data:`CELEBAMASK_CLASSES`) with 512x512 ImageNet-normalised
inputs. State_dict layout: 191 keys (``cp.resnet.*``, ``cp.arm16|arm32.*``,
``cp.conv_head32|conv_head16|conv_avg.*``, ``ffm.*``, ``conv_out|conv_out16|conv_out32.*``).

Construction never downloads anything (the official ``Resnet18`` fetches ImageNet weights in
its constructor; here the weights come only from :func:`load_bisenet`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.iresnet import load_strict, read_state_dict

__all__ = ["BiSeNet", "load_bisenet", "parse_faces", "CELEBAMASK_CLASSES", "PARSING_SIZE"]

#: The 19 CelebAMask-HQ labels in the order of BiSeNet's output channels.
CELEBAMASK_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
PARSING_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    """Conv (no bias) + BN + ReLU.  Shape: ``[B, cin, H, W] -> [B, cout, H/stride, W/stride]``."""

    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """torchvision-style ResNet basic block.  Shape: ``[B, cin, H, W] -> [B, cout, H/stride, W/stride]``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        res = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(short + res)


class Resnet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 feature maps (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU, then a channel gate from the global average (1x1 conv, BN, sigmoid)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet-18 + ARMs + global context; returns (feat8, refined 1/8, refined 1/16)."""

    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean((2, 3), keepdim=True))  # [B,128,1,1], broadcast = nearest upsample
        up32 = F.interpolate(self.arm32(feat32) + avg, size=feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16), up32


class FeatureFusionModule(nn.Module):
    """Concatenate, ConvBNReLU 1x1, then a squeeze-excitation gate added back: ``f + f * gate``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp: Tensor, fcp: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    """ConvBNReLU 3x3 then a 1x1 classifier (no bias)."""

    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet face parser (the spatial path is the ResNet 1/8 feature, as in face-parsing.PyTorch).

    Args:
        n_classes: output classes (19 for CelebAMask-HQ).

    Shape:
        - Input: ``[B, 3, H, W]`` ImageNet-normalised RGB (H, W multiples of 32; 512 when trained).
        - Output: ``(out, out16, out32)``, each ``[B, n_classes, H, W]`` logits (bilinear,
          align_corners True, from 1/8 resolution); ``out`` is the main head.
    """

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise VidinvError(f"BiSeNet expects float images [B,3,H,W], got {tuple(x.shape)} {x.dtype}")
        if x.shape[2] < 32 or x.shape[3] < 32:
            raise VidinvError(
                f"BiSeNet needs images of at least 32x32 (512x512 when trained), got {tuple(x.shape)}"
            )
        size = x.shape[2:]
        feat8, cp8, cp16 = self.cp(x)
        heads = (self.conv_out(self.ffm(feat8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16))
        out, out16, out32 = (F.interpolate(h, size=size, mode="bilinear", align_corners=True) for h in heads)
        return out, out16, out32


def load_bisenet(src: str | Path | Mapping[str, Any]) -> BiSeNet:
    """Build a :class:`BiSeNet` from a ``79999_iter.pth``-layout state_dict, strict, eval mode.

    The class count is read from ``conv_out.conv_out.weight``. Raises
    :class:`~vidinv.errors.VidinvError` on any key or shape mismatch.
    """
    what = "BiSeNet face-parsing checkpoint"
    sd = read_state_dict(src, what)
    if "conv_out.conv_out.weight" not in sd:
        raise VidinvError(f"{what} does not match the official layout: missing key conv_out.conv_out.weight")
    model = BiSeNet(int(sd["conv_out.conv_out.weight"].shape[0]))
    return load_strict(model, sd, what).eval()


def to_parsing_input(images: Tensor, size: int = PARSING_SIZE) -> Tensor:
    """The official ``stylegan_to_classifier``: [-1,1] -> [0,1] (clamped), bilinear resize, ImageNet norm.

    Shape:
        - Input: ``[B, 3, H, W]`` in [-1, 1]
        - Output: ``[B, 3, size, size]``
    """
    x = (0.5 * images + 0.5).clamp(0, 1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def parse_faces(bisenet: BiSeNet, images: Tensor, size: int = PARSING_SIZE) -> Tensor:
    """Per-pixel CelebAMask-HQ labels for face images.

    The images go through :func:`to_parsing_input` (512x512), the main head's logits are resized
    back to the input size (bilinear, align_corners False) and the argmax is taken there.

    Shape:
        - Input: ``[B, 3, H, W]`` in [-1, 1]
        - Output: ``[B, H, W]`` int64 labels in ``[0, n_classes)`` (see :data:`CELEBAMASK_CLASSES`).
    """
    ok = torch.is_tensor(images) and images.ndim == 4 and images.shape[1] == 3
    if not ok or not images.is_floating_point():
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise VidinvError(f"parse_faces expects float images [B,3,H,W] in [-1,1], got {shape}")
    p = next(bisenet.parameters())
    out = bisenet(to_parsing_input(images.to(p.device, p.dtype), size))[0]
    out = F.interpolate(out, size=images.shape[2:], mode="bilinear", align_corners=False)
    return out.argmax(dim=1)
