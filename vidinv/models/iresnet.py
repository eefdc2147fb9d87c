"""ArcFace IResNet (insightface ``arcface_torch``) in the ``backbone.pth`` layout.

The same residual blocks form the trunk of the Feature-Style encoder
(:mod:`vidinv.models.fs_encoder`), so the block builder lives here.

State_dict layout (iresnet50, 475 keys): ``conv1``, ``bn1``, ``prelu``, ``layer1..4.{i}``
(``bn1, conv1, bn2, prelu, conv2, bn3`` and, on the first block of a stage,
``downsample.0`` 1x1 conv stride 2 + ``downsample.1`` BN), ``bn2``, ``fc``, ``features``
(BatchNorm1d). ``dropout`` has no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidinv.errors import VidinvError

__all__ = ["IBasicBlock", "IResNet", "iresnet50", "load_iresnet", "make_stage"]

IRESNET50_LAYERS = (3, 4, 14, 3)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """The pre-activation-style ArcFace block: BN-conv-BN-PReLU-conv(stride)-BN + shortcut.

    Shape:
        - Input: ``[B, inplanes, H, W]``
        - Output: ``[B, planes, H/stride, W/stride]``
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


def make_stage(inplanes: int, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
    """One IResNet stage: ``blocks`` IBasicBlocks, the first one strided with a 1x1 shortcut.

    Shape:
        - Input: ``[B, inplanes, H, W]``
        - Output: ``[B, planes, H/stride, W/stride]``
    """
    down = None
    if stride != 1 or inplanes != planes:
        down = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
        )
    layers = [IBasicBlock(inplanes, planes, stride, down)]
    layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class IResNet(nn.Module):
    """ArcFace IResNet with configurable stage widths (the stem has ``widths[0]`` channels).

    Args:
        layers: blocks per stage, ``(3, 4, 14, 3)`` for iresnet50.
        widths: channels of the four stages.
        embedding: size of the identity embedding (``fc`` / ``features``).
        dropout: dropout before ``fc`` (0 in the released backbones; no-op in eval).

    Shape:
        - Input: ``[B, 3, 112, 112]`` in [-1, 1] (aligned ArcFace crop).
        - Output: ``[B, embedding]`` (not normalised); with ``return_features=True`` a list of
          the layer1..4 outputs ``[B, w_k, 56/2^k..]`` (56, 28, 14, 7) followed by the embedding.
    """

    fc_scale = 7 * 7
    input_size = 112

    def __init__(
        self,
        layers: Sequence[int] = IRESNET50_LAYERS,
        widths: Sequence[int] = (64, 128, 256, 512),
        embedding: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise VidinvError(f"IResNet needs 4 stages, got layers={tuple(layers)} widths={tuple(widths)}")
        self.layers, self.widths, self.embedding = tuple(layers), tuple(widths), embedding
        w = self.widths
        self.conv1 = _conv3x3(3, w[0])
        self.bn1 = nn.BatchNorm2d(w[0], eps=1e-5)
        self.prelu = nn.PReLU(w[0])
        self.layer1 = make_stage(w[0], w[0], layers[0])
        self.layer2 = make_stage(w[0], w[1], layers[1])
        self.layer3 = make_stage(w[1], w[2], layers[2])
        self.layer4 = make_stage(w[2], w[3], layers[3])
        self.bn2 = nn.BatchNorm2d(w[3], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(w[3] * self.fc_scale, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | list[Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.input_size,) * 2:
            raise VidinvError(f"IResNet expects [B,3,112,112] images in [-1,1], got {tuple(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        feats = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        emb = self.features(self.fc(x))  # [B, embedding]
        return feats + [emb] if return_features else emb


def iresnet50(
    widths: Sequence[int] = (64, 128, 256, 512), embedding: int = 512, dropout: float = 0.0
) -> IResNet:
    """IResNet-50 (blocks 3/4/14/3); the defaults are the released ArcFace ``backbone.pth`` sizes."""
    return IResNet(IRESNET50_LAYERS, widths, embedding, dropout)


# ----------------------------------------------------------------------------- loading helpers


def read_state_dict(src: str | Path | Mapping[str, Any], what: str = "checkpoint") -> dict[str, Tensor]:
    """A plain state_dict from a path or a loaded mapping (unwraps ``state_dict`` and ``module.``).

    Files are read with :func:`vidinv.models.checkpoint.safe_load` (``weights_only=True``); a
    missing file raises :class:`~vidinv.errors.InputError`, a bad one :class:`~vidinv.errors.VidinvError`.
    """
    if isinstance(src, (str, Path)):
        from vidinv.models.checkpoint import safe_load

        sd = safe_load(src)
    else:
        sd = src
    if not isinstance(sd, Mapping):
        raise VidinvError(f"{what}: expected a state_dict (a mapping), got {type(sd).__name__}")
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_strict(model: nn.Module, sd: Mapping[str, Tensor], what: str) -> nn.Module:
    """``model.load_state_dict(sd, strict=True)`` with a one-line error naming the bad keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {tuple(getattr(sd[k], 'shape', ()))}!={tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and (not torch.is_tensor(sd[k]) or sd[k].shape != v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{name} keys: {', '.join(keys[:3])}{more}")
        raise VidinvError(f"{what} does not match the official layout: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)
    return model


def count_blocks(sd: Mapping[str, Tensor], prefix: str) -> int:
    """Number of ``{prefix}.{i}.*`` blocks in a state_dict (0 when none)."""
    idx = {int(k[len(prefix) + 1:].split(".")[0]) for k in sd if k.startswith(prefix + ".")}
    if idx and idx != set(range(len(idx))):
        raise VidinvError(f"state_dict blocks {prefix}.* are not numbered 0..{len(idx) - 1}")
    return len(idx)


def _shape(sd: Mapping[str, Tensor], key: str, what: str) -> torch.Size:
    if key not in sd:
        raise VidinvError(f"{what} does not match the official layout: missing key {key}")
    return sd[key].shape


def load_iresnet(src: str | Path | Mapping[str, Any]) -> IResNet:
    """Build an IResNet from a ``backbone.pth``-layout state_dict, sizes inferred, strict, eval mode.

    Stage widths come from ``layer{k}.0.conv1.weight``, block counts from the ``layer{k}.{i}``
    indices and the embedding size from ``fc.weight``, so iresnet18/34/50/100 and narrow
    variants all load. Raises :class:`~vidinv.errors.VidinvError` on any key or shape mismatch.
    """
    what = "ArcFace IResNet checkpoint"
    sd = read_state_dict(src, what)
    widths = tuple(int(_shape(sd, f"layer{k}.0.conv1.weight", what)[0]) for k in range(1, 5))
    layers = tuple(count_blocks(sd, f"layer{k}") for k in range(1, 5))
    embedding = int(_shape(sd, "fc.weight", what)[0])
    model = IResNet(layers, widths, embedding)
    return load_strict(model, sd, what).eval()
