"""Stochastic depth (``drop_path``), written once for the vision models that train with it
(ConvNeXt, SegFormer, Swin).

Why here: the module has no weights and no checkpoint key of its own (a block names it
``drop_path``), and every model family sets its rates the same way, rising linearly from 0 at the
first block to ``drop_path_rate`` at the last, over all stages together.

Example::

    >>> import torch
    >>> drop_path_rates(0.3, 4)
    [0.0, 0.09999999999999999, 0.19999999999999998, 0.3]
    >>> DropPath(0.5).eval()(torch.ones(2, 3)).tolist()   # the identity outside training
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "drop_path_rates"]


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a sample's branch with probability ``p`` (the kept ones
    scaled by 1 / (1 - p)); the identity otherwise."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        # one draw per sample, broadcast over the rest (the reference's order of operations)
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x / keep * (mask + keep).floor()


def drop_path_rates(rate: float, total: int) -> list[float]:
    """The ``total`` blocks' drop probabilities: ``rate * i / (total - 1)`` for block ``i`` (0 for
    a single block): the reference's linear ramp from 0 to ``drop_path_rate``."""
    return [rate * i / max(total - 1, 1) for i in range(total)]
