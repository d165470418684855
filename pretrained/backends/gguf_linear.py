"""The GGUF block products in C (``gguf_kernel.c``), swapped in for
:class:`~pretrained.layers.gguf.GGUFLinear` by :func:`pretrained.backends.accelerate`.

:class:`CpuGGUFLinear` multiplies on the file's blocks directly, up to :data:`KERNEL_MAX_ROWS`
rows (a decode step, a small batch), reading no float copy of the weight. Two ways, chosen per
layer (:func:`set_gguf_activations`):

* ``"float"`` (the default): each weight block's codes become float32 in registers (32 at a
  time, every format; a K-quant's sub-block scale and min factored out of its sum) and meet the
  float32 activations there: the dequantized model's numbers to float32 summation order (the
  K-quants were dequantized a row at a time into L1 before: one thread, Q4_K 2048 x 2048 at one
  row 619 -> 400 us, Q5_K 664 -> 477, Q6_K 685 -> 510; 1.3-1.55x at 1-4 rows) (greedy
  output unchanged: on SmolLM2-135M Q4_1 the chat example still answers "The capital of France is
  Paris."; over 1024 tokens of a held-out text, top-1 agreement with the dequantized model 100%,
  max relative logit error 6e-6).
* ``"int8"``: llama.cpp's way: the activations quantized to int8 per block of 32 values (one
  float scale each), each block's dot product an exact int32 sum (AVX-512 VNNI ``vpdpbusd`` or
  AVX2 ``vpmaddubsw``), scaled once per block. Faster at one row, one thread (Q4_1 1536 x 576:
  53 us vs 71 us; Q8_0 49152 x 576: 1.6 ms vs 2.0 ms; ~8.5 vs ~11.2 ms of products per
  SmolLM2-135M token). Its error is the activations' rounding alone (on SmolLM2's real
  layers the kernel equals the exact integer product to 6e-7 of |x||w|), but that rounding is
  not small on this model: a few channels are ~60-90x the mean |x|, so their blocks keep ~2
  significant bits for the rest: 0.7-1% relative error per layer, 2.5-4% at the v_proj inputs;
  over the held-out text top-1 agreement 97.2%, median relative logit error 2.6%, perplexity
  +0.6%. The chat answer changes ("L'Étoile, ...") because generate computes only the prompt's
  last row of logits, so the LM head is a one-row int8 product: "The" and "L" are 0.08 apart in
  float and the head's rounding moves logits by up to 0.26 (llama.cpp's own rounding rule,
  fp16 scales and round-half-away, on the same hidden state also picks "L").

Each layer prepares its C call once (:class:`_Call`: the layer descriptions ``gguf_linear_n``
reads, rebuilt when a weight, bias or row order is replaced): a decode step makes ~200 of these
calls, and building 13 ctypes arguments and checking them each time cost ~5 us of ~12 us of
wrapper per call (one thread, SmolLM2's 192 x 576 k_proj: 23.6 -> 18.4 us a call, the C part
~11 us).

Packed siblings that the model calls one after another on the same input (q/k/v, gate/up) are
found by watching the calls, as the float linears' are (:mod:`.linear`), and then run as one call
(:class:`GGUFGroup`): the input read and prepared once, the threads shared over all their rows
(one thread, SmolLM2's 30 q/k/v and gate/up sets: 9.6-9.8 -> 9.3-9.5 ms a token; a whole decode
step ~1.5% faster).

Above that (a prompt) the weight is dequantized a tile of rows at a time (C, at most 4 MiB of
float32 in a buffer each thread keeps) into a BLAS product (:func:`tiled_linear`): the kernels' cost grows with every
row, BLAS's much less. Measured on this 2-core Xeon (shared machine, one thread, same-process
timings, SmolLM2-135M shapes): the kernels are faster up to 8-16 rows (4 rows: 105-180 us vs
190-240 us at 1536 x 576), the tiles from 32 rows (64 rows: 1.0 ms vs 1.9 ms).

Under ``torch.compile`` a layer is the ``pretrained::gguf_linear`` op, which keeps the kernels
inside the compiled graph (SmolLM2-135M Q4_1, ``cache_implementation="static"``,
``model.forward = torch.compile(model.forward)``: the same greedy tokens, one thread, decode
~26.0 -> ~23.0 ms/token against eager in the same process; compiling took 21-89 s on this
loaded 2-core machine). It steps aside to the plain
dequantize-and-``F.linear`` (exact float weights, autograd through the input) while autograd
records through the input, in CPU autocast, and where no kernel was built (no compiler, not
x86-64 with AVX2).

Example::

    >>> import torch
    >>> from pretrained.layers.gguf import GGUFLinear
    >>> from pretrained.gguf.quantize import quantize
    >>> from pretrained.backends import accelerate
    >>> lin = torch.nn.Sequential(GGUFLinear.from_blocks(quantize(torch.randn(8, 64), 8), 8, 64))
    >>> accelerate(lin), type(lin[0]).__name__
    (1, 'CpuGGUFLinear')
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import torch

from ..errors import InvalidInputError, UnsupportedOptionError
from ..layers.gguf import GGUFLinear, row_bytes
from . import build as _build
from .linear import LinearGroup, _version, grouped_output
from .rows import cpu_autocast

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
KERNEL_MAX_ROWS = 16   # above: tiles dequantized into BLAS (see the module doc)
RUNTIME_KEYS = ("_gguf_call", "_group", "_slot", "_seen")   # never copied or pickled (C addresses)


def _library(lib: ctypes.CDLL | None = None) -> ctypes.CDLL | None:
    """The loaded kernels (or ``lib``, a variant a test loaded), their functions typed."""
    lib = lib or (_build._lib if _build._lib is not None else _build.library())
    if not lib:
        return None
    if not getattr(lib, "gguf_typed", False):   # (a mark on the object: ids are reused)
        p, n, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        for name in ("gguf_matmul", "gguf_matmul_f32"):
            getattr(lib, name).argtypes = [i, p, n, n, n, p, n, n, p, p, p, n, i]
            getattr(lib, name).restype = i
        lib.gguf_quantize.argtypes = [p, n, n, n, p, p, p, p]
        lib.gguf_quantize.restype = i
        lib.gguf_dequantize.argtypes = [i, p, n, n, n, p, n, i]
        lib.gguf_dequantize.restype = i
        lib.gguf_linear_n.argtypes = [p, n, p, n, n, p, n, i, i]
        lib.gguf_linear_n.restype = i
        lib.gguf_typed = True
    return lib


class _Layer(ctypes.Structure):
    """``gguf_layer`` in gguf_blocks.h: one packed layer of a :func:`gguf_linear_n` call."""

    _fields_ = [("type", ctypes.c_int64), ("w", ctypes.c_void_p), ("N", ctypes.c_int64),
                ("K", ctypes.c_int64), ("ldw", ctypes.c_int64), ("bias", ctypes.c_void_p),
                ("out_index", ctypes.c_void_p), ("col", ctypes.c_int64)]


class _Call:
    """One prepared kernel call for a layer (or a group of layers of one input): the C layer
    descriptions built once, and what they were built from, so that a replaced or moved weight,
    bias or row order is noticed (then it is prepared again). Holds the tensors it points at."""

    __slots__ = ("fn", "layers", "addr", "count", "total", "in_features", "key")

    def __init__(self, modules: list[GGUFLinear], fn: Any) -> None:
        self.fn, self.count, self.in_features = fn, len(modules), modules[0].in_features
        self.layers = (_Layer * len(modules))()
        col = 0
        for layer, m in zip(self.layers, modules):
            w, b, oi = m.weight, m.bias, m.out_index
            layer.type, layer.w, layer.N, layer.K = m.ggml_type, w.data_ptr(), m.out_features, m.in_features
            layer.ldw, layer.col = w.stride(0), col
            layer.bias = None if b is None else b.data_ptr()
            layer.out_index = None if oi is None else oi.data_ptr()
            col += m.out_features
        self.total, self.addr = col, ctypes.addressof(self.layers)
        self.key = [_key(m) for m in modules]


def _key(m: GGUFLinear) -> tuple:
    """What a prepared call depends on (identities and addresses: cheap to compare)."""
    p = m._parameters
    w, b = p["weight"], p.get("bias")
    return (w, w.data_ptr(), b, None if b is None else b.data_ptr(), m.__dict__.get("out_index"))


def _stale(call: _Call | None, modules: list[GGUFLinear]) -> bool:
    """Whether ``call`` was not prepared for these modules as they are now (a weight, bias or
    row order replaced, moved or cast: compared by identity and address, never by value)."""
    if call is None:
        return True
    for key, m in zip(call.key, modules):
        p = m._parameters
        w, b = p["weight"], p.get("bias")
        if key[0] is not w or key[2] is not b or key[4] is not m.__dict__.get("out_index") \
                or key[1] != w.data_ptr() or b is not None and key[3] != b.data_ptr():
            return True
    return False


def _prepare(modules: list[GGUFLinear], lib: ctypes.CDLL | None = None) -> _Call | None:
    """A :class:`_Call` for ``modules`` (one input's layers), or None where the kernels do not
    take them: no library, a weight not on the CPU or not row-contiguous uint8, a bias that is
    not float32, an ``out_index`` that is not int32, different input sizes. ``lib``: a
    variant a test loaded."""
    lib = _library(lib)
    if lib is None:
        return None
    for m in modules:
        w, b, oi = m.weight, m.bias, m.out_index
        if not w.is_cpu or w.dtype != torch.uint8 or w.dim() != 2 or w.stride(1) != 1 \
                or m.in_features != modules[0].in_features \
                or b is not None and (b.dtype != torch.float32 or not b.is_contiguous() or not b.is_cpu) \
                or oi is not None and (oi.dtype != torch.int32 or not oi.is_contiguous()):
            return None
    return _Call(modules, lib.gguf_linear_n)


def _run(call: _Call, x: torch.Tensor, int8: bool) -> torch.Tensor | None:
    """``x`` (float32, CPU, at most :data:`KERNEL_MAX_ROWS` rows of ``call.in_features``) through
    the prepared layers: their outputs side by side, ``x.shape[:-1] + (total,)``."""
    k = call.in_features
    rows = x.numel() // k
    y = torch.empty(*x.shape[:-1], call.total)   # (sizes as ints: a torch.Size costs ~1 us more)
    if x.is_contiguous():
        ldx = k
    else:   # rows the kernel can step through (a view where the strides allow)
        x = x.reshape(rows, k)
        if x.stride(1) != 1:
            x = x.contiguous()
        ldx = x.stride(0)
    if call.fn(call.addr, call.count, x.data_ptr(), rows, ldx, y.data_ptr(), call.total,
               torch.get_num_threads(), int8):
        return None
    return y


def gguf_matmul(x: torch.Tensor, blocks: torch.Tensor, ggml_type: int, out_features: int,
                bias: torch.Tensor | None = None, out_index: torch.Tensor | None = None,
                lib: ctypes.CDLL | None = None, int8: bool = False) -> torch.Tensor | None:
    """``x @ W^T + bias`` on the blocks of ``W`` (``blocks``: uint8 ``(out_features, row
    bytes)``, stored row ``n`` being output ``out_index[n]`` where given) in float32, or None
    where the kernel does not apply (no library, a type or row length it lacks). ``int8``:
    the activations quantized to int8 per block and integer dot products (llama.cpp's way);
    else the float32 activations against each block's codes turned float in registers."""
    lib = _library(lib)
    if lib is None or blocks.dtype != torch.uint8 or blocks.dim() != 2 or blocks.stride(1) != 1:
        return None
    k = x.shape[-1]
    rows = x.numel() // k if k else 0
    xf = x.reshape(rows, k)
    if xf.dtype != torch.float32 or xf.stride(1) != 1:
        xf = xf.to(torch.float32).contiguous()
    if bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()):
        bias = bias.to(torch.float32).contiguous()
    if out_index is not None and (out_index.dtype != torch.int32 or not out_index.is_contiguous()):
        out_index = out_index.to(torch.int32).contiguous()
    y = torch.empty((rows, out_features), dtype=torch.float32)
    if rows == 0:
        return y.reshape(*x.shape[:-1], out_features)
    run = lib.gguf_matmul if int8 else lib.gguf_matmul_f32
    err = run(ggml_type, blocks.data_ptr(), out_features, k, blocks.stride(0),
                          xf.data_ptr(), rows, xf.stride(0),
                          None if bias is None else bias.data_ptr(),
                          None if out_index is None else out_index.data_ptr(),
                          y.data_ptr(), out_features, torch.get_num_threads())
    return None if err else y.reshape(*x.shape[:-1], out_features)


def gguf_dequantize(blocks: torch.Tensor, ggml_type: int, in_features: int,
                    out: torch.Tensor | None = None, lib: ctypes.CDLL | None = None) -> torch.Tensor | None:
    """The float32 rows ``(rows, in_features)`` of ``blocks`` (uint8, one row of blocks per
    row), written into ``out`` when given; None without a kernel for the type."""
    lib = _library(lib)
    if lib is None or blocks.dtype != torch.uint8 or blocks.dim() != 2 or blocks.stride(1) != 1:
        return None
    rows = blocks.shape[0]
    if out is None:
        out = torch.empty((rows, in_features), dtype=torch.float32)
    if lib.gguf_dequantize(ggml_type, blocks.data_ptr(), rows, in_features, blocks.stride(0),
                           out.data_ptr(), out.stride(0), torch.get_num_threads()):
        return None
    return out


TILE_FLOATS = 1 << 20   # float32 values per dequantized tile (4 MiB): SmolLM2's layers in one
_tiles = threading.local()   # each thread's tile buffer, kept between calls


def _tile_buffer(floats: int) -> torch.Tensor:
    """This thread's float32 scratch of at least ``floats`` values (a fresh 4 MiB tensor per call
    would be fresh pages, faulted in on every layer of every prompt)."""
    buf = getattr(_tiles, "buf", None)
    if buf is None or buf.numel() < floats:
        buf = _tiles.buf = torch.empty(floats, dtype=torch.float32)
    return buf


def tiled_linear(x: torch.Tensor, blocks: torch.Tensor, ggml_type: int, out_features: int,
                 bias: torch.Tensor | None = None, out_index: torch.Tensor | None = None,
                 lib: ctypes.CDLL | None = None) -> torch.Tensor | None:
    """The prefill path: ``x @ W^T + bias`` with ``W`` dequantized a tile of rows at a time
    (at most :data:`TILE_FLOATS` float32 values, in a buffer each thread keeps) into a BLAS
    product in ``x``'s dtype; a larger float weight never exists whole. None without a kernel
    for the type. (Tiles of 4 MiB rather than 1 MiB freshly allocated per call: one product per
    SmolLM2 layer instead of up to four, one thread, 37 prompt rows: 576 x 576 Q4_1 424 -> 334
    us, 1536 x 576 1018 -> 953, 576 x 1536 1079 -> 968.)"""
    k = x.shape[-1]
    xf = x.reshape(-1, k)
    tile = max(16, TILE_FLOATS // max(k, 1))
    rows = min(tile, out_features)
    buf = _tile_buffer(rows * k)[:rows * k].view(rows, k)
    parts = []
    for n0 in range(0, out_features, tile):
        w = gguf_dequantize(blocks[n0:n0 + tile], ggml_type, k, buf[:min(tile, out_features - n0)], lib)
        if w is None:
            return None
        parts.append(xf @ (w.t() if xf.dtype == torch.float32 else w.t().to(xf.dtype)))
    y = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
    if out_index is not None:   # stored row n is output out_index[n]
        y = y.index_select(-1, torch.argsort(out_index.long()))
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y.reshape(*x.shape[:-1], out_features)


def quantize_activations(x: torch.Tensor, lib: ctypes.CDLL | None = None) -> tuple[torch.Tensor, ...] | None:
    """The kernel's int8 activations of float32 rows ``x`` (M, K): ``(q, d, ds, s16)`` (codes,
    scales per 32, scale times code sum per 32, code sums per 16), or None without a kernel.
    For tests: the products are exact integer sums over these."""
    lib = _library(lib)
    if lib is None:
        return None
    x = x.to(torch.float32).contiguous()
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.int8)
    d, ds = torch.empty((m, k // 32)), torch.empty((m, k // 32))
    s16 = torch.empty((m, k // 16), dtype=torch.int16)
    if lib.gguf_quantize(x.data_ptr(), m, k, k, q.data_ptr(), d.data_ptr(), ds.data_ptr(), s16.data_ptr()):
        return None
    return q, d, ds, s16


class GGUFGroup(LinearGroup):
    """Packed layers of one parent that the model calls one after another on the same input
    (q/k/v, gate/up; found by watching the calls, as :class:`~.linear.LinearGroup` finds the
    float ones): the first call computes every member's output in one ``gguf_linear_n`` call,
    which reads and prepares the input once and shares the threads over all their rows."""

    __slots__ = ("call", "src", "outs")

    def __init__(self, first: CpuGGUFLinear, second: CpuGGUFLinear) -> None:
        self.call: _Call | None = None
        self.src: tuple | None = None   # (the input of the last joint call, its version)
        self.outs: list | None = None   # its outputs not yet handed out
        super().__init__(first, second)

    def add(self, linear: CpuGGUFLinear) -> None:
        super().add(linear)
        self.call = None

    def dissolve(self) -> None:
        super().dissolve()
        self.src = self.outs = None

    def output(self, linear: CpuGGUFLinear, x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`LinearGroup.output` with less bookkeeping (a decode step makes ~90 of these
        calls): the input held for identity (the same tensor object at the same version), the
        packed weights' versions not followed (frozen blocks; a replaced one is noticed by
        :func:`_stale`)."""
        slot = linear.__dict__["_slot"]
        if slot:
            outs, src = self.outs, self.src
            if outs is not None and src[0] is x and src[1] == _version(x):
                y = outs[slot]
                if y is not None:
                    outs[slot] = None   # once: the model may write into it in place
                    self.misses = 0
                    return y
            self.misses += 1
            if self.misses > 2 * len(self.members):
                self.dissolve()
            return None
        y = self.compute(x)
        if y is None:
            return None
        outs = self.outs = list(y.split_with_sizes([m.out_features for m in self.members], -1))
        self.src = (x, _version(x))
        first, outs[0] = outs[0], None
        return first

    def compute(self, x: torch.Tensor) -> torch.Tensor | None:
        ms = self.members
        if _stale(self.call, ms):
            self.call = _prepare(ms)
        if self.call is None:
            return None
        y = _run(self.call, x if x.dtype == torch.float32 else x.float(), ms[0].int8_activations)
        return y if y is None or y.dtype == x.dtype else y.to(x.dtype)


def _gguf_linear_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      out_index: torch.Tensor | None, ggml_type: int, out_features: int,
                      int8: bool) -> torch.Tensor:
    """``torch.ops.pretrained.gguf_linear``: a packed layer as one PyTorch op, so that
    ``torch.compile`` keeps it inside the compiled graph (a ctypes call, or the fallback's numpy
    dequantizing, would break the graph at every layer): the kernels where they apply, else the
    layer dequantized into F.linear. (Defined through ``torch.library.Library``: a call costs
    ~2.6 us of dispatch here against ~16 us through ``torch.library.custom_op``.)"""
    k = x.shape[-1]
    rows = x.numel() // k if k else 0
    y = None
    if x.is_cpu and x.dtype in _FLOATS and weight.is_cpu:
        if 0 < rows <= KERNEL_MAX_ROWS:
            y = _op_run(x if x.dtype == torch.float32 else x.float(), weight, bias, out_index,
                        ggml_type, out_features, int8)
        if y is None:
            y = gguf_matmul(x, weight, ggml_type, out_features, bias, out_index, int8=int8) \
                if rows <= KERNEL_MAX_ROWS else tiled_linear(x, weight, ggml_type, out_features, bias, out_index)
    if y is None:   # no kernel here: the plain math (GGUFLinear.forward's)
        lin = GGUFLinear.from_blocks(weight, ggml_type, k, bias)
        lin.out_index = out_index
        y = GGUFLinear.forward(lin, x)
    return y if y.dtype == x.dtype else y.to(x.dtype)


# the op's prepared C calls, keyed by everything they point at (addresses, sizes): the same key
# computes the same layer whatever tensor now lies there; no tensor is held
_OP_CALLS: dict[tuple, tuple] = {}


def _op_run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            out_index: torch.Tensor | None, ggml_type: int, n: int, int8: bool) -> torch.Tensor | None:
    """The op's decode path: :func:`_run`'s call from a layer description cached per layer."""
    if weight.dtype != torch.uint8 or weight.dim() != 2 or weight.stride(1) != 1 \
            or bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()) \
            or out_index is not None and (out_index.dtype != torch.int32 or not out_index.is_contiguous()):
        return None
    k = x.shape[-1]
    key = (weight.data_ptr(), weight.stride(0), ggml_type, n, k, None if bias is None else bias.data_ptr(),
           None if out_index is None else out_index.data_ptr())
    entry = _OP_CALLS.get(key)
    if entry is None:
        lib = _library()
        if lib is None or weight.shape != (n, row_bytes(ggml_type, k)):
            return None
        if len(_OP_CALLS) > 4096:   # (layers of models long gone)
            _OP_CALLS.clear()
        layer = _Layer(ggml_type, key[0], n, k, key[1], key[5], key[6], 0)
        entry = _OP_CALLS[key] = (lib.gguf_linear_n, layer, ctypes.addressof(layer))
    rows = x.numel() // k
    y = torch.empty(*x.shape[:-1], n)
    ldx = k
    if not x.is_contiguous():
        x = x.reshape(rows, k)
        if x.stride(1) != 1:
            x = x.contiguous()
        ldx = x.stride(0)
    if entry[0](entry[2], 1, x.data_ptr(), rows, ldx, y.data_ptr(), n, torch.get_num_threads(), int8):
        return None
    return y


_OPS = torch.library.Library("pretrained", "FRAGMENT")   # (kept: the op lives as long as it)
_OPS.define("gguf_linear(Tensor x, Tensor weight, Tensor? bias, Tensor? out_index, int ggml_type, "
            "int out_features, bool int8) -> Tensor")
_OPS.impl("gguf_linear", _gguf_linear_impl, "CPU")


@torch.library.register_fake("pretrained::gguf_linear")
def _gguf_linear_shape(x, weight, bias, out_index, ggml_type, out_features, int8):
    return x.new_empty((*x.shape[:-1], out_features))


gguf_linear_op = torch.ops.pretrained.gguf_linear.default


class CpuGGUFLinear(GGUFLinear):
    """:class:`GGUFLinear` through the C block kernels (see the module doc)."""

    #: quantize the activations to int8 (llama.cpp's way) instead of keeping them float32
    int8_activations: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():   # the whole layer as one op of the compiled graph
            if x.dtype in _FLOATS and not (x.requires_grad and torch.is_grad_enabled()) \
                    and not cpu_autocast():
                return gguf_linear_op(x, self.weight, self.bias, self.out_index, self.ggml_type,
                                      self.out_features, self.int8_activations)
            return super().forward(x)   # (autograd through the input: the plain math)
        if x.is_cpu and x.dtype in _FLOATS and x.dim() > 0 \
                and not (x.requires_grad and torch.is_grad_enabled()) \
                and not cpu_autocast():
            rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
            if 0 < rows <= KERNEL_MAX_ROWS and x.shape[-1] == self.in_features:
                # the decode path: a call prepared once (a few microseconds of argument
                # building and checks saved on each of a token's ~200 calls)
                y = grouped_output(self, x, GGUFGroup)
                if y is not None:
                    return y
                d = self.__dict__
                call = d.get("_gguf_call")
                if _stale(call, [self]):
                    call = d["_gguf_call"] = _prepare([self])
                if call is not None:
                    y = _run(call, x if x.dtype == torch.float32 else x.float(), self.int8_activations)
                    if y is not None:
                        return y if y.dtype == x.dtype else y.to(x.dtype)
            if not self.weight.is_cpu:
                return super().forward(x)   # (a named error)
            if rows <= KERNEL_MAX_ROWS:
                y = gguf_matmul(x, self.weight, self.ggml_type, self.out_features, self.bias,
                                self.out_index, int8=self.int8_activations)
            else:
                y = tiled_linear(x, self.weight, self.ggml_type, self.out_features, self.bias,
                                 self.out_index)
            if y is not None:
                return y if y.dtype == x.dtype else y.to(x.dtype)
        return super().forward(x)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


def set_gguf_activations(model: torch.nn.Module, mode: str = "float") -> int:
    """How every GGUF-packed linear of ``model`` computes up to :data:`KERNEL_MAX_ROWS` rows:
    ``"float"`` (exact, the default) or ``"int8"`` (llama.cpp's quantized activations, faster);
    see the module doc. Kept through :func:`~pretrained.backends.plain` and back; returns how
    many layers it set.

    Example::

        >>> import torch
        >>> set_gguf_activations(torch.nn.Sequential(torch.nn.Linear(2, 2)), "int8")
        0
    """
    if mode not in ("float", "int8"):
        raise InvalidInputError(f"GGUF activations are 'float' or 'int8', not {mode!r}")
    layers = [m for m in model.modules() if isinstance(m, GGUFLinear)]
    if mode == "int8" and layers and not _build.available():
        # only the C kernels quantize activations; the plain math would quietly stay float
        raise UnsupportedOptionError(
            f"int8 GGUF activations need this library's C kernels, which are off here "
            f"({_build.describe()}); use the default float activations, or install a C compiler "
            f"and unset PRETRAINED_NO_KERNELS")
    for module in layers:
        module.int8_activations = mode == "int8"
    return len(layers)
