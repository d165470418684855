"""Making GPTQ and AWQ checkpoints: calibration text -> token windows -> one decoder block at a
time -> the standard packed layouts (what :mod:`.load_group` reads, and the reference's tools).

:func:`quantize_model` walks the model's decoder blocks (the ``nn.ModuleList`` of
``num_hidden_layers`` blocks). The inputs of the first block are caught once for every
calibration window; each block then runs on its cached inputs, and its outputs are the next
block's inputs:

- **GPTQ** (:mod:`.gptq`): with ``true_sequential`` the block's linears go in groups of those that
  read the same input, in call order (q/k/v, then o, then gate/up, then down): each group's
  Hessians are gathered by a pass over the calibration inputs with the earlier groups already
  rounded, so a layer compensates the error of the layers before it; the next block sees the
  rounded block's outputs.
- **AWQ** (:mod:`.awq`, Llama-style blocks: ``input_layernorm``, ``self_attn.{q,k,v,o}_proj``,
  ``post_attention_layernorm``, ``mlp.{gate,up,down}_proj``): one pass of the float block gives the
  inputs of the four groups (norm -> q/k/v, v -> o when their sizes match, norm -> gate/up,
  up -> down); each group's scales are searched and folded, then the clipping search, then
  round-to-nearest. The next block sees the float block's outputs (as AutoAWQ).
- **RTN**: plain round-to-nearest in the same groups (the baseline both are measured against).

Example::

    >>> from pretrained import AutoModelForCausalLM                               # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained("folder")                     # doctest: +SKIP
    >>> ids = calibration_windows(tokenizer, default_calibration_text(), 32, 256)  # doctest: +SKIP
    >>> quantize_model(model, ids, method="gptq", bits=4, group_size=128)          # doctest: +SKIP
    >>> model.save_pretrained("folder-gptq")                                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError, UnsupportedOptionError
from .awq import apply_clip, fold_scales, search_clip, search_scales
from .gptq import HessianAccumulator, gptq_quantize
from .gptq_config import AwqConfig, GPTQConfig
from .grid import rtn_codes
from .group_linear import GroupQuantLinear

logger = logging.getLogger("pretrained")
LICENSES = Path("/usr/share/common-licenses")
METHODS = ("gptq", "awq", "rtn")
_LLAMA_PARTS = ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def default_calibration_text(folder: Path = LICENSES) -> str:
    """The licence texts Debian ships (real English prose, on every Debian system), joined."""
    files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        raise InvalidInputError(f"no calibration text: {folder} has no files; pass a text file with --calibration")
    return "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def calibration_windows(tokenizer: Any, text: str, n_samples: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """``n_samples`` windows of ``seq_len`` tokens (long (n, seq_len)) at random offsets of the
    tokenized ``text`` (GPTQ's sampling of its calibration set)."""
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long).view(-1)
    if ids.numel() <= seq_len:
        raise InvalidInputError(f"the calibration text has {ids.numel()} tokens; it needs more than seq_len={seq_len}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seq_len, (n_samples,), generator=gen)
    return torch.stack([ids[s:s + seq_len] for s in starts.tolist()])


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (``num_hidden_layers`` of them)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n and n:
            return m
    raise UnsupportedOptionError(f"{type(model).__name__}: no list of {n} decoder blocks found; GPTQ/AWQ "
                                 "quantization walks a decoder's blocks (causal LMs such as Llama, Qwen2, Mistral)")


class _Stop(Exception):
    pass


def _block_inputs(model: nn.Module, blocks: nn.ModuleList, ids: torch.Tensor) -> list[tuple[tuple, dict]]:
    """The (args, kwargs) the first block is called with, for each calibration window."""
    caught: list[tuple[tuple, dict]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        caught.append((args, kwargs))
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for row in ids:
            try:
                model(input_ids=row.unsqueeze(0), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return caught


def _run(block: nn.Module, inputs: list[tuple[tuple, dict]]) -> list[tuple[tuple, dict]]:
    """The block on every cached input; its outputs as the next block's inputs."""
    out = []
    for args, kwargs in inputs:
        y = block(*args, **kwargs)
        y = y[0] if isinstance(y, tuple) else y
        out.append(((y, *args[1:]), kwargs))
    return out


def _linear_groups(block: nn.Module, inputs: list[tuple[tuple, dict]]) -> list[list[str]]:
    """The block's linears in call order, grouped by the input they read."""
    names = {id(m): n for n, m in block.named_modules() if _is_linear(m)}
    order: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, a, o: order.append((names[id(m)], a[0])))
             for m in block.modules() if id(m) in names]
    try:
        args, kwargs = inputs[0]
        block(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    groups: list[list[str]] = []
    last = None
    for name, x in order:
        if any(name in g for g in groups):
            continue
        if last is not None and x is last:
            groups[-1].append(name)
        else:
            groups.append([name])
        last = x
    return groups


def _gather_inputs(block: nn.Module, names: list[str], inputs: list[tuple[tuple, dict]],
                   fn: Any) -> None:
    """Run the block on every input, calling ``fn(name, x)`` with each named linear's input."""
    hooks = [block.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: fn(n, a[0].detach()))
             for n in names]
    try:
        for args, kwargs in inputs:
            block(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()


def _set_weight(lin: nn.Linear, q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor) -> None:
    g = g_idx.long()
    w = (q.float() - zeros.index_select(0, g).t().float()) * scales.index_select(0, g).t().float()
    with torch.no_grad():
        lin.weight.copy_(w.to(lin.weight.dtype))


def _gptq_block(block: nn.Module, inputs: list, cfg: dict, codes: dict, prefix: str) -> None:
    groups = _linear_groups(block, inputs) if cfg["true_sequential"] else \
        [[n for g in _linear_groups(block, inputs) for n in g]]
    for group in groups:
        # the layers of a group read one input: one Hessian for all of them (true_sequential=False
        # puts every layer in one group: one Hessian per layer then)
        shared = cfg["true_sequential"]
        acc = {n: HessianAccumulator(block.get_submodule(n).in_features) for n in (group[:1] if shared else group)}
        _gather_inputs(block, list(acc), inputs, lambda n, x: acc[n].add(x))
        for n in group:
            lin = block.get_submodule(n)
            h = acc[group[0] if shared else n].hessian()
            c = gptq_quantize(lin.weight, h, bits=cfg["bits"], group_size=cfg["group_size"],
                              sym=cfg["sym"], desc_act=cfg["desc_act"], damp_percent=cfg["damp_percent"],
                              min_zero=cfg["min_zero"])
            _set_weight(lin, *c)   # the next groups and blocks see the rounded layer
            codes[prefix + n] = c


def _awq_block(block: nn.Module, inputs: list, cfg: dict, codes: dict, prefix: str, n_tokens: int = 2048) -> None:
    missing = [p for p in _LLAMA_PARTS if not _has(block, p)]
    if missing:
        raise UnsupportedOptionError(
            f"AWQ folds its scales into the op before each linear, which this library knows for Llama-style "
            f"blocks; {type(block).__name__} has no {missing}; quantize this model with --method gptq")
    feats: dict[str, list[torch.Tensor]] = {}
    keys = ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")
    _gather_inputs(block, list(keys), inputs, lambda n, x: feats.setdefault(n, []).append(x.reshape(-1, x.shape[-1])))
    x = {n: _sample(torch.cat(v), n_tokens) for n, v in feats.items()}
    get = block.get_submodule
    q, k, v, o = (get(f"self_attn.{p}_proj") for p in "qkvo")
    steps = [(get("input_layernorm"), [q, k, v], "self_attn.q_proj"),
             (v, [o], "self_attn.o_proj") if v.out_features == o.in_features else None,
             (get("post_attention_layernorm"), [get("mlp.gate_proj"), get("mlp.up_proj")], "mlp.gate_proj"),
             (get("mlp.up_proj"), [get("mlp.down_proj")], "mlp.down_proj")]
    bits, gs = cfg["bits"], cfg["group_size"]
    with torch.no_grad():
        for step in steps:
            if step is None:
                continue
            prev, layers, key = step
            s = search_scales(x[key], [lin.weight for lin in layers], bits=bits, group_size=gs)
            fold_scales(prev, layers, s)
            x[key] = x[key] / s     # what the layers now read
        inputs_of = {"self_attn.v_proj": "self_attn.q_proj", "self_attn.o_proj": "self_attn.o_proj",
                     "mlp.gate_proj": "mlp.gate_proj", "mlp.up_proj": "mlp.gate_proj", "mlp.down_proj": "mlp.down_proj"}
        names = [n for n, m in block.named_modules() if _is_linear(m)]
        for n in names:
            lin = get(n)
            if cfg["clip"] and n in inputs_of:   # q and k are not clipped (their products feed a softmax)
                apply_clip(lin, search_clip(x[inputs_of[n]], lin.weight, bits=bits, group_size=gs), gs)
            codes[prefix + n] = rtn_codes(lin.weight, bits, gs)


def _is_linear(m: nn.Module) -> bool:
    """An ``nn.Linear`` with a float weight (the backend's CpuLinear included)."""
    return isinstance(m, nn.Linear) and m.weight.is_floating_point()


def _has(block: nn.Module, name: str) -> bool:
    try:
        block.get_submodule(name)
        return True
    except AttributeError:
        return False


def _sample(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if x.shape[0] <= n else x[torch.linspace(0, x.shape[0] - 1, n).long()]


@torch.no_grad()
def quantize_model(model: nn.Module, ids: torch.Tensor, *, method: str = "gptq", bits: int = 4,
                   group_size: int = 128, sym: bool = False, desc_act: bool = False, damp_percent: float = 0.01,
                   true_sequential: bool = True, clip: bool = True, fmt: str | None = None) -> Any:
    """Quantize every linear inside ``model``'s decoder blocks (the LM head and embeddings stay
    as they are) with ``method`` on calibration windows ``ids`` (n, seq_len), put
    :class:`GroupQuantLinear` layers in their place (``method="rtn"``: float weights rounded in
    place, for comparisons) and set ``config.quantization_config``; returns the config object."""
    if method not in METHODS:
        raise InvalidInputError(f"method={method!r}: use one of {list(METHODS)}")
    if method == "awq":
        config: Any = AwqConfig(bits=bits, group_size=group_size, version=fmt or "gemm")
    else:
        config = GPTQConfig(bits=bits, group_size=group_size, sym=sym, desc_act=desc_act, damp_percent=damp_percent,
                            true_sequential=true_sequential, checkpoint_format=fmt or "gptq")
    cfg = {"bits": bits, "group_size": group_size, "sym": sym, "desc_act": desc_act, "damp_percent": damp_percent,
           "true_sequential": true_sequential, "clip": clip,
           "min_zero": 1 if method == "gptq" and config.format == "gptq" and not sym else 0}
    blocks = decoder_blocks(model)
    prefix = next(n for n, m in model.named_modules() if m is blocks) + "."
    _check_sizes(blocks, method, group_size)
    was_training = model.training
    model.eval()
    inputs = _block_inputs(model, blocks, ids)
    codes: dict[str, tuple] = {}
    for i, block in enumerate(blocks):
        here = f"{prefix}{i}."
        if method == "gptq":
            _gptq_block(block, inputs, cfg, codes, here)
        elif method == "awq":
            outputs = _run(block, inputs)            # from the float block, before any change
            _awq_block(block, inputs, cfg, codes, here)
        else:
            for n, m in block.named_modules():
                if _is_linear(m):
                    codes[here + n] = rtn_codes(m.weight, bits, group_size, sym)
                    _set_weight(m, *codes[here + n])
        inputs = outputs if method == "awq" else _run(block, inputs)
        logger.info("quantized block %d/%d", i + 1, len(blocks))
    if method != "rtn":
        for name, (q, zeros, scales, g_idx) in codes.items():
            lin = model.get_submodule(name)
            new = GroupQuantLinear.from_codes(q, zeros, scales, g_idx, lin.bias, bits=bits, group_size=group_size,
                                              fmt=config.format)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
        model.quantization_method = config.quant_method
        model.config._extra["quantization_config"] = config.to_dict()
        model.config.quantization_config = model.config._extra["quantization_config"]
    model.train(was_training)
    return config


def _check_sizes(blocks: nn.ModuleList, method: str, group_size: int) -> None:
    for n, m in blocks[0].named_modules():
        if not _is_linear(m) and hasattr(m, "in_features") and hasattr(m, "out_features"):
            raise UnsupportedOptionError(
                f"{n} is already quantized ({type(m).__name__}); GPTQ/AWQ start from float weights: load the "
                "model unquantized (a GGUF file with dequantize=True, as `pretrained quantize` does)")
        if not _is_linear(m):
            continue
        if method == "awq" and group_size != -1 and m.in_features % group_size:
            raise InvalidInputError(
                f"AWQ needs each linear's input size divisible by group_size; {n} takes {m.in_features} "
                f"inputs and group_size is {group_size}: choose a group size that divides every layer's "
                "input size (for example 64 or 32 for hidden sizes such as 576), or -1")
        if method == "awq" and m.out_features % 8:
            raise InvalidInputError(f"AWQ packs 8 outputs a word; {n} has {m.out_features} outputs")


__all__ = ["quantize_model", "calibration_windows", "default_calibration_text", "decoder_blocks", "METHODS"]
