"""Ranger (RAdam + Lookahead, with gradient centralisation) and the step-based LR schedule.

Ranger is the optimizer of the Feature-Style encoder (and pSp/e4e): every step is a rectified
Adam (RAdam) step, and every ``k`` steps the weights are pulled back towards a slow copy by
Lookahead, ``slow <- slow + alpha (fast - slow); fast <- slow``. All state (moments, step count,
slow weights) lives in ``optimizer.state`` so ``state_dict()`` / ``load_state_dict()`` resume it
exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from vidinv.errors import VidinvError

__all__ = ["Ranger", "build_optimizer", "build_scheduler"]


class Ranger(torch.optim.Optimizer):
    """RAdam + Lookahead (+ gradient centralisation), as in the Ranger 2020 optimizer.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        alpha: Lookahead slow-weight step (0..1).
        k: Lookahead synchronisation period in steps.
        n_sma_threshold: RAdam's variance-rectification threshold (below it: plain momentum SGD).
        betas: Adam moment decays (0.95, 0.999 in the Feature-Style config).
        eps: Adam epsilon.
        weight_decay: decoupled-style decay ``p <- p - lr * wd * p``.
        use_gc: centralise gradients of tensors with more than one dimension (conv and fc weights).

    Shape:
        Parameters of any shape; sparse gradients are not supported.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 0.5, k: int = 6,
                 n_sma_threshold: float = 5.0, betas: Sequence[float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, use_gc: bool = True):
        if not lr > 0:
            raise VidinvError(f"Ranger: lr must be > 0, got {lr}")
        if not 0.0 <= alpha <= 1.0:
            raise VidinvError(f"Ranger: alpha must be in [0, 1], got {alpha}")
        if int(k) < 1:
            raise VidinvError(f"Ranger: k must be >= 1, got {k}")
        if not eps > 0 or not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise VidinvError(f"Ranger: need eps > 0 and two betas in [0, 1), got eps={eps} betas={tuple(betas)}")
        defaults = dict(lr=lr, alpha=alpha, k=int(k), n_sma_threshold=n_sma_threshold, betas=tuple(betas),
                        eps=eps, weight_decay=weight_decay, use_gc=use_gc)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim API
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise VidinvError("Ranger does not support sparse gradients")
                grad = p.grad.float()
                if group["use_gc"] and grad.ndim > 1:  # gradient centralisation
                    grad = grad - grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True)
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["slow_buffer"] = p.detach().float().clone()
                state["step"] += 1
                t = int(state["step"].item())
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                beta2_t = beta2**t
                n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
                rectified = n_sma > group["n_sma_threshold"]
                if rectified:
                    r = (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
                    step_size = math.sqrt((1 - beta2_t) * r) / (1 - beta1**t)
                else:
                    step_size = 1.0 / (1 - beta1**t)
                pf = p.detach().float()
                if group["weight_decay"]:
                    pf.add_(pf, alpha=-group["weight_decay"] * group["lr"])
                if rectified:
                    pf.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size * group["lr"])
                else:
                    pf.add_(m, alpha=-step_size * group["lr"])
                if t % group["k"] == 0:  # Lookahead: interpolate towards the slow weights, then sync
                    slow = state["slow_buffer"]
                    slow.add_(pf - slow, alpha=group["alpha"])
                    pf.copy_(slow)
                p.copy_(pf)
        return loss


def build_optimizer(params: Iterable[Tensor], name: str = "ranger", lr: float = 1e-4,
                    betas: Sequence[float] = (0.95, 0.999), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The encoder optimizer: ``'ranger'`` (official) or ``'adam'``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise VidinvError("the optimizer got no trainable parameters")
    if name == "ranger":
        return Ranger(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise VidinvError(f"unknown optimizer {name!r}: use 'ranger' or 'adam'")


def build_scheduler(opt: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1):
    """Divide the LR by ``1/gamma`` at each milestone step (stepped once per iteration)."""
    ms = sorted(int(m) for m in milestones)
    if any(m <= 0 for m in ms):
        raise VidinvError(f"LR milestones must be positive step counts, got {list(milestones)}")
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=gamma)
