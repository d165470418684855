"""A whole post-LayerNorm encoder (BERT's, DistilBERT's...) in one C call, swapped in for
:class:`~pretrained.layers.LayerStack`.

At up to 16 rows the ~15 torch ops around each layer's linears cost more than their math, so
:class:`FusedLayerStack` hands all layers to ``encoder_f32`` / ``encoder_bf16``
(:func:`.rows.encoder_stack`) where it can, and otherwise runs :class:`LayerStack`'s own loop.

Recognised by structure, then proven by numbers: each layer's modules that hold parameters must
be, in order, four (H, H) linears (q, k, v, output), a LayerNorm, the (I, H) and (H, I) linears
and a LayerNorm, with exact GELU as its one activation and one head count; then the first layer
runs once through the C call and through its modules on a probe input, and the stack is used
only if they agree (a pre-LayerNorm layer, another order of operations or a wrong head count
would not). The plan is kept per stack and checked on every call: every module and parameter on
the path to each weight is the same object, every weight at the same address, every plain
attribute (a LayerNorm's ``eps``, the activation, the head count) the same object; no hooks, no
module in training mode. Anything else runs the modules.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.encoder import LayerStack
from ..quantization.int8 import Linear8bit
from .bnb_linear import fp16_threshold
from .linear import CpuLinear
from .quantized import CpuLinear8bit
from . import rows
from .rows import EncoderWeights, encoder_stack, few_rows

_HEADS = ("num_heads", "n_heads", "num_attention_heads")
_PROBE_TOL = {torch.float32: 1e-3, torch.bfloat16: 5e-2}   # of the output's scale


def _layer_parts(layer: nn.Module):
    """(linears, norms, heads) of a post-LN layer, or None when its structure is another."""
    leaves = [m for m in layer.modules() if m._parameters and not m._modules]
    kinds = [nn.Linear] * 4 + [nn.LayerNorm, nn.Linear, nn.Linear, nn.LayerNorm]
    # a LoRA-wrapped or 4-bit linear brings more leaves or other types: the modules run. Float
    # linears or int8 ones (Linear8bit: all six, checked by the plan)
    if len(leaves) != 8 or any(type(m) not in (k, CpuLinear, Linear8bit, CpuLinear8bit) if k is nn.Linear
                               else type(m) is not k for m, k in zip(leaves, kinds)):
        return None
    acts, heads = set(), set()
    for m in layer.modules():
        for k, v in m.__dict__.items():
            if k == "forward" and "_checkpoint_inner" in m.__dict__:
                continue   # gradient checkpointing's wrapper: out of training it runs the forward
            if k in _HEADS and isinstance(v, int):
                heads.add(v)
            elif callable(v) and not isinstance(v, type) and not k.startswith("_"):
                acts.add(v)   # the activation functions the layer's modules hold
    if acts != {F.gelu} or len(heads) != 1:
        return None
    linears, norms = leaves[:4] + leaves[5:7], (leaves[4], leaves[7])
    return linears, norms, heads.pop()


class _StackPlan:
    """What one C call over a list of post-LayerNorm layers needs, gathered once (walking ~200
    module attributes per forward costs more than the layers' own non-linear math), and what
    shows it is still true (see the module doc)."""

    __slots__ = ("links", "ptrs", "modules", "tensors", "weights")

    def __init__(self, layers: nn.ModuleList) -> None:
        self.links = [(layers._modules, k, m) for k, m in layers._modules.items()]
        self.modules = [m for layer in layers for m in layer.modules()]
        for m in self.modules:   # recorded first: a "no" must also notice changes
            self.links += [(m._modules, k, v) for k, v in m._modules.items()]
            self.links += [(m._parameters, k, v) for k, v in m._parameters.items()]
            self.links += [(m._buffers, k, v) for k, v in m._buffers.items()]   # Linear8bit's SCB
            self.links += [(m.__dict__, k, v) for k, v in m.__dict__.items()
                           if not k.startswith("_") and k != "training"]
        self.tensors, self.ptrs, self.weights = [], [], None
        ws, bs, ns, eps, heads = [], [], [], [], set()
        for layer in layers:
            parts = _layer_parts(layer)
            if parts is None:
                return
            linears, norms, num_heads = parts
            if any(len(n.normalized_shape) != 1 for n in norms):
                return
            ws += [m.weight for m in linears]
            bs += [m.bias for m in linears]
            ns += [norms[0].weight, norms[0].bias, norms[1].weight, norms[1].bias]
            eps += [norms[0].eps, norms[1].eps]
            heads.add(num_heads)
        int8 = _int8_mode(layers)
        if int8 is False:
            return
        scales = [] if int8 is None else [m.SCB for layer in layers for m in _layer_parts(layer)[0]]
        tensors = [t for t in (*ws, *bs, *ns) if t is not None]
        h, inter = ws[0].shape[1] if ws else 0, ws[4].shape[0] if ws else 0
        shapes = [(h, h)] * 4 + [(inter, h), (h, inter)]
        dtype = torch.float32 if int8 is not None else ws[0].dtype if ws else None
        if not ws or len(heads) != 1 or h % min(heads) \
                or dtype not in (torch.float32, torch.bfloat16) \
                or any(t.dtype != (torch.int8 if int8 is not None else dtype) or not t.is_cpu
                       or not t.is_contiguous() for t in ws) \
                or any(t.dtype != dtype or not t.is_cpu or not t.is_contiguous()
                       for t in (*bs, *ns, *scales) if t is not None) \
                or any(tuple(s.shape) != (shapes[i % 6][0],) for i, s in enumerate(scales)) \
                or any(tuple(w.shape) != shapes[i % 6] for i, w in enumerate(ws)) \
                or any(b is not None and tuple(b.shape) != (shapes[i % 6][0],)
                       for i, b in enumerate(bs)) \
                or any(n is not None and tuple(n.shape) != (h,) for n in ns):
            return
        head_count = heads.pop()
        act8, th = int8 if int8 is not None else (False, 0.0)
        extra = {} if int8 is None else {"act8": act8, "threshold": th}
        if not _probe(layers[0], EncoderWeights(ws[:6], bs[:6], ns[:4], eps[:2], head_count,
                                                scales[:6] if scales else None, **extra)):
            return
        self.tensors = tensors + scales
        self.ptrs = [(t, t.data_ptr()) for t in self.tensors]
        self.weights = EncoderWeights(ws, bs, ns, eps, head_count, scales or None, **extra)

    def current(self) -> bool:
        return all(d.get(k) is o for d, k, o in self.links) \
            and all(t.data_ptr() == p for t, p in self.ptrs)


def _int8_mode(layers: nn.ModuleList):
    """None where every linear of ``layers`` is a float one; (act8, threshold) where all are
    :class:`Linear8bit` computing the same way (LLM.int8() with one threshold, or all weight-only,
    as :meth:`Linear8bit.forward` decides); False for a mix (the modules run)."""
    modes = set()
    for layer in layers:
        for m in _layer_parts(layer)[0]:
            if not isinstance(m, Linear8bit):
                modes.add(None)
            elif m.llm_int8 and m.threshold >= 0:
                th = fp16_threshold(m.threshold)
                if m.threshold > 0 and th == 0:
                    return False   # float16 makes it 0: every element an outlier (the modules' way)
                modes.add((True, th))
            else:
                modes.add((False, 0.0))
    return modes.pop() if len(modes) == 1 else False


def _probe(layer: nn.Module, weights: EncoderWeights) -> bool:
    """Whether one layer through the C call equals the layer's own modules on a probe input."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, weights.hidden, generator=g).to(weights.dtype)
    with torch.no_grad():
        y = rows.encoder_stack(x, weights, None)
        if y is None:
            return False
        ref = layer(x, None)
    scale = 1.0 + float(ref.abs().max())
    return bool((y.float() - ref.float()).abs().max() <= _PROBE_TOL[weights.dtype] * scale)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FusedLayerStack(LayerStack):
    """:class:`LayerStack` that runs all its layers in one C call where that applies: inference
    (no autograd recording, no module in training mode, no hooks) on float32 or bfloat16 CPU
    input of up to 16 rows, without hidden states, not under ``torch.compile``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, output_hidden_states: bool = False,
                first_only: bool = False):
        if not output_hidden_states:
            y = run_stack(self.layer, x, mask, first_only)
            if y is not None:
                return y, None
        return super().forward(x, mask, output_hidden_states, first_only)


def run_stack(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None,
              first_only: bool = False) -> torch.Tensor | None:
    """All ``layers`` in one C call, or None where that does not apply (see the module doc)."""
    if x.dtype not in (torch.float32, torch.bfloat16) or not few_rows(x) \
            or torch.compiler.is_compiling() or nn.modules.module._global_forward_hooks \
            or nn.modules.module._global_forward_pre_hooks:
        return None
    plan = _PLANS.get(layers)
    if plan is None or not plan.current():
        if layers.training or any(m.training for m in layers.modules()):
            return None   # the probe must not draw dropout's random numbers
        plan = _PLANS[layers] = _StackPlan(layers)
    if plan.weights is None or any(m.training or m._forward_hooks or m._forward_pre_hooks
                                   for m in plan.modules) \
            or torch.is_grad_enabled() and any(t.requires_grad for t in plan.tensors):
        return None
    return encoder_stack(x, plan.weights, mask, first_only)
