"""Speed on a device, kept out of the model files: one module-swap seam.

Model files are plain PyTorch math on ``nn.Linear``, norms and attention. After loading,
:func:`accelerate` walks the model and swaps modules, by type and structure, for ones that
compute the same numbers faster on this machine:

- ``nn.Linear`` -> :class:`~.linear.CpuLinear` (C rows kernels for up to 16 rows, q/k/v and
  gate/up siblings found by watching their calls, ``torch.mv`` for one row, opt-in packed weights);
- GPT-2's ``Conv1D`` -> :class:`~.linear.CpuConv1D` (opt-in packed weights);
- :class:`~pretrained.layers.LayerStack` -> :class:`~.encoder.FusedLayerStack` (a whole
  post-LayerNorm encoder in one C call, where its structure and a probe say it is one);
- :class:`~pretrained.layers.decoder_stack.DecoderLayers` -> :class:`~.decoder.FusedDecoderLayers`
  (a Llama-family decode step, every layer, in one C call, where its structure and a probe say
  it is one);
- :class:`~pretrained.layers.seq2seq_stack.Seq2SeqDecoderLayers` ->
  :class:`~.seq2seq_decoder.FusedSeq2SeqDecoderLayers` (an encoder-decoder's decode step:
  Whisper, BART, Marian, mBART, Pegasus; float32 or bfloat16), and
  :class:`~pretrained.layers.seq2seq_stack.T5Blocks` -> :class:`~.t5_decoder.FusedT5Blocks` (T5's, float32 or bfloat16);
- :class:`~pretrained.layers.gguf.GGUFLinear` -> :class:`~.gguf_linear.CpuGGUFLinear` (products
  on a GGUF file's own 4/5/6/8-bit blocks, C; packed q/k/v and gate/up siblings in one call);
- :class:`~pretrained.layers.RMSNorm` -> :class:`~.norms.CpuRMSNorm` (one C call per norm);
- ``nn.Conv2d`` -> :class:`~.conv.CpuConv2d` (a picture's convolution started channels-last, the
  layout oneDNN computes in, which the convolutions after it then keep);
- the quantized linears (:mod:`pretrained.quantization`) -> :mod:`.quantized` (C kernels of
  :mod:`.bnb_linear` for decode-sized inputs, else int8 through ``torch._weight_int8pack_mm`` and
  NF4/FP4 dequantized through a byte table);
- GPTQ / AWQ linears -> :mod:`.group_quant` (4-bit through ``torch._weight_int4pack_mm_for_cpu``,
  8-bit through ``torch._weight_int8pack_mm`` per group, converted on the first call).

The swap changes a module's class only: parameters, buffers, state_dict keys, ``isinstance``
checks against ``nn.Linear`` and pickling are unchanged, so LoRA, prefix tuning, ``.to()``,
autograd and ``torch.compile`` compose with it in any order (each fast path steps aside where it
does not apply: training, autograd recording, other devices, LoRA-wrapped layers). :func:`plain`
swaps back. ``from_pretrained`` calls :func:`accelerate`; ``PRETRAINED_NO_KERNELS=1`` keeps the C
kernels off (the swapped modules then run PyTorch's kernels).

Example::

    >>> from torch import nn
    >>> from pretrained.backends import accelerate, plain
    >>> m = nn.Sequential(nn.Linear(4, 4))
    >>> accelerate(m), type(m[0]).__name__
    (1, 'CpuLinear')
    >>> plain(m), type(m[0]).__name__
    (1, 'Linear')
"""

from __future__ import annotations

from torch import nn

from ..layers.conv1d import Conv1D
from ..layers.decoder_stack import DecoderLayers
from ..layers.seq2seq_stack import Seq2SeqDecoderLayers, T5Blocks
from ..layers.encoder import LayerStack
from ..layers.norms import RMSNorm
from ..layers.gguf import GGUFLinear
from .conv import CpuConv2d
from .decoder import FusedDecoderLayers
from .seq2seq_decoder import FusedSeq2SeqDecoderLayers
from .t5_decoder import FusedT5Blocks
from .encoder import FusedLayerStack
from .gguf_linear import RUNTIME_KEYS as GGUF_RUNTIME_KEYS, CpuGGUFLinear
from .linear import RUNTIME_KEYS, CpuConv1D, CpuLinear
from .norms import CpuRMSNorm
from .packed import PackedWeights
from .group_quant import RUNTIME_KEYS as GROUP_RUNTIME_KEYS, CpuGroupQuantLinear
from .quantized import RUNTIME_KEYS as QUANT_RUNTIME_KEYS, CpuLinear4bit, CpuLinear8bit
from ..quantization import GroupQuantLinear, Linear4bit, Linear8bit

#: plain class -> its CPU class; exact types only (a subclass may compute something else)
SWAPS: dict[type, type] = {nn.Linear: CpuLinear, Conv1D: CpuConv1D, LayerStack: FusedLayerStack,
                           RMSNorm: CpuRMSNorm, Linear8bit: CpuLinear8bit, Linear4bit: CpuLinear4bit}
SWAPS[nn.Conv2d] = CpuConv2d   # channels-last convolutions (backends/conv.py)
SWAPS[GGUFLinear] = CpuGGUFLinear   # a GGUF file's blocks (pretrained.layers.gguf)
SWAPS[GroupQuantLinear] = CpuGroupQuantLinear   # GPTQ / AWQ codes (backends/group_quant.py)
SWAPS[DecoderLayers] = FusedDecoderLayers   # a Llama-family decode step in one C call (decoder.py)
SWAPS[Seq2SeqDecoderLayers] = FusedSeq2SeqDecoderLayers   # an encoder-decoder's decode step (seq2seq_decoder.py)
SWAPS[T5Blocks] = FusedT5Blocks   # T5's decode step (t5_decoder.py)
_PLAIN = {fast: slow for slow, fast in SWAPS.items()}


def accelerate(model: nn.Module) -> int:
    """Swap the modules of ``model`` that have a CPU fast path (see the module doc); returns how
    many were swapped. Safe to call again; modules added later (a new head) are swapped then."""
    n = 0
    for parent in model.modules():
        for child in parent._modules.values():
            if child is not None and type(child) in SWAPS:
                child.__class__ = SWAPS[type(child)]
                n += 1
            if isinstance(child, (CpuLinear, CpuGGUFLinear)):   # siblings: children of one parent
                child.__dict__["_parent"] = id(parent)
    if type(model) in SWAPS:
        model.__class__ = SWAPS[type(model)]
        n += 1
    return n


def plain(model: nn.Module) -> int:
    """Swap every module :func:`accelerate` swapped back to its plain class; returns how many."""
    n = 0
    for module in model.modules():
        if type(module) in _PLAIN:
            getattr(module, "_before_plain", lambda: None)()   # a converted layout goes back first
            module.__class__ = _PLAIN[type(module)]
            for key in (*RUNTIME_KEYS, *QUANT_RUNTIME_KEYS, *GROUP_RUNTIME_KEYS, *GGUF_RUNTIME_KEYS,
                        "_parent"):
                module.__dict__.pop(key, None)
            n += 1
    return n


def set_weight_packing(model: nn.Module, enabled: bool = True) -> int:
    """Turn oneDNN packed-weight inference (more than 16 rows; a second copy of the weights) on or
    off for every swapped linear of ``model`` (swapping them first); turning it off frees the
    packed copies. Returns how many modules it set.

    Example::

        >>> from torch import nn
        >>> set_weight_packing(nn.Sequential(nn.Linear(4, 2)))
        1
    """
    accelerate(model)
    n = 0
    for module in model.modules():
        if isinstance(module, (CpuLinear, CpuConv1D)):
            module.packing = bool(enabled)
            if not enabled:
                for key in [k for k, v in module.__dict__.items() if isinstance(v, PackedWeights)]:
                    del module.__dict__[key]
            n += 1
    return n


__all__ = ["accelerate", "plain", "set_weight_packing", "SWAPS"]
