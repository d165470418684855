"""Activation functions by the names configs use (``hidden_act``, ``activation_function``).

One table maps every supported name to a callable, so each model resolves its activation the same
way and an unsupported name fails once, at build time, with the list of names that work; the GELU
variants that torch has no single call for (GPT-2's tanh form, "fast", "quick") are defined here.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf)
    "gelu_new": _gelu_tanh,  # GPT-2's tanh approximation
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function a config names (``hidden_act``, ``activation_function``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(
            f"activation {name!r} is not supported; use one of {sorted(ACTIVATIONS)}"
        ) from None
