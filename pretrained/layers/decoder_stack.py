"""The decoder layers of a Llama-family model as one module, so a backend can run them together.

:class:`DecoderLayers` is the checkpoint's ``layers`` list (``model.layers.0...``: a
``nn.ModuleList``, so keys, indexing and iteration are unchanged) with a ``forward`` that runs the
layers in order; :mod:`pretrained.backends` may swap it (by exact type) for one that computes the
same numbers in fewer calls. The math is the layers' own.

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Add(nn.Module):
    ...     def forward(self, x, cos, sin, mask, cache):
    ...         return x + 1
    >>> stack = DecoderLayers([Add(), Add()])
    >>> stack(torch.zeros(1), None, None, [None, None], None, None)
    tensor([2.])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class DecoderLayers(nn.ModuleList):
    """Pre-norm decoder layers called as ``layer(x, cos, sin, mask, cache)``, in order."""

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                masks: Sequence[torch.Tensor | None], cache: Any,
                states: list | None = None) -> torch.Tensor:
        """``x`` through every layer; ``masks[i]`` is layer i's attention mask (None: causal /
        every key). ``states``: a list each layer's output is appended to (hidden states)."""
        if states is None:
            y = self.joint_step(x, cos, sin, masks, cache)
            if y is not None:
                return y
        for layer, mask in zip(self, masks):
            x = layer(x, cos, sin, mask, cache)
            if states is not None:
                states.append(x)
        return x

    def joint_step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   masks: Sequence[torch.Tensor | None], cache: Any) -> torch.Tensor | None:
        """Where a backend's subclass computes every layer at once (the same numbers); None here:
        the layers run one by one. (A hook rather than an overridden ``forward``, so that under
        ``torch.compile`` the layers' frames are this module's whatever class runs them.)"""
        return None
