"""A whole Llama-family decode step in one C call (``decoder.c``), swapped in for
:class:`~pretrained.layers.decoder_stack.DecoderLayers`.

At one new token per sequence a layer's linears are a few tens of microseconds each, and the
~15 torch ops and module calls around them cost about as much again (SmolLM2-135M Q4_1: ~8.5 ms
of a ~22 ms token at one thread). :class:`FusedDecoderLayers` hands every layer to
``decoder_step_f32`` / ``decoder_step_bf16``: RMSNorms, q/k/v (one kernel call, biases
included), Qwen3's per-head q/k norms, the rotation by the model's own cos/sin, the new
keys/values written into the KV cache's own storage (so the module path, beam reordering and
cropping see them), grouped-query attention over the cache under the step's mask (left
padding; a sliding window all layers share), the output projection, SwiGLU and both residuals.
The linears may be GGUF blocks (:class:`~pretrained.layers.gguf.GGUFLinear`, float32 or int8
activations as the layer is set; float32 models) or float32 / bfloat16 weights (``nn.Linear``;
bfloat16 on the variants with bfloat16 kernels, rounded where the modules' bfloat16 ops round),
or bitsandbytes' (issue 13): LLM.int8() :class:`~pretrained.quantization.Linear8bit` layers
(weight-only ones too in float32 steps: ``int8_rows``' float32 rows, the modules' row kernel)
(``int8_rows``: float16-rounded rows quantized per row, outlier columns, exact int32 sums;
bfloat16 steps widen the rows and round the float32 outputs once, as ``llm_int8_matmul``) and
NF4 / FP4 :class:`~pretrained.quantization.Linear4bit` layers (``bnb_linear``'s 1-16-row
kernel; compute dtype the step's, or float32 in a bfloat16 step), the same kernel calls as the
modules'. Weight-only int8 in bfloat16, 4-bit layers of inputs not a multiple of 32 and QLoRA
run the modules. SCB, the absmax and code table are read where they lie, or from float32 copies whose
sources' in-place writes rebuild the plan; a threshold or other attribute changed rebuilds it.
SmolLM2-135M, 1 thread, process CPU time per step, interleaved with the modules (16 greedy
steps, 3 rounds, shared machine): LLM.int8() float32 b1 33.4-34.1 -> 21.3-22.1 ms, b8 38.2-40.2
-> 25.0-26.0; bfloat16 b1 33.8-34.5 -> 19.2-20.1, b8 36.2-39.3 -> 20.6-23.3; NF4 float32 b1
25.5-27.2 -> 17.7-18.0, b8 42.4-44.8 -> 32.5-33.3; NF4 bfloat16 b1 23.5-24.3 -> 13.7-14.8, b8
42.8-44.1 -> 33.3-34.2; weight-only int8 float32 b1 32.7-33.9 -> 21.5-22.2, b8 50.5-55.3 ->
38.2-39.4 (NF4 and weight-only: the same tokens; LLM.int8(): the step's float-rounding differences
move activations across int8 grid steps, logits 0.82 apart on a 33 scale after one step at b8,
each 2.149 from the float model's).

Measured (SmolLM2-135M-Instruct, one thread, process CPU time per token, same process,
interleaved with the modules, 24 greedy tokens, shared loaded machine): Q4_1 GGUF batch 1
21.4-22.5 -> 13.8-14.3 ms (the same tokens; chat answer "The capital of France is Paris."),
batch 8 51-53 -> 41-46 ms; float32 (the file dequantized) 60-64 -> 42-43 ms; bfloat16 38-39 ->
24 ms (logits a bfloat16 ulp or so apart where torch's attention rounds differently, so greedy
tokens can part at a near tie: here step 19 of 24, margin 0.25). Of the Q4_1 step, ~9 ms is
this call, ~3 ms the LM head, ~1.2 ms the model's own Python around them. Two threads, wall
time, in a quiet minute of the same machine (37-token prompt, forward only, 30 steps a round,
interleaved): fused 7.0-7.5 ms/token (~137 tok/s) against the modules' 13.3-14.9 ms.

Recognised by structure, then proven by numbers (as :mod:`.encoder`): each layer's modules must
be the Llama family's (``input_layernorm``, ``self_attn`` with ``q/k/v/o_proj`` and optional
``q_norm``/``k_norm``, ``post_attention_layernorm``, ``mlp`` with ``gate/up/down_proj`` and SiLU),
of exact plain or swapped types; then layer 0 runs once through the C call and through its
modules on a probe (two sequences, one padded, a short cache) and the stack is used only if
outputs and written cache agree. The plan is checked on every call (every module, parameter and
plain attribute on the path the same object, every tensor at the same address, no hooks, no
module training). It steps aside (the modules run) for: more than one new token (prefill), more
than 16 sequences, grad recording, hooks, training, hidden states asked for, a cache other than
a :class:`~pretrained.cache.DynamicCache` or ``StaticCache``, layers whose masks differ (a
window on some layers only, once it cuts), other dtypes, LoRA or other linear types (GPTQ / AWQ),
``torch.compile`` tracing (the layers' own modules are traced), CPU autocast.
"""

from __future__ import annotations

import ctypes
import operator
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.decoder_stack import DecoderLayers
from ..layers.gguf import PACKED_TYPES, GGUFLinear, row_bytes
from ..layers.norms import RMSNorm
from ..quantization.int8 import Linear8bit
from ..quantization.nf4 import Linear4bit
from . import build as _build
from .bnb_linear import fp16_threshold
from .gguf_linear import CpuGGUFLinear, _Layer, _library
from .linear import CpuLinear
from .norms import CpuRMSNorm
from .packed import _version
from .quantized import CpuLinear4bit, CpuLinear8bit
from .rows import ROWS_MAX, cpu_autocast

_FLOAT_LINEARS = (nn.Linear, CpuLinear)
_GGUF_LINEARS = (GGUFLinear, CpuGGUFLinear)
_INT8_LINEARS = (Linear8bit, CpuLinear8bit)
_4BIT_LINEARS = (Linear4bit, CpuLinear4bit)
_STEP_DTYPES = (torch.float32, torch.bfloat16)
_NORMS = (RMSNorm, CpuRMSNorm)
_PROBE_TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}   # of the output's scale
_TRAINING = operator.attrgetter("training")


class _Part(ctypes.Structure):
    """``dec_part`` in decoder.c: linears of one input and one kind, outputs from column col."""

    _fields_ = [("kind", ctypes.c_int64), ("count", ctypes.c_int64), ("int8", ctypes.c_int64),
                ("layers", ctypes.c_void_p), ("w", ctypes.c_void_p * 3), ("b", ctypes.c_void_p * 3),
                ("N", ctypes.c_int64 * 3), ("col", ctypes.c_int64), ("s", ctypes.c_void_p * 3),
                ("qmap", ctypes.c_void_p * 3), ("log2bs", ctypes.c_int64 * 3), ("wbf16", ctypes.c_int64),
                ("th", ctypes.c_double)]


class _Linear(ctypes.Structure):
    """``dec_linear`` in decoder.c: linears of one input in runs of one kind."""

    _fields_ = [("nparts", ctypes.c_int64), ("p", _Part * 3)]


class _DecLayer(ctypes.Structure):
    """``dec_layer`` in decoder.c."""

    _fields_ = [("qkv", _Linear), ("o", _Linear), ("gu", _Linear), ("down", _Linear),
                ("ln1", ctypes.c_void_p), ("ln2", ctypes.c_void_p), ("qn", ctypes.c_void_p),
                ("kn", ctypes.c_void_p), ("kc", ctypes.c_void_p), ("vc", ctypes.c_void_p),
                ("cap", ctypes.c_int64)]


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    if not getattr(lib, "decoder_typed", False):
        p, n, i, f = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
        for fn in (lib.decoder_step_f32, lib.decoder_step_bf16):
            fn.argtypes = [p, i, p, n, n, i, i, n, n, f, f, f, p, p, n, p, p, i]
            fn.restype = i
        lib.decoder_typed = True
    return lib


def _kind(m: nn.Module) -> tuple:
    if type(m) in _FLOAT_LINEARS:
        return (3 if m.weight.dtype == torch.bfloat16 else 1, False)
    if type(m) in _GGUF_LINEARS:
        return (2, bool(m.int8_activations))
    if type(m) in _INT8_LINEARS and m.llm_int8 and m.threshold >= 0:
        # LLM.int8(); one call per threshold as float16 sees it
        th = fp16_threshold(m.threshold)
        return (0, False) if m.threshold > 0 and th == 0 else (4, th)
    if type(m) is CpuLinear8bit:   # weight-only (float32 steps: the module's bnb_linear rows)
        return (6, 0.0)
    if type(m) in _4BIT_LINEARS:
        return (5, torch.bfloat16 in (m.compute_dtype, m.weight_dtype))
    return (0, False)


def _f32(t: torch.Tensor | None, plan: _Plan, through: torch.dtype = torch.float32) -> torch.Tensor | None:
    """``t`` as the float32 tensor C reads (first rounded to ``through`` as the modules' casts
    round it): itself where it is one, else a copy the plan keeps and whose source's in-place
    writes it watches (the plan is rebuilt then)."""
    if t is None or t.dtype == torch.float32 and through == torch.float32 and t.is_contiguous():
        return t
    plan.watched.append((t, _version(t)))
    c = t.detach().to(through).float().contiguous()
    plan.keep.append(c)
    return c


def _fill(spec: _Linear, mods: list[nn.Module], plan: _Plan, dtype: torch.dtype) -> bool:
    """``spec`` for linears ``mods`` of one input (consecutive ones of one kind share a kernel
    call); False where the C call cannot take them (bfloat16 steps: bfloat16 weights only)."""
    runs: list[list[nn.Module]] = []
    for m in mods:
        if _kind(m)[0] == 0:
            return False
        if runs and _kind(runs[-1][0]) == _kind(m):
            runs[-1].append(m)
        else:
            runs.append([m])
    col = 0
    for part, run in zip(spec.p, runs):
        if not _fill_part(part, run, plan, dtype):
            return False
        part.col = col
        col += sum(_out(m) for m in run)
    spec.nparts = len(runs)
    return True


def _fill_part(spec: _Part, mods: list[nn.Module], plan: _Plan, dtype: torch.dtype) -> bool:
    kind = _kind(mods[0])[0]
    if kind in (4, 5, 6):
        return _fill_quantized(spec, mods, plan, dtype)
    keep = plan.keep
    if kind != (1 if dtype == torch.float32 else 3) and not (kind == 2 and dtype == torch.float32):
        return False
    if kind in (1, 3):
        for j, m in enumerate(mods):
            w, b = m.weight, m.bias
            if w.dtype != dtype or not w.is_cpu or not w.is_contiguous() or w.dim() != 2 \
                    or b is not None and (b.dtype != dtype or not b.is_contiguous() or b.shape != w.shape[:1]):
                return False
            spec.w[j], spec.N[j] = w.data_ptr(), w.shape[0]
            spec.b[j] = None if b is None else b.data_ptr()
        spec.kind, spec.count = kind, len(mods)
        return True
    layers = (_Layer * len(mods))()
    col = 0
    for layer, m in zip(layers, mods):
        w, b, oi = m.weight, m.bias, m.out_index
        if m.ggml_type not in PACKED_TYPES:   # (the formats the block kernels multiply)
            return False
        if not w.is_cpu or w.dtype != torch.uint8 or w.dim() != 2 or w.stride(1) != 1 \
                or tuple(w.shape) != (m.out_features, row_bytes(m.ggml_type, m.in_features)) \
                or b is not None and (b.dtype != torch.float32 or not b.is_contiguous()
                                      or tuple(b.shape) != (m.out_features,)) \
                or oi is not None and (oi.dtype != torch.int32 or not oi.is_contiguous()
                                       or tuple(oi.shape) != (m.out_features,)):
            return False
        layer.type, layer.w, layer.N, layer.K = m.ggml_type, w.data_ptr(), m.out_features, m.in_features
        layer.ldw, layer.col = w.stride(0), col
        layer.bias = None if b is None else b.data_ptr()
        layer.out_index = None if oi is None else oi.data_ptr()
        col += m.out_features
    keep.append(layers)
    spec.kind, spec.count, spec.int8 = 2, len(mods), int(mods[0].int8_activations)
    spec.layers = ctypes.addressof(layers)
    return True


def _fill_quantized(spec: _Part, mods: list[nn.Module], plan: _Plan, dtype: torch.dtype) -> bool:
    """Kinds 4 (LLM.int8(): int8 rows, SCB, the threshold) and 5 (NF4 / FP4 codes, the float32
    absmax per block, the code table) as the modules' kernels take them (quantized.py): the
    same pointers, or float32 copies made as the modules make them (watched for in-place writes)."""
    kind, flag = _kind(mods[0])
    if kind == 6 and dtype != torch.float32:
        return False   # (bfloat16 modules: torch._weight_int8pack_mm's numbers)
    for j, m in enumerate(mods):
        w, n, k = m.weight, m.out_features, m.in_features
        if not w.is_cpu or not w.is_contiguous():
            return False
        if kind in (4, 6):
            scb = m.SCB
            if w.dtype != torch.int8 or tuple(w.shape) != (n, k) or scb is None or tuple(scb.shape) != (n,) \
                    or not scb.is_cpu:
                return False
            spec.s[j] = _f32(scb, plan).data_ptr()
            bias = _f32(m.bias, plan)   # (llm_int8_matmul: the bias as float32)
        else:
            bs = m.blocksize
            # the modules' kernel path (in % 32, power-of-two blocks >= 32) on the step's rows: its
            # compute dtype the step's, or float32 in a bfloat16 step (the modules widen the rows
            # exactly and round the float32 outputs to bfloat16, as the kernel's bfloat16 rows do)
            if m.compute_dtype not in (dtype, torch.float32) or m.weight_dtype not in _STEP_DTYPES \
                    or w.dtype != torch.uint8 or w.numel() * 2 != n * k or k % 32 or bs < 32 or bs & (bs - 1) or m.quant_map is None \
                    or m.quant_map.numel() != 16 or m.absmax is None:
                return False
            for t in (m.absmax, m.nested_absmax, m.nested_quant_map):
                if t is not None:
                    plan.watched.append((t, _version(t)))
            absmax = m.block_absmax().float().contiguous()
            if absmax.numel() * bs < n * k:
                return False
            plan.keep.append(absmax)
            spec.s[j], spec.qmap[j] = absmax.data_ptr(), _f32(m.quant_map, plan).data_ptr()
            spec.log2bs[j] = bs.bit_length() - 1
            bias = _f32(m.bias, plan, m.compute_dtype)   # (_bias32: in the compute dtype, as float32)
        if bias is not None and tuple(bias.shape) != (n,):
            return False
        spec.w[j], spec.N[j], spec.b[j] = w.data_ptr(), n, None if bias is None else bias.data_ptr()
    spec.kind, spec.count = kind, len(mods)
    spec.th, spec.wbf16 = (flag, 0) if kind in (4, 6) else (0.0, int(flag))
    return True


def _out(m: nn.Module) -> int:
    """Output features (a float weight's own rows: what the C call reads)."""
    return m.weight.shape[0] if type(m) in _FLOAT_LINEARS else m.out_features


def _in(m: nn.Module) -> int:
    return m.weight.shape[1] if type(m) in _FLOAT_LINEARS else m.in_features


class _Plan:
    """What one C call over the layers needs, gathered once, and what shows it still holds."""

    __slots__ = ("links", "ptrs", "modules", "tensors", "specs", "keep", "watched", "sizes", "bound", "checks",
                 "hooks", "lock", "__weakref__")

    def __init__(self, layers: DecoderLayers) -> None:
        self.links = [(layers._modules, k, m) for k, m in layers._modules.items()]
        self.modules = [m for layer in layers for m in layer.modules()]
        for m in self.modules:   # recorded first: a "no" must also notice changes
            self.links += [(m._modules, k, v) for k, v in m._modules.items()]
            self.links += [(m._parameters, k, v) for k, v in m._parameters.items()]
            self.links += [(m._buffers, k, v) for k, v in m._buffers.items()]   # SCB, absmax, code table
            self.links += [(m.__dict__, k, v) for k, v in m.__dict__.items()
                           if not k.startswith("_") and k != "training"]
        self.tensors, self.ptrs, self.specs, self.keep, self.sizes, self.bound = [], [], None, [], None, None
        self.watched = []   # (tensor, version): sources of float32 copies C reads (SCB, absmax...)
        self.checks = self.hooks = None
        # the layers' cache pointers are the plan's: one step at a time (another thread's step
        # on the same model meanwhile runs the modules, into its own cache)
        self.lock = threading.Lock()
        specs = (_DecLayer * len(layers))()
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
        if not _probe(layers[0], self):
            self.specs = None

    def _layer(self, i: int, layer: nn.Module, spec: _DecLayer) -> tuple | None:
        """Fill ``spec`` for layer ``i``; its sizes (H, nh, nkv, D, I, eps, qk eps, scale, dtype)
        or None."""
        mods = layer._modules
        if set(mods) != {"input_layernorm", "self_attn", "post_attention_layernorm", "mlp"}:
            return None
        n1, att, n2, mlp = (mods[k] for k in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp"))
        if type(n1) not in _NORMS or type(n2) not in _NORMS or n1.eps != n2.eps:
            return None
        am = att._modules
        proj = {"q_proj", "k_proj", "v_proj", "o_proj"}
        qk_norm = set(am) == proj | {"q_norm", "k_norm"}   # (absent ones are None attributes)
        if not (qk_norm or set(am) == proj and att.__dict__.get("q_norm", 0) is None
                and att.__dict__.get("k_norm", 0) is None) \
                or qk_norm and (am["q_norm"] is None or am["k_norm"] is None) \
                or set(mlp._modules) != {"gate_proj", "up_proj", "down_proj"} \
                or mlp.__dict__.get("act_fn") is not F.silu or getattr(att, "layer_idx", None) != i:
            return None
        nh, nkv, d = att.__dict__.get("num_heads"), att.__dict__.get("num_kv_heads"), att.__dict__.get("head_dim")
        if not all(isinstance(v, int) and v > 0 for v in (nh, nkv, d)) or nh % nkv or d % 2:
            return None
        h = n1.weight.shape[0]
        if n1.weight.dim() != 1 or n2.weight.shape != (h,):
            return None
        q, k, v, o = (am[n] for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        g, u, dn = (mlp._modules[n] for n in ("gate_proj", "up_proj", "down_proj"))
        inter = _out(g)
        try:
            shapes_ok = [(_out(m), _in(m)) for m in (q, k, v, o, g, u, dn)] == \
                [(nh * d, h), (nkv * d, h), (nkv * d, h), (h, nh * d), (inter, h), (inter, h), (h, inter)]
        except AttributeError:
            return None
        if not shapes_ok:
            return None
        norms = [n1.weight, n2.weight]
        qk_eps = 0.0
        if qk_norm:
            qn, kn = am["q_norm"], am["k_norm"]
            if type(qn) not in _NORMS or type(kn) not in _NORMS or qn.eps != kn.eps \
                    or qn.weight.shape != (d,) or kn.weight.shape != (d,):
                return None
            norms += [qn.weight, kn.weight]
            qk_eps = qn.eps
        dtype = n1.weight.dtype
        if dtype not in (torch.float32, torch.bfloat16) or dtype == torch.bfloat16 and not _build._bf16 \
                or any(t.dtype != dtype or not t.is_cpu or not t.is_contiguous() for t in norms):
            return None
        for field, group in (("qkv", [q, k, v]), ("o", [o]), ("gu", [g, u]), ("down", [dn])):
            if not _fill(getattr(spec, field), group, self, dtype):
                return None
        spec.ln1, spec.ln2 = norms[0].data_ptr(), norms[1].data_ptr()
        if qk_norm:
            spec.qn, spec.kn = norms[2].data_ptr(), norms[3].data_ptr()
        for m in (q, k, v, o, g, u, dn):
            self.tensors += [t for t in m._parameters.values() if t is not None]
            self.tensors += [t for t in m._buffers.values() if t is not None]
            oi = m.__dict__.get("out_index")
            if oi is not None:
                self.tensors.append(oi)
        self.tensors += norms
        return (h, nh, nkv, d, inter, float(n1.eps), float(qk_eps), float(att.scale), dtype)

    def current(self) -> bool:
        # What every link holds now as one tuple, compared with the recorded one by C loops
        # (~0.1 ms on a 30-layer model's ~2,000 links; a generator expression was ~1.6 ms). An
        # item is the recorded object, or compares equal to it: an equal number, or a tensor
        # of one element and the same value (none on this path: every weight, bias and norm here
        # has more elements); a tensor of more elements refuses to compare (RuntimeError).
        if self.checks is None:
            self.checks = (tuple(d for d, _, _ in self.links), tuple(k for _, k, _ in self.links),
                           tuple(o for _, _, o in self.links), tuple(t for t, _ in self.ptrs),
                           tuple(p for _, p in self.ptrs), tuple(t for t, _ in self.watched),
                           tuple(v for _, v in self.watched))
        ds, ks, objs, ts, ps, ws, vs = self.checks
        try:
            return tuple(map(dict.get, ds, ks)) == objs and tuple(map(torch.Tensor.data_ptr, ts)) == ps \
                and (not ws or tuple(map(_version, ws)) == vs)
        except RuntimeError:
            return False

    def idle(self) -> bool:
        """No module training, no module hooks (their dicts, gathered once: registering a hook
        fills the module's own dict)."""
        if self.hooks is None:
            self.hooks = tuple(d for m in self.modules for d in (m._forward_hooks, m._forward_pre_hooks))
        return not any(map(_TRAINING, self.modules)) and not any(self.hooks)

    def bind(self, keys: list, values: list, batch: int) -> bool:
        """Point the layers at the cache's storage (only when it changed: grown, reordered)."""
        bound = self.bound
        if bound is not None and all(a is b for a, b in zip(bound[0], keys)) \
                and all(a is b for a, b in zip(bound[1], values)) and len(bound[0]) == len(keys):
            return True
        self.bound = None
        h, nh, nkv, d = self.sizes[:4]
        dtype = self.sizes[-1]
        if len(keys) != len(self.specs) or len(values) != len(keys):
            return False
        for spec, kb, vb in zip(self.specs, keys, values):
            if kb.dtype != dtype or vb.dtype != dtype or not kb.is_cpu \
                    or not kb.is_contiguous() or not vb.is_contiguous() or kb.dim() != 4 \
                    or kb.shape != vb.shape or kb.shape[0] != batch or kb.shape[1] != nkv or kb.shape[3] != d:
                return False
            spec.kc, spec.vc, spec.cap = kb.data_ptr(), vb.data_ptr(), kb.shape[2]
        self.bound = (list(keys), list(values))
        return True


def _step(plan: _Plan, specs, n_layers: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
          start: int, keep: torch.Tensor | None) -> torch.Tensor | None:
    """One C call: x (B, 1, H) float32 or bfloat16 -> the last layer's output, or None."""
    lib = _build._lib if _build._lib is not None else _build.library()
    if not lib:
        return None
    h, nh, nkv, d, inter, eps, qk_eps, scale, dtype = plan.sizes
    b = x.shape[0]
    y = torch.empty(b, 1, h, dtype=dtype)
    lib = _typed(lib)
    run = lib.decoder_step_f32 if dtype == torch.float32 else lib.decoder_step_bf16
    err = run(
        ctypes.addressof(specs), n_layers, x.data_ptr(), b, h, nh, nkv, d, inter, eps, qk_eps, scale,
        cos.data_ptr(), sin.data_ptr(), start, None if keep is None else keep.data_ptr(), y.data_ptr(),
        torch.get_num_threads())
    return None if err else y


def _probe(layer: nn.Module, plan: _Plan) -> bool:
    """Whether layer 0 through the C call equals its own modules: two sequences (the second with
    a padded first slot) over three cached tokens, outputs and written cache compared."""
    h, nh, nkv, d = plan.sizes[:4]
    dtype = plan.sizes[-1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, h, generator=gen).to(dtype)
    past_k = torch.randn(2, nkv, 3, d, generator=gen).to(dtype)
    past_v = torch.randn(2, nkv, 3, d, generator=gen).to(dtype)
    ang = torch.rand(2, 1, 1, d // 2, generator=gen) * 6
    cos = torch.cat((ang.cos(), ang.cos()), -1).to(dtype)
    sin = torch.cat((-ang.sin(), ang.sin()), -1).to(dtype)
    mask = torch.tensor([[True] * 4, [False] + [True] * 3]).view(2, 1, 1, 4)
    kc, vc = torch.zeros(2, nkv, 8, d, dtype=dtype), torch.zeros(2, nkv, 8, d, dtype=dtype)
    kc[:, :, :3], vc[:, :, :3] = past_k, past_v
    one = (_DecLayer * 1)()
    ctypes.memmove(ctypes.addressof(one), ctypes.addressof(plan.specs), ctypes.sizeof(_DecLayer))
    one[0].kc, one[0].vc, one[0].cap = kc.data_ptr(), vc.data_ptr(), 8
    with torch.no_grad():
        y = _step(plan, one, 1, x, cos.reshape(2, d).contiguous(), sin.reshape(2, d).contiguous(), 3,
                  mask.reshape(2, 4).contiguous())
        if y is None:
            return False
        cache = _ProbeCache(past_k, past_v)
        ref = layer(x, cos, sin, mask, cache)
    tol = _PROBE_TOL[dtype]
    scale = 1.0 + float(ref.abs().max())
    kv_scale = 1.0 + float(cache.k.abs().max()) + float(cache.v.abs().max())
    return bool((y.float() - ref.float()).abs().max() <= tol * scale) \
        and bool((kc[:, :, :4].float() - cache.k.float()).abs().max() <= tol * kv_scale) \
        and bool((vc[:, :, :4].float() - cache.v.float()).abs().max() <= tol * kv_scale)


class _ProbeCache:
    """The smallest cache a layer's attention can update (the probe's: layer 0 only)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = torch.cat((self.k, k), 2), torch.cat((self.v, v), 2)
        return self.k, self.v


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FusedDecoderLayers(DecoderLayers):
    """:class:`DecoderLayers` that runs a decode step's layers in one C call where it applies
    (see the module doc), else the layers' own modules."""

    def joint_step(self, x, cos, sin, masks, cache):
        return run_step(self, x, cos, sin, masks, cache)


def _rows(t: torch.Tensor, b: int, d: int, dtype: torch.dtype) -> torch.Tensor | None:
    """A (B or 1, 1, 1, D) cos/sin table as (B, D) rows."""
    if t.dtype != dtype or t.dim() != 4 or t.shape[1:] != (1, 1, d) or t.shape[0] not in (1, b):
        return None
    t = t.reshape(-1, d)
    return (t.expand(b, d) if t.shape[0] != b else t).contiguous()


def run_step(layers: DecoderLayers, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, masks,
             cache) -> torch.Tensor | None:
    """All ``layers`` for one new token per sequence in one C call, or None where that does not
    apply (see the module doc); the cache then holds the new keys and values."""
    if torch.compiler.is_compiling():   # (first: nothing below is traced)
        return None
    if x.dtype not in (torch.float32, torch.bfloat16) or x.dim() != 3 or x.shape[1] != 1 or not 0 < x.shape[0] <= ROWS_MAX \
            or not x.is_cpu or cache is None or not hasattr(cache, "storage_for") or cpu_autocast() \
            or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return None
    mask = masks[0] if len(masks) else None
    if len(masks) != len(layers):
        return None
    for m in masks:   # one mask for every layer (windows that cut nothing give equal ones)
        if m is not mask and (m is None or mask is None or not torch.equal(m, mask)):
            return None
    plan = _PLANS.get(layers)
    if plan is None or not plan.current():
        if layers.training or any(m.training for m in layers.modules()) or not _build.available() \
                or _library() is None:
            return None
        plan = _PLANS[layers] = _Plan(layers)
    if plan.specs is None or not plan.idle() \
            or torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in plan.tensors)):
        return None
    b, _, h = x.shape
    d, dtype = plan.sizes[3], plan.sizes[-1]
    if h != plan.sizes[0] or x.dtype != dtype or len(cache) != len(layers):
        return None
    cr, sr = _rows(cos, b, d, dtype), _rows(sin, b, d, dtype)
    if cr is None or sr is None:
        return None
    got = cache.storage_for(1)
    if got is None:
        return None
    keys, values, start = got
    keep = None
    if mask is not None:
        # (a static cache's mask covers every slot; those past the new token's are masked as
        # later positions, so attention reads slots 0 .. start only)
        if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1:3] != (1, 1) \
                or mask.shape[3] < start + 1 or mask.shape[0] not in (1, b):
            return None
        keep = mask.reshape(-1, mask.shape[3])
        if keep.shape[1] > start + 1:
            if bool(keep[:, start + 1:].any()):
                return None
            keep = keep[:, :start + 1]
        keep = (keep.expand(b, start + 1) if keep.shape[0] != b else keep).contiguous()
    if not x.is_contiguous():
        x = x.contiguous()
    if not plan.lock.acquire(blocking=False):
        return None
    try:
        if not plan.bind(keys, values, b):
            return None
        y = _step(plan, plan.specs, len(layers), x, cr, sr, start, keep)
    finally:
        plan.lock.release()
    if y is not None:
        cache.advance(1)
    return y
