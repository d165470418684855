"""Opt-in oneDNN pre-packed linear weights for CPU inference on more than 16 rows.

A plain CPU linear re-lays its weight out for the matmul kernel on every call; at small batches
that costs as much as the multiply. With packing on (``pipeline(..., pack_weights=True)`` or
:func:`pretrained.backends.set_weight_packing`), a layer keeps a copy of its weight in oneDNN's
blocked layout and multiplies with it while autograd is off. Cost: one extra copy of the packed
weights, which is why it is opt-in. Where the plain path is as fast it is kept: weights under
:data:`PACKED_MIN_WEIGHT` elements (the call costs more than the layout saves), in float32 a
single row (MKL's matrix-vector kernel) or more than :data:`PACKED_FP32_MAX_ROWS` rows, and up to
16 rows where the rows kernels take the call (faster, and no copy).
"""

from __future__ import annotations

import torch

from .rows import applies as rows_applies
from .rows import cpu_autocast

PACKED_FP32_MAX_ROWS = 512
PACKED_MIN_WEIGHT = 1 << 17
_PACKABLE = (torch.float32, torch.bfloat16)
_packing_ok: bool | None = None
_LINEAR = None   # torch.ops.mkldnn._linear_pointwise.default, resolved once (microseconds a call)


def packing_available() -> bool:
    """Whether this torch build has oneDNN's packed linear (checked once, on a 2x2 product)."""
    global _packing_ok
    if _packing_ok is None:
        try:
            w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
            y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, None, "none", [], "")
            _packing_ok = bool(torch.backends.mkldnn.is_available()) and float(y.sum()) == 4.0
        except (AttributeError, RuntimeError, NotImplementedError):
            _packing_ok = False
    return _packing_ok


def _version(t: torch.Tensor) -> int | None:
    """In-place writes counted so far (None for inference-mode tensors, which keep no count:
    there the same object suffices, as nothing runs between two sibling calls)."""
    return None if t.is_inference() else t._version


class PackedWeights:
    """One packed weight (several weights stacked along the output axis, e.g. fused q/k/v)
    and its bias. Rebuilt when a source tensor is written in place (its version counter moves),
    replaced, moved or cast; writes through ``.data`` bypass the version counter and are not seen,
    nor in-place writes to inference tensors (a model loaded under ``torch.inference_mode``: they
    keep no version counter) (turn packing off and on again after such writes). Never pickled."""

    __slots__ = ("key", "refs", "weight", "bias")

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.refs: list = []
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def get(self, weights: tuple[torch.Tensor, ...],
            biases: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        sources = [t for t in (*weights, *biases) if t is not None]
        key = tuple((t.data_ptr(), _version(t), t.dtype) for t in sources)
        if key != self.key or any(r.expired() for r in self.refs):
            from torch.multiprocessing.reductions import StorageWeakRef

            with torch.no_grad():
                w = weights[0] if len(weights) == 1 else torch.cat(weights)
                self.weight = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), None)
                if all(b is None for b in biases):
                    self.bias = None
                else:  # a missing bias among several adds zeros
                    parts = [torch.zeros(len(wt), dtype=wt.dtype, device=wt.device) if b is None
                             else b for wt, b in zip(weights, biases)]
                    self.bias = torch.cat(parts).detach().contiguous()
            # weak references keep a freed storage's address from being reused under our key
            self.refs = [StorageWeakRef(t.untyped_storage()) for t in sources]
            self.key = key
        return self.weight, self.bias

    def __reduce__(self) -> tuple:  # copies and pickles start empty
        return PackedWeights, ()


def packed_linear_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a linear of ``x`` by ``weight`` may use packed weights right now: autograd off,
    CPU, a weight of at least PACKED_MIN_WEIGHT elements, bfloat16 or float32 (2 to
    PACKED_FP32_MAX_ROWS rows), not being compiled, no CPU autocast, and not where the rows
    kernel takes the call (up to 16 rows: faster than the packed weights, measured 1.45x vs
    1.24x the reference at BERT-base 1 x 16)."""
    if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != weight.dtype \
            or x.dtype not in _PACKABLE or weight.numel() < PACKED_MIN_WEIGHT \
            or torch.compiler.is_compiling() or cpu_autocast():
        return False
    if x.dtype == torch.float32 and not x.shape[-1] < x.numel() <= PACKED_FP32_MAX_ROWS * x.shape[-1]:
        return False
    return packing_available() and not rows_applies(x, weight)


def packed_linear(x: torch.Tensor, cache: PackedWeights, weights: tuple[torch.Tensor, ...],
                  biases: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    """``x @ cat(weights).T + cat(biases)`` with the cached packed weight."""
    global _LINEAR
    if _LINEAR is None:
        _LINEAR = torch.ops.mkldnn._linear_pointwise.default
    w, b = cache.get(weights, biases)
    return _LINEAR(x, w, b, "none", [], "")
