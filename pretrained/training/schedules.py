"""Learning-rate schedules and the AdamW optimizer with the reference's weight-decay grouping.

Schedules are ``LambdaLR`` multipliers with the reference's formulas (linear, cosine, constant,
constant_with_warmup, polynomial), so learning rates match step for step. The multipliers are
``functools.partial`` of module-level functions: a scheduler's ``state_dict`` then holds only
numbers, and loads with ``torch.load(weights_only=True)``.

Example::

    >>> import torch
    >>> from pretrained.training.schedules import get_scheduler
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=10)
    >>> lrs = []
    >>> for _ in range(4):
    ...     opt.step(); sched.step(); lrs.append(round(sched.get_last_lr()[0], 3))
    >>> lrs
    [0.5, 1.0, 0.875, 0.75]
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..errors import InvalidInputError


def _warmup(step: int, warmup: int) -> float:
    return float(step) / float(max(1, warmup))


def _constant(step: int) -> float:
    return 1.0


def _constant_with_warmup(step: int, *, num_warmup_steps: int) -> float:
    return _warmup(step, num_warmup_steps) if step < num_warmup_steps else 1.0


def _linear(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))


def _cosine(step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def _polynomial(step: int, *, num_warmup_steps: int, num_training_steps: int, lr_end: float,
                power: float, lr_init: float) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    if step > num_training_steps:
        return lr_end / lr_init  # LambdaLR multiplies by lr_init
    remaining = 1 - (step - num_warmup_steps) / (num_training_steps - num_warmup_steps)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def get_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int = 0,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict[str, Any] | None = None,
) -> LambdaLR:
    """A ``LambdaLR`` for ``name``; ``scheduler_specific_kwargs`` takes ``num_cycles`` (cosine,
    default 0.5) or ``lr_end``/``power`` (polynomial, defaults 1e-7 and 1.0)."""
    extra = dict(scheduler_specific_kwargs or {})
    if name == "constant":
        return LambdaLR(optimizer, _constant)
    if name == "constant_with_warmup":
        return LambdaLR(optimizer, partial(_constant_with_warmup, num_warmup_steps=num_warmup_steps))
    if name not in ("linear", "cosine", "polynomial"):
        raise InvalidInputError(f"lr_scheduler_type={name!r} is not supported; use linear, cosine, "
                                "constant, constant_with_warmup or polynomial")
    if num_training_steps is None:
        raise InvalidInputError(f"the {name!r} schedule needs num_training_steps")
    steps = dict(num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    if name == "linear":
        fn = partial(_linear, **steps)
    elif name == "cosine":
        fn = partial(_cosine, **steps, num_cycles=float(extra.pop("num_cycles", 0.5)))
    else:
        lr_init = optimizer.defaults["lr"]
        lr_end = float(extra.pop("lr_end", 1e-7))
        if not lr_init > lr_end:
            raise InvalidInputError(f"polynomial schedule: lr_end ({lr_end}) must be smaller "
                                    f"than the learning rate ({lr_init})")
        fn = partial(_polynomial, **steps, lr_end=lr_end, power=float(extra.pop("power", 1.0)),
                     lr_init=lr_init)
    if extra:
        raise InvalidInputError(f"lr_scheduler_kwargs {sorted(extra)} are not used by the "
                                f"{name!r} schedule")
    return LambdaLR(optimizer, fn)


# Parameters whose name matches one of these get no weight decay (the reference's rule).
_NO_DECAY = [re.compile(p) for p in (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)",
                                     r"_norm(?:$|\.)")]


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters weight decay applies to: not inside a LayerNorm, and not a bias or
    a norm by name."""
    inside_norm = {f"{m_name}.{p_name}" if m_name else p_name
                   for m_name, module in model.named_modules() if isinstance(module, nn.LayerNorm)
                   for p_name, _ in module.named_parameters()}
    return [n for n, _ in model.named_parameters()
            if n not in inside_norm and not any(p.search(n.lower()) for p in _NO_DECAY)]


def create_optimizer(model: nn.Module, args: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in two groups: with and without weight decay."""
    decay = set(decay_parameter_names(model))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise InvalidInputError("the model has no trainable parameter (requires_grad=True); "
                                "nothing to optimise")
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    fused = args.optim == "adamw_torch_fused" and _fused_ok(params[0][1])
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, fused=fused or None)


def _fused_ok(p: torch.Tensor) -> bool:
    return p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)


__all__ = ["get_scheduler", "create_optimizer", "decay_parameter_names"]
