"""CPU inference with linear weights pre-packed for oneDNN, and the linear layers that use them.

:class:`PackedLinear` (an ``nn.Linear``) and GPT-2's :class:`Conv1D` keep a packed copy of their
weight (:class:`PackedWeights`) once :func:`set_weight_packing` turns packing on;
:func:`packed_linear_ok` decides per call whether the packed path applies, :func:`linear_then`
fuses an activation, product or residual sum into the matmul and :func:`fused_packed_linear`
runs several projections of one input (q/k/v) as one. Conv1D lives here rather than with the
heads because it and the packed helpers refer to each other. The module-level state that the
helpers set lazily (``_packing_ok``, ``_OPS``) and the thresholds tests patch
(``PACKED_MIN_WEIGHT``, ``PACKED_FP32_MAX_ROWS``) are globals of this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.rows import applies as rows_applies
from ..backends.rows import cpu_autocast, few_rows, rows_linear, rows_linear_many


class Conv1D(nn.Module):
    """GPT-2's linear layer with the weight stored as (in, out); kept so checkpoint names and
    shapes load and save unchanged. Uses a packed copy of its weight when
    :func:`set_weight_packing` turned packing on (as :class:`PackedLinear`)."""

    packing: bool = False

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, _packed_cache(self), (self.weight.t(),), (self.bias,))
        return F.linear(x, self.weight.t(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[0]}, out_features={self.weight.shape[1]}"


# A plain CPU linear re-lays its weight out for the matmul kernel on every call; at small batches
# that costs as much as the multiply. With packing on (set_weight_packing, which pipelines do), a
# layer keeps a copy of its weight in oneDNN's blocked layout and multiplies with it while autograd
# is off. Cost: one extra copy of the packed weights. Where the plain path is as fast it is kept:
# weights under PACKED_MIN_WEIGHT elements (the call costs more than the layout saves), and in
# float32 a single row (MKL's matrix-vector kernel) or more than PACKED_FP32_MAX_ROWS rows.
PACKED_FP32_MAX_ROWS = 512
PACKED_MIN_WEIGHT = 1 << 17
_PACKABLE = (torch.float32, torch.bfloat16)
_packing_ok: bool | None = None


def _packing_available() -> bool:
    global _packing_ok
    if _packing_ok is None:
        try:
            w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
            y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, None, "none", [], "")
            _packing_ok = bool(torch.backends.mkldnn.is_available()) and float(y.sum()) == 4.0
        except (AttributeError, RuntimeError, NotImplementedError):
            _packing_ok = False
    return _packing_ok


class PackedWeights:
    """One packed weight (several weights stacked along the output axis, e.g. fused q/k/v)
    and its bias. Rebuilt when a source tensor is written in place (its version counter moves),
    replaced, moved or cast; writes through ``.data`` bypass the version counter and are not seen
    (turn packing off and on again after such writes). Never pickled."""

    __slots__ = ("key", "refs", "weight", "bias")

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.refs: list = []
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def get(self, weights: tuple[torch.Tensor, ...],
            biases: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        sources = [t for t in (*weights, *biases) if t is not None]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in sources)
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
    return _packing_available() and not rows_applies(x, weight)


def packed_linear(x: torch.Tensor, cache: PackedWeights, weights: tuple[torch.Tensor, ...],
                  biases: tuple[torch.Tensor | None, ...], gelu: bool = False) -> torch.Tensor:
    """``x @ cat(weights).T + cat(biases)`` with the cached packed weight; ``gelu``: followed by
    the exact (erf) GELU inside the same kernel (bit-identical to ``F.gelu`` after it in float32;
    in bfloat16 it rounds once instead of twice, within an ulp of the unfused result)."""
    w, b = cache.get(weights, biases)
    if gelu:
        return _mkldnn_ops()[0](x, w, b, "gelu", [], "none")
    return _mkldnn_ops()[0](x, w, b, "none", [], "")


_OPS: tuple | None = None


def _mkldnn_ops() -> tuple:
    """The packed-linear kernels as resolved overloads (a decode step calls them hundreds of
    times; resolving ``torch.ops.mkldnn._linear_pointwise`` each time costs microseconds)."""
    global _OPS
    if _OPS is None:
        op = torch.ops.mkldnn._linear_pointwise
        _OPS = (op.default, op.binary)
    return _OPS


def plain_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``. One row (a decode step at batch 1) without autograd on the
    CPU runs as a matrix-vector product: F.linear sends a bfloat16 row through a matmul that
    re-lays the weight out on every call, about twice as slow as ``torch.mv`` at decoder shapes
    (float32: a few percent). Same products and sums, accumulated in float32. Up to 16 rows
    run through :func:`~pretrained.layers.rows_kernel.rows_linear` where it applies (about 1.3x
    (float32) and 2x (bfloat16) F.linear's speed at BERT-base and SmolLM2 shapes)."""
    if few_rows(x):
        y = rows_linear(x, weight, bias)
        if y is not None:
            return y
    if x.numel() == x.shape[-1] and x.device.type == "cpu" and not torch.is_grad_enabled() \
            and x.dtype == weight.dtype and not cpu_autocast():
        v = x.reshape(-1)
        y = torch.mv(weight, v) if bias is None else torch.addmv(bias, weight, v)
        return y.view(*x.shape[:-1], -1)
    return F.linear(x, weight, bias)


class PackedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state_dict keys) that uses a packed copy of its weight
    when :func:`set_weight_packing` turned packing on and :func:`packed_linear_ok` allows."""

    packing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, self.packed_cache(), (self.weight,), (self.bias,))
        return plain_linear(x, self.weight, self.bias)

    def forward_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """``F.gelu(self(x))`` (exact GELU). Without autograd: fused into the packed matmul when
        packing applies, else in float32 applied in place (no second large buffer to fault in;
        bit-identical)."""
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, self.packed_cache(), (self.weight,), (self.bias,), gelu=True)
        if x.dtype == torch.float32 and not torch.is_grad_enabled():
            if few_rows(x):
                y = rows_linear(x, self.weight, self.bias, gelu=True)
                if y is not None:
                    return y
            return torch.ops.aten.gelu_(plain_linear(x, self.weight, self.bias))
        return F.gelu(self(x))

    def packed_cache(self) -> PackedWeights:
        cache = self.__dict__.get("_packed")
        if cache is None:
            cache = self.__dict__["_packed"] = PackedWeights()
        return cache


def _packed_cache(module: nn.Module, key: str = "_packed") -> PackedWeights:
    cache = module.__dict__.get(key)
    if cache is None:
        cache = module.__dict__[key] = PackedWeights()
    return cache


def _packed_weight(linear: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The (out, in) weight of a PackedLinear or Conv1D that may run packed on ``x`` now; None
    for any other module (LoRA, quantized layers) or when packing does not apply."""
    kind = type(linear)
    if kind is not PackedLinear and kind is not Conv1D or not linear.packing:
        return None
    w = linear.weight if kind is PackedLinear else linear.weight.t()
    return w if packed_linear_ok(x, w) else None


_POST_OPS = {"silu": ("swish", ""), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh")}


def linear_then(linear: nn.Module, x: torch.Tensor, op: str,
                other: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(x)`` then ``op``: "silu", "gelu" (exact), "gelu_tanh", "add" (``+ other``) or
    "mul" (``* other``, ``other`` of the output's shape and dtype): activations, SwiGLU and
    residual sums of decoders. For a :class:`PackedLinear` or :class:`Conv1D` with packing on,
    the op runs inside the matmul kernel (float32: the same numbers up to an ulp; bfloat16: one
    rounding instead of two); without autograd the plain path applies it in place."""
    w = _packed_weight(linear, x)
    if w is not None:
        pw, pb = _packed_cache(linear).get((w,), (linear.bias,))
        if op in _POST_OPS:
            attr, algorithm = _POST_OPS[op]
            return _mkldnn_ops()[0](x, pw, pb, attr, [], algorithm)
        return _mkldnn_ops()[1](x, other.contiguous(), pw, pb, op)
    inplace = not torch.is_grad_enabled()
    if op in ("add", "gelu") and inplace and type(linear) is PackedLinear and few_rows(x):
        # the float32 rows kernel applies the op in its last step
        y = rows_linear(x, linear.weight, linear.bias, gelu=op == "gelu",
                        residual=other if op == "add" else None)
        if y is not None:
            return y
    y = linear(x)
    if op == "silu":
        return F.silu(y, inplace=inplace)
    if op in ("gelu", "gelu_tanh"):
        return F.gelu(y, approximate="tanh" if op == "gelu_tanh" else "none")
    if op == "add":
        return y.add_(other) if inplace else y + other
    return y.mul_(other) if inplace else y * other


def fused_packed_linear(owner: nn.Module, key: str, linears: tuple[nn.Module, ...],
                        x: torch.Tensor) -> torch.Tensor | None:
    """``x`` through several :class:`PackedLinear` of one input at once (outputs concatenated
    along the last axis; e.g. q/k/v): with packing on, one packed concatenation of their weights
    cached on ``owner`` (which needs a ``packing`` attribute so :func:`set_weight_packing` frees
    it); else, on up to 16 rows, one call of the rows kernel over the weights where they lie.
    None when neither applies or a layer was replaced (LoRA, quantization): then call the
    layers one by one."""
    if any(type(m) is not PackedLinear for m in linears):
        return None
    if owner.packing and _packed_weight(linears[0], x) is not None:
        return packed_linear(x, _packed_cache(owner, key), tuple(m.weight for m in linears),
                             tuple(m.bias for m in linears))
    return rows_fused(linears, x)


def rows_fused(linears: tuple[nn.Module, ...], x: torch.Tensor) -> torch.Tensor | None:
    """Several :class:`PackedLinear` of one input in one rows-kernel call, outputs side by side
    (:func:`~pretrained.layers.rows_kernel.rows_linear_many`); None where it does not apply."""
    if any(type(m) is not PackedLinear for m in linears) or not few_rows(x):
        return None
    return rows_linear_many(x, [m.weight for m in linears], [m.bias for m in linears])


def set_weight_packing(model: nn.Module, enabled: bool = True) -> int:
    """Turn packed-weight inference on or off for every module of ``model`` that supports it
    (those with a ``packing`` attribute); turning it off frees the packed copies. Returns how
    many modules it set.

    Example::

        >>> m = nn.Sequential(PackedLinear(4, 2))
        >>> set_weight_packing(m)
        1
    """
    n = 0
    for module in model.modules():
        if hasattr(type(module), "packing"):
            module.packing = bool(enabled)
            if not enabled:
                for key in [k for k, v in module.__dict__.items() if isinstance(v, PackedWeights)]:
                    del module.__dict__[key]
            n += 1
    return n
