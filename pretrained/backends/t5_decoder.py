"""T5's decode step in one C call (``t5_decoder_step_f32`` in ``seq2seq_decoder.c``), swapped in
for :class:`~pretrained.layers.seq2seq_stack.T5Blocks`.

As :mod:`.seq2seq_decoder` for the BART family: every block of a one-token step for 1-16 rows:
RMSNorm (no mean) before each sublayer, self-attention with the stack's position bias and mask
added to the unscaled scores and its new keys/values written into the cache's own storage,
cross-attention over the keys/values stored once per input (beams share them), the ReLU (T5) or
gated tanh-GELU (T5 v1.1, flan-T5) feed-forward, residuals. Float32, or bfloat16 on the variants
with bfloat16 kernels (``t5_decoder_step_bf16``, rounded where the modules round: the test
fixtures' logits and cache are the modules' bit for bit). Blocks are recognised by
structure (this package does not import the model file: T5Block's ``layer`` of self-attention,
cross-attention and feed-forward, bias-free linears, RMSNorms), then layer 0 is proven on a probe;
the plan is checked every call. It steps aside as the BART family's does (also for the encoder's
blocks: no encoder output).

Measured (one thread, process CPU time per token, 24 greedy steps, five interleaved rounds, shared
machine; random t5-small-shaped models: 6 + 6 layers, d_model 512, 8 heads, 32,128 vocabulary, 30
source tokens): ReLU (d_ff 2048) batch 1 14.8-15.7 -> 8.8-10.2 ms, 4 beams of one input 21.9-23.4
-> 17.1-18.0 ms; gated-GELU (v1.1, d_ff 1024) batch 1 14.0-15.0 -> 8.4-9.3 ms. The same tokens.

Example::

    >>> from pretrained.backends.t5_decoder import FusedT5Blocks
    >>> FusedT5Blocks.__mro__[1].__name__
    'T5Blocks'
"""

from __future__ import annotations

import ctypes
import weakref

import torch
from torch import nn

from ..layers.norms import RMSNorm
from ..layers.seq2seq_stack import T5Blocks
from . import build as _build
from .linear import CpuLinear
from .norms import CpuRMSNorm
from .seq2seq_decoder import _ACTS, _Plan as _BasePlan, _ProbeCache, _bind, _keep, _ready

_LINEARS = (nn.Linear, CpuLinear)
_NORMS = (RMSNorm, CpuRMSNorm)
_TANH_GELU = {"gelu_new", "gelu_pytorch_tanh"}
_P = ctypes.c_void_p


class _T5Layer(ctypes.Structure):
    """``t5_layer`` in seq2seq_decoder.c."""

    _fields_ = [("w", _P * 3), ("wo", _P), ("wq", _P), ("wco", _P), ("wi", _P * 2), ("wff", _P), ("ln", _P * 3),
                ("kc", _P), ("vc", _P), ("cap", ctypes.c_int64), ("ck", _P), ("cv", _P)]


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    if not getattr(lib, "t5_typed", False):
        p, n, i, f = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
        for fn in (lib.t5_decoder_step_f32, lib.t5_decoder_step_bf16):
            fn.argtypes = [p, i, p, n, n, i, n, n, i, i, f, n, p, n, n, p, p, i]
            fn.restype = i
        lib.t5_typed = True
    return lib


def _act(fn) -> int | None:
    """The C code of an activation callable (pretrained.layers.activations' table)."""
    if fn in _ACTS:
        return _ACTS[fn]
    return 4 if getattr(fn, "__name__", "") == "_gelu_tanh" else None


class _Plan(_BasePlan):
    """As the BART family's plan (links, hooks, tensors checked every call), over T5 blocks."""

    __slots__ = ()
    spec_type = _T5Layer

    def _layer(self, i: int, block: nn.Module, spec: _T5Layer) -> tuple | None:
        return _t5_layer(i, block, spec, self.tensors)

    def probe(self, layer: nn.Module) -> bool:
        return _probe(layer, self)


def _t5_layer(i: int, block: nn.Module, spec: _T5Layer, tensors: list) -> tuple | None:
    """Fill ``spec`` for block ``i``; its sizes (H, heads, d_kv, F, gated, act, eps, dtype) or None."""
    if type(block).__name__ != "T5Block" or set(block._modules) != {"layer"} or len(block.layer) != 3:
        return None
    sa_l, ca_l, ff_l = block.layer
    if set(sa_l._modules) != {"SelfAttention", "layer_norm", "dropout"} \
            or set(ca_l._modules) != {"EncDecAttention", "layer_norm", "dropout"} \
            or set(ff_l._modules) != {"DenseReluDense", "layer_norm", "dropout"}:
        return None
    sa, ca, ff = sa_l.SelfAttention, ca_l.EncDecAttention, ff_l.DenseReluDense
    if not set(sa._modules) <= {"q", "k", "v", "o", "relative_attention_bias"} \
            or set(ca._modules) != {"q", "k", "v", "o"} or sa.layer_idx != i or ca.layer_idx != i \
            or sa.n_heads != ca.n_heads:
        return None
    gated = set(ff._modules) == {"wi_0", "wi_1", "wo", "dropout"}
    if not gated and set(ff._modules) != {"wi", "wo", "dropout"}:
        return None
    act = _act(ff.__dict__.get("act"))
    norms = [sa_l.layer_norm, ca_l.layer_norm, ff_l.layer_norm]
    wis = [ff.wi_0, ff.wi_1] if gated else [ff.wi]
    lins = [sa.q, sa.k, sa.v, sa.o, ca.q, ca.o] + wis + [ff.wo]
    if act is None or any(type(n) not in _NORMS for n in norms) or len({n.eps for n in norms}) != 1 \
            or any(type(m) not in _LINEARS or m.bias is not None for m in lins + [ca.k, ca.v]):
        return None
    h, inner, f, nh = sa.q.weight.shape[1], sa.q.weight.shape[0], wis[0].weight.shape[0], sa.n_heads
    if not isinstance(nh, int) or nh < 1 or inner % nh:
        return None
    dtype = sa.q.weight.dtype
    if dtype not in (torch.float32, torch.bfloat16) or dtype == torch.bfloat16 and not _build._bf16:
        return None
    shapes = [(inner, h)] * 3 + [(h, inner), (inner, h), (h, inner)] + [(f, h)] * len(wis) + [(h, f)]
    for m, shape in zip(lins, shapes):
        w = m.weight
        if tuple(w.shape) != shape or w.dtype != dtype or not w.is_cpu or not w.is_contiguous():
            return None
        tensors.append(w)
    for n in norms:
        if n.weight.shape != (h,) or n.weight.dtype != dtype or not n.weight.is_contiguous():
            return None
        tensors.append(n.weight)
    for j, m in enumerate((sa.q, sa.k, sa.v)):
        spec.w[j] = m.weight.data_ptr()
    spec.wo, spec.wq, spec.wco, spec.wff = (m.weight.data_ptr() for m in (sa.o, ca.q, ca.o, ff.wo))
    for j, m in enumerate(wis):
        spec.wi[j] = m.weight.data_ptr()
    for j, n in enumerate(norms):
        spec.ln[j] = n.weight.data_ptr()
    return (h, nh, inner // nh, f, gated, act, float(norms[0].eps), dtype)


def _step(plan: _Plan, specs, n: int, x: torch.Tensor, start: int, ab: torch.Tensor, per: int, se: int,
          ckeep) -> torch.Tensor | None:
    """One C call: x (B, 1, H) float32 or bfloat16 -> the last block's output, or None; ``ab``
    float32."""
    lib = _build._lib if _build._lib is not None else _build.library()
    if not lib:
        return None
    h, nh, dk, f, gated, act, eps, dtype = plan.sizes
    b = x.shape[0]
    y = torch.empty(b, 1, h, dtype=dtype)
    lib = _typed(lib)
    err = (lib.t5_decoder_step_f32 if dtype == torch.float32 else lib.t5_decoder_step_bf16)(
        ctypes.addressof(specs), n, x.data_ptr(), b, h, nh, dk, f, int(gated), act, eps, start, ab.data_ptr(),
        per, se, None if ckeep is None else ckeep.data_ptr(), y.data_ptr(), torch.get_num_threads())
    return None if err else y


def _probe(block: nn.Module, plan: _Plan) -> bool:
    """Whether block 0 through the C call equals its modules: two rows over three cached tokens
    (a position-bias-like table, the second row's first key masked) and a padded encoder output."""
    h, nh, dk = plan.sizes[:3]
    dtype = plan.sizes[-1]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    x = rand(2, 1, h)
    past_k, past_v = rand(2, nh, 3, dk), rand(2, nh, 3, dk)
    ck, cv = rand(2, nh, 5, dk), rand(2, nh, 5, dk)
    bias = rand(2, nh, 1, 4)
    bias[1, :, :, 0] = torch.finfo(dtype).min
    cmask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).view(2, 1, 1, 5)
    cbias = torch.zeros(2, 1, 1, 5, dtype=dtype).masked_fill_(~cmask, torch.finfo(dtype).min)
    kc, vc = torch.zeros(2, nh, 8, dk, dtype=dtype), torch.zeros(2, nh, 8, dk, dtype=dtype)
    kc[:, :, :3], vc[:, :, :3] = past_k, past_v
    one = (_T5Layer * 1)()
    ctypes.memmove(ctypes.addressof(one), ctypes.addressof(plan.specs), ctypes.sizeof(_T5Layer))
    one[0].kc, one[0].vc, one[0].cap = kc.data_ptr(), vc.data_ptr(), 8
    one[0].ck, one[0].cv = ck.data_ptr(), cv.data_ptr()
    with torch.no_grad():
        y = _step(plan, one, 1, x, 3, bias.reshape(2, nh, 4).float(), 1, 5, cmask.reshape(2, 5).contiguous())
        if y is None:
            return False
        cache = _ProbeCache(past_k, past_v, ck, cv)
        ref = block(x, bias, cache, x, cbias)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    scale = 1.0 + float(ref.abs().max())
    kv_scale = 1.0 + float(cache.k.abs().max()) + float(cache.v.abs().max())
    return bool((y.float() - ref.float()).abs().max() <= tol * scale) \
        and bool((kc[:, :, :4].float() - cache.k.float()).abs().max() <= tol * kv_scale) \
        and bool((vc[:, :, :4].float() - cache.v.float()).abs().max() <= tol * kv_scale)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FusedT5Blocks(T5Blocks):
    """:class:`T5Blocks` that runs a decode step's blocks in one C call where it applies (see the
    module doc), else the blocks' own modules."""

    def joint_step(self, x, bias, cache, encoder_states, cross_bias):
        return run_step(self, x, bias, cache, encoder_states, cross_bias)


def run_step(layers: T5Blocks, x: torch.Tensor, bias, cache, encoder_states, cross_bias) -> torch.Tensor | None:
    """All ``layers`` for one new token per sequence in one C call, or None where that does not
    apply; the cache then holds the new keys and values."""
    ready = _ready(layers, x, encoder_states, cache, _PLANS, _Plan)
    if ready is None:
        return None
    plan, own, cross = ready
    b, _, h = x.shape
    nh, dk, dtype = plan.sizes[1], plan.sizes[2], plan.sizes[-1]
    be, se = cross[0][0].shape[0], cross[0][0].shape[2]
    start = own.get_seq_length()
    if h != plan.sizes[0] or x.dtype != dtype or not isinstance(bias, torch.Tensor) or bias.dtype != dtype \
            or bias.dim() != 4 or tuple(bias.shape[1:]) != (nh, 1, start + 1) or bias.shape[0] not in (1, b):
        return None
    ab = bias.reshape(-1, nh, start + 1).expand(b, nh, start + 1).float().contiguous()
    ckeep = None
    if cross_bias is not None:   # the encoder padding mask as scores: 0 or the dtype's minimum
        if cross_bias.dtype != dtype:
            return None
        keep = cross_bias == 0
        if not bool((keep | (cross_bias == torch.finfo(dtype).min)).all()):
            return None
        ckeep = _keep(keep, be, se)
        if ckeep is False:
            return None
        if ckeep is not None and bool(ckeep.all()):
            ckeep = None
    if not x.is_contiguous():
        x = x.contiguous()
    if not plan.lock.acquire(blocking=False):
        return None
    try:
        got = own.storage_for(1)
        if got is None or got[2] != start:
            return None
        bound = _bind(plan.specs, got[0], got[1], cross, b, nh, dk, dtype)
        if bound is None or bound[0] != be:
            return None
        y = _step(plan, plan.specs, len(layers), x, start, ab, b // be, se, ckeep)
    finally:
        plan.lock.release()
    if y is not None:
        own.advance(1)
    return y
