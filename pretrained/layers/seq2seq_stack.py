"""The decoder layers of a BART-family / Whisper decoder as one module, so a backend can run them
together.

:class:`Seq2SeqDecoderLayers` is the checkpoint's ``layers`` list (``decoder.layers.0...``: a
``nn.ModuleList``, so keys, indexing and iteration are unchanged) with a ``forward`` that runs the
layers in order; :mod:`pretrained.backends` may swap it (by exact type) for one that computes the
same numbers in fewer calls. The math is the layers' own. :class:`T5Blocks` is the same for
T5's ``block`` list (encoder and decoder).

Example::

    >>> import torch
    >>> class Add(torch.nn.Module):
    ...     def forward(self, x, mask, encoder_states, encoder_mask, cache):
    ...         return x + 1
    >>> stack = Seq2SeqDecoderLayers([Add(), Add()])
    >>> stack(torch.zeros(1), None, None, None, None)
    tensor([2.])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Seq2SeqDecoderLayers(nn.ModuleList):
    """Decoder layers called as ``layer(x, mask, encoder_states, encoder_mask, cache)``, in order."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, encoder_states: torch.Tensor | None,
                encoder_mask: torch.Tensor | None, cache: Any, states: list | None = None) -> torch.Tensor:
        """``x`` through every layer; ``mask``: the self-attention mask (None: every key),
        ``encoder_mask``: the encoder output's padding mask. ``states``: a list each layer's
        output is appended to (hidden states)."""
        if states is None:
            y = self.joint_step(x, mask, encoder_states, encoder_mask, cache)
            if y is not None:
                return y
        for layer in self:
            x = layer(x, mask, encoder_states, encoder_mask, cache)
            if states is not None:
                states.append(x)
        return x

    def joint_step(self, x: torch.Tensor, mask: torch.Tensor | None, encoder_states: torch.Tensor | None,
                   encoder_mask: torch.Tensor | None, cache: Any) -> torch.Tensor | None:
        """Where a backend's subclass computes every layer at once (the same numbers); None here:
        the layers run one by one (a hook rather than an overridden ``forward``, so that under
        ``torch.compile`` the layers' frames are this module's whatever class runs them)."""
        return None


class T5Blocks(nn.ModuleList):
    """T5's blocks (``block.0...``) called as ``block(x, bias, cache, encoder_states,
    cross_bias)``, in order; ``bias``: the self-attention's position bias plus mask,
    ``cross_bias``: the encoder output's mask as scores to add."""

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cache: Any, encoder_states: torch.Tensor | None,
                cross_bias: torch.Tensor | None, states: list | None = None) -> torch.Tensor:
        """``x`` through every block; ``states``: a list each block's output is appended to."""
        if states is None:
            y = self.joint_step(x, bias, cache, encoder_states, cross_bias)
            if y is not None:
                return y
        for block in self:
            x = block(x, bias, cache, encoder_states, cross_bias)
            if states is not None:
                states.append(x)
        return x

    def joint_step(self, x: torch.Tensor, bias: torch.Tensor, cache: Any, encoder_states: torch.Tensor | None,
                   cross_bias: torch.Tensor | None) -> torch.Tensor | None:
        """Where a backend's subclass computes every block at once; None here."""
        return None
