"""A whole encoder-decoder decode step (Whisper, BART, Marian, mBART, Pegasus) in one C call
(``seq2seq_decoder.c``), swapped in for :class:`~pretrained.layers.seq2seq_stack.Seq2SeqDecoderLayers`.

At one new token per sequence each of a layer's six linears is tens of microseconds, and the ~30
torch ops and module calls around them (three LayerNorms, two attentions, the cache, the
residuals) cost about as much again. :class:`FusedSeq2SeqDecoderLayers` hands every layer to
``s2s_decoder_step_f32``: the LayerNorms before (pre-LN) or after (post-LN) each sublayer,
self-attention with q/k/v in one kernel call whose new keys/values go into the
:class:`~pretrained.cache.DynamicCache`'s own storage (so the module path, beam reordering and
cropping see them), cross-attention over the keys/values the cache holds for each input (projected
once by the modules at the first step; the beams of one input read the same ones), the exact
GELU / ReLU / SiLU feed-forward and the residuals. Float32 weights (``nn.Linear`` or
:class:`~.linear.CpuLinear`), or bfloat16 ones on the variants with bfloat16 kernels
(``s2s_decoder_step_bf16``: rounded where the modules' bfloat16 ops round; the BART-family test
fixtures give the modules' numbers bit for bit, Whisper's a bfloat16 ulp or so apart where torch's
softmax takes its vectorized approximate exp over 16 or more keys); other dtypes run the modules.

Measured (one thread, process CPU time per token, 24 greedy steps after one, same process,
five interleaved rounds, shared loaded machine): Whisper base (1500 encoder frames) batch 1
24.3-26.1 -> 20.3-22.3 ms, 4 beams of one input 30.3-32.0 -> 25.5-26.8 ms (the beams' cross
keys/values read once per input: reading them once per beam gave 30.7-32.8); an opus-mt-shaped
Marian (random, 6 layers, d_model 512, 32k vocabulary, 30 source tokens) batch 1 15.8-17.2 ->
11.4-13.4 ms; Whisper base in bfloat16 batch 1 27.3-29.0 -> 21.7-22.6 ms, 4 beams 31.6-33.3 ->
27.6-28.2 ms. The same tokens both ways. The rest of a token is mostly the LM head (Whisper's
51,865 x 512 float32 rows).

Recognised by structure, then proven by numbers (as :mod:`.decoder`): each layer must be a
:class:`~pretrained.layers.bart_blocks.BartDecoderLayer` of exact type whose linears and
LayerNorms are of exact plain or swapped types; layer 0 runs once through the C call and through
its modules on a probe (two sequences, one padded, a short cache, a padded encoder output), and
the stack is used only if outputs and written cache agree. The plan is checked on every call
(every module, parameter and plain attribute the same object, every tensor at the same address,
no hooks, no training). It steps aside (the modules run) for: more than one new token, more than
16 sequences, the first step (no cross keys/values stored yet), no encoder output, grad recording,
hooks, training, hidden states asked for, a cache other than an EncoderDecoderCache over a
DynamicCache, other dtypes (bfloat16 without the bfloat16 kernels) or linear types (LoRA,
quantized), ``torch.compile`` tracing, CPU autocast.

Example::

    >>> from pretrained.backends.seq2seq_decoder import FusedSeq2SeqDecoderLayers
    >>> FusedSeq2SeqDecoderLayers.__mro__[1].__name__
    'Seq2SeqDecoderLayers'
"""

from __future__ import annotations

import ctypes
import operator
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.bart_blocks import BartAttention, BartDecoderLayer
from ..layers.seq2seq_stack import Seq2SeqDecoderLayers
from . import build as _build
from .linear import CpuLinear
from .rows import ROWS_MAX, cpu_autocast

_LINEARS = (nn.Linear, CpuLinear)
_ACTS = {F.gelu: 1, F.relu: 2, F.silu: 3}
_PROBE_TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}   # of the output's scale
_TRAINING = operator.attrgetter("training")
_P = ctypes.c_void_p


class _S2SLayer(ctypes.Structure):
    """``s2s_layer`` in seq2seq_decoder.c."""

    _fields_ = [("w", _P * 3), ("b", _P * 3), ("wo", _P), ("bo", _P), ("wq", _P), ("bq", _P),
                ("wco", _P), ("bco", _P), ("w1", _P), ("b1", _P), ("w2", _P), ("b2", _P),
                ("ln", _P * 6), ("eps", ctypes.c_float * 3), ("pad_", ctypes.c_float),
                ("kc", _P), ("vc", _P), ("cap", ctypes.c_int64), ("ck", _P), ("cv", _P)]


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    if not getattr(lib, "s2s_typed", False):
        p, n, i, f = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
        for fn in (lib.s2s_decoder_step_f32, lib.s2s_decoder_step_bf16):
            fn.argtypes = [p, i, p, n, n, i, n, i, i, f, n, p, n, n, p, p, i]
            fn.restype = i
        lib.s2s_typed = True
    return lib


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


class _Plan:
    """What one C call over the layers needs, gathered once, and what shows it still holds."""

    __slots__ = ("links", "ptrs", "modules", "tensors", "specs", "sizes", "bound", "checks", "hooks",
                 "lock", "__weakref__")

    def __init__(self, layers: Seq2SeqDecoderLayers) -> None:
        self.links = [(layers._modules, k, m) for k, m in layers._modules.items()]
        self.modules = [m for layer in layers for m in layer.modules()]
        for m in self.modules:   # recorded first: a "no" must also notice changes
            self.links += [(m._modules, k, v) for k, v in m._modules.items()]
            self.links += [(m._parameters, k, v) for k, v in m._parameters.items()]
            self.links += [(m.__dict__, k, v) for k, v in m.__dict__.items()
                           if not k.startswith("_") and k != "training"]
        self.tensors, self.specs, self.sizes, self.bound, self.checks, self.hooks = [], None, None, None, None, None
        self.ptrs = []
        self.lock = threading.Lock()   # the layers' cache pointers are the plan's: one step at a time
        specs = (self.spec_type * len(layers))()
        sizes = set()
        for i, (layer, spec) in enumerate(zip(layers, specs)):
            s = self._layer(i, layer, spec)
            if s is None:
                return
            sizes.add(s)
        if len(sizes) != 1:
            return
        self.sizes = sizes.pop()
        self.specs = specs
        self.ptrs = [(t, t.data_ptr()) for t in self.tensors]
        if not self.probe(layers[0]):
            self.specs = None

    spec_type = _S2SLayer   # (T5's plan, backends/t5_decoder.py, fills its own)

    def probe(self, layer: nn.Module) -> bool:
        return _probe(layer, self)

    def _layer(self, i: int, layer: nn.Module, spec: _S2SLayer) -> tuple | None:
        """Fill ``spec`` for layer ``i``; its sizes (H, heads, I, pre-LN, activation, scale, dtype)
        or None."""
        if type(layer) is not BartDecoderLayer or set(layer._modules) != {
                "self_attn", "self_attn_layer_norm", "encoder_attn", "encoder_attn_layer_norm", "fc1", "fc2",
                "final_layer_norm"}:
            return None
        sa, ca, fc1, fc2 = layer.self_attn, layer.encoder_attn, layer.fc1, layer.fc2
        norms = [layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm]
        act = _ACTS.get(layer.__dict__.get("activation_fn"))
        if act is None or type(sa) is not BartAttention or type(ca) is not BartAttention \
                or sa.layer_idx != i or ca.layer_idx != i or sa.num_heads != ca.num_heads \
                or sa.scaling != ca.scaling or not isinstance(layer.normalize_before, bool):
            return None
        lins = [sa.q_proj, sa.k_proj, sa.v_proj, sa.out_proj, ca.q_proj, ca.out_proj, fc1, fc2]
        if any(type(m) not in _LINEARS for m in lins + [ca.k_proj, ca.v_proj]) \
                or any(type(n) is not nn.LayerNorm for n in norms):
            return None
        h, inter = fc1.weight.shape[1], fc1.weight.shape[0]
        nh = sa.num_heads
        shapes = [(h, h)] * 6 + [(inter, h), (h, inter)]
        if not isinstance(nh, int) or nh < 1 or h % nh or h // nh > 1024:
            return None
        dtype = fc1.weight.dtype
        if dtype not in (torch.float32, torch.bfloat16) or dtype == torch.bfloat16 and not _build._bf16:
            return None
        tensors = []
        for m, shape in zip(lins, shapes):
            w, b = m.weight, m.bias
            if tuple(w.shape) != shape or w.dtype != dtype or not w.is_cpu or not w.is_contiguous() \
                    or b is not None and (b.dtype != dtype or not b.is_contiguous() or b.shape != w.shape[:1]):
                return None
            tensors += [w] + ([b] if b is not None else [])
        for n in norms:
            if n.normalized_shape != (h,) or not n.elementwise_affine or n.weight is None or n.bias is None \
                    or any(t.dtype != dtype or not t.is_cpu or not t.is_contiguous()
                           for t in (n.weight, n.bias)):
                return None
            tensors += [n.weight, n.bias]
        for j, m in enumerate(lins[:3]):
            spec.w[j], spec.b[j] = m.weight.data_ptr(), _ptr(m.bias)
        spec.wo, spec.bo = sa.out_proj.weight.data_ptr(), _ptr(sa.out_proj.bias)
        spec.wq, spec.bq = ca.q_proj.weight.data_ptr(), _ptr(ca.q_proj.bias)
        spec.wco, spec.bco = ca.out_proj.weight.data_ptr(), _ptr(ca.out_proj.bias)
        spec.w1, spec.b1 = fc1.weight.data_ptr(), _ptr(fc1.bias)
        spec.w2, spec.b2 = fc2.weight.data_ptr(), _ptr(fc2.bias)
        for j, n in enumerate(norms):
            spec.ln[2 * j], spec.ln[2 * j + 1] = n.weight.data_ptr(), n.bias.data_ptr()
            spec.eps[j] = n.eps
        self.tensors += tensors
        return (h, nh, inter, layer.normalize_before, act, float(sa.scaling), dtype)

    def current(self) -> bool:
        # what every link holds now as one tuple, compared with the recorded one by C loops (as
        # decoder.py: an item is the recorded object or compares equal to it)
        if self.checks is None:
            self.checks = (tuple(d for d, _, _ in self.links), tuple(k for _, k, _ in self.links),
                           tuple(o for _, _, o in self.links), tuple(t for t, _ in self.ptrs),
                           tuple(p for _, p in self.ptrs))
        ds, ks, objs, ts, ps = self.checks
        try:
            return tuple(map(dict.get, ds, ks)) == objs and tuple(map(torch.Tensor.data_ptr, ts)) == ps
        except RuntimeError:
            return False

    def idle(self) -> bool:
        """No module training, no module hooks."""
        if self.hooks is None:
            self.hooks = tuple(d for m in self.modules for d in (m._forward_hooks, m._forward_pre_hooks))
        return not any(map(_TRAINING, self.modules)) and not any(self.hooks)


def _bind(specs, keys, values, cross: list, batch: int, nh: int, d: int, dtype: torch.dtype) -> tuple | None:
    """Point the layers at the caches' storage; the encoder positions, or None where it cannot."""
    if len(keys) != len(specs) or len(values) != len(keys) or len(cross) != len(specs):
        return None
    se = None
    for spec, kb, vb, (ck, cv) in zip(specs, keys, values, cross):
        if kb.dtype != dtype or vb.dtype != dtype or not kb.is_cpu or not kb.is_contiguous() \
                or not vb.is_contiguous() or kb.dim() != 4 or kb.shape != vb.shape \
                or tuple(kb.shape[:2]) != (batch, nh) or kb.shape[3] != d:
            return None
        if ck.dtype != dtype or cv.dtype != dtype or not ck.is_cpu or not ck.is_contiguous() \
                or not cv.is_contiguous() or ck.dim() != 4 or ck.shape != cv.shape or ck.shape[1] != nh \
                or ck.shape[3] != d or ck.shape[0] < 1 or batch % ck.shape[0] \
                or se is not None and tuple(ck.shape[:3]) != se:
            return None
        se = tuple(ck.shape[:3])
        spec.kc, spec.vc, spec.cap = kb.data_ptr(), vb.data_ptr(), kb.shape[2]
        spec.ck, spec.cv = ck.data_ptr(), cv.data_ptr()
    return se


def _step(plan: _Plan, specs, n: int, x: torch.Tensor, start: int, keep, per: int, se: int,
          ckeep) -> torch.Tensor | None:
    """One C call: x (B, 1, H) float32 or bfloat16 -> the last layer's output, or None."""
    lib = _build._lib if _build._lib is not None else _build.library()
    if not lib:
        return None
    h, nh, inter, pre, act, scale, dtype = plan.sizes
    b = x.shape[0]
    y = torch.empty(b, 1, h, dtype=dtype)
    lib = _typed(lib)
    err = (lib.s2s_decoder_step_f32 if dtype == torch.float32 else lib.s2s_decoder_step_bf16)(
        ctypes.addressof(specs), n, x.data_ptr(), b, h, nh, inter, int(pre), act, scale, start, _ptr(keep),
        per, se, _ptr(ckeep), y.data_ptr(), torch.get_num_threads())
    return None if err else y


class _ProbeCache:
    """The smallest cache layer 0 can use: self-attention grows by concatenation, fixed cross."""

    def __init__(self, k, v, ck, cv) -> None:
        self.k, self.v, self.kv = k, v, (ck, cv)

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = torch.cat((self.k, k), 2), torch.cat((self.v, v), 2)
        return self.k, self.v

    def cross(self, layer_idx: int):
        return self.kv


def _probe(layer: nn.Module, plan: _Plan) -> bool:
    """Whether layer 0 through the C call equals its own modules: two sequences (the second with
    a padded first slot) over three cached tokens and a padded encoder output of five."""
    h, nh, dtype = plan.sizes[0], plan.sizes[1], plan.sizes[-1]
    d = h // nh
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    x = rand(2, 1, h)
    past_k, past_v = rand(2, nh, 3, d), rand(2, nh, 3, d)
    ck, cv = rand(2, nh, 5, d), rand(2, nh, 5, d)
    mask = torch.tensor([[True] * 4, [False] + [True] * 3]).view(2, 1, 1, 4)
    cmask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).view(2, 1, 1, 5)
    kc, vc = torch.zeros(2, nh, 8, d, dtype=dtype), torch.zeros(2, nh, 8, d, dtype=dtype)
    kc[:, :, :3], vc[:, :, :3] = past_k, past_v
    one = (_S2SLayer * 1)()
    ctypes.memmove(ctypes.addressof(one), ctypes.addressof(plan.specs), ctypes.sizeof(_S2SLayer))
    one[0].kc, one[0].vc, one[0].cap = kc.data_ptr(), vc.data_ptr(), 8
    one[0].ck, one[0].cv = ck.data_ptr(), cv.data_ptr()
    with torch.no_grad():
        y = _step(plan, one, 1, x, 3, mask.reshape(2, 4).contiguous(), 1, 5, cmask.reshape(2, 5).contiguous())
        if y is None:
            return False
        cache = _ProbeCache(past_k, past_v, ck, cv)
        ref = layer(x, mask, x, cmask, cache)
    tol = _PROBE_TOL[dtype]
    scale = 1.0 + float(ref.abs().max())
    kv_scale = 1.0 + float(cache.k.abs().max()) + float(cache.v.abs().max())
    return bool((y.float() - ref.float()).abs().max() <= tol * scale) \
        and bool((kc[:, :, :4].float() - cache.k.float()).abs().max() <= tol * kv_scale) \
        and bool((vc[:, :, :4].float() - cache.v.float()).abs().max() <= tol * kv_scale)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FusedSeq2SeqDecoderLayers(Seq2SeqDecoderLayers):
    """:class:`Seq2SeqDecoderLayers` that runs a decode step's layers in one C call where it
    applies (see the module doc), else the layers' own modules."""

    def joint_step(self, x, mask, encoder_states, encoder_mask, cache):
        return run_step(self, x, mask, encoder_states, encoder_mask, cache)


def _keep(mask: torch.Tensor | None, rows: int, length: int) -> torch.Tensor | None | bool:
    """A (rows or 1, 1, 1, length) boolean mask as (rows, length) bytes; None: every key; False:
    a mask this step cannot take."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.dim() != 4 or tuple(mask.shape[1:]) != (1, 1, length) \
            or mask.shape[0] not in (1, rows):
        return False
    keep = mask.reshape(-1, length)
    return (keep.expand(rows, length) if keep.shape[0] != rows else keep).contiguous()


def _ready(layers: nn.Module, x: torch.Tensor, encoder_states, cache, plans, plan_type) -> tuple | None:
    """(plan, self-attention cache, cross keys/values per layer) where a fused encoder-decoder step
    may run on ``x`` (this module's and T5's, backends/t5_decoder.py), else None: compiling, other
    dtypes or shapes, no encoder output or cross cache, autocast, global hooks, a static cache,
    training, no kernels, a plan that declined or is busy, autograd through the inputs or weights."""
    if torch.compiler.is_compiling():   # (first: nothing below is traced)
        return None
    if x.dtype not in (torch.float32, torch.bfloat16) or x.dim() != 3 or x.shape[1] != 1 or not 0 < x.shape[0] <= ROWS_MAX \
            or not x.is_cpu or encoder_states is None or cache is None or not hasattr(cache, "cross") \
            or cpu_autocast() or nn.modules.module._global_forward_hooks \
            or nn.modules.module._global_forward_pre_hooks:
        return None
    own = getattr(cache, "self_attention_cache", None)
    if own is None or not hasattr(own, "storage_for") or len(own) != len(layers) \
            or getattr(own, "get_max_length", lambda: None)() is not None:   # (a static cache: modules)
        return None
    cross = [cache.cross(i) for i in range(len(layers))]
    if any(kv is None for kv in cross):
        return None
    plan = plans.get(layers)
    if plan is None or not plan.current():
        if layers.training or any(m.training for m in layers.modules()) or not _build.available() \
                or _build.library() is None:
            return None
        plan = plans[layers] = plan_type(layers)
    if plan.specs is None or not plan.idle() \
            or torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in plan.tensors)):
        return None
    return plan, own, cross


def run_step(layers: Seq2SeqDecoderLayers, x: torch.Tensor, mask, encoder_states, encoder_mask,
             cache) -> torch.Tensor | None:
    """All ``layers`` for one new token per sequence in one C call, or None where that does not
    apply (see the module doc); the cache then holds the new keys and values."""
    ready = _ready(layers, x, encoder_states, cache, _PLANS, _Plan)
    if ready is None:
        return None
    plan, own, cross = ready
    b, _, h = x.shape
    hh, nh, dtype = plan.sizes[0], plan.sizes[1], plan.sizes[-1]
    if h != hh or x.dtype != dtype:
        return None
    be, se = cross[0][0].shape[0], cross[0][0].shape[2]
    start = own.get_seq_length()
    keep, ckeep = _keep(mask, b, start + 1), _keep(encoder_mask, be, se)
    if keep is False or ckeep is False:
        return None
    if not x.is_contiguous():
        x = x.contiguous()
    if not plan.lock.acquire(blocking=False):
        return None
    try:
        got = own.storage_for(1)
        if got is None or got[2] != start:
            return None
        bound = _bind(plan.specs, got[0], got[1], cross, b, nh, h // nh, dtype)
        if bound is None or bound[0] != be:
            return None
        y = _step(plan, plan.specs, len(layers), x, start, keep, b // be, se, ckeep)
    finally:
        plan.lock.release()
    if y is not None:
        own.advance(1)
    return y
