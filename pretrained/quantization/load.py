"""Quantized loading, the part ``from_pretrained`` calls: which linear layers become 8-bit or
4-bit, and their weights read one layer at a time.

:func:`plan_quantization` settles what was asked (``load_in_8bit`` / ``load_in_4bit`` /
``quantization_config``) against what the checkpoint's ``config.json`` says, refusing by name
what cannot be honoured. The resulting :class:`QuantizationPlan` then works in two steps around
the ordinary streaming load (:func:`pretrained.io.loading.load_checkpoint_into`):

1. :meth:`QuantizationPlan.attach` picks the target layers and returns a view of the checkpoint
   without their weights (and quantization statistics), so the ordinary load fills everything
   else (biases included) and leaves the targets' weights on the meta device;
2. :meth:`QuantizationPlan.finish` reads each target's weight, quantizes it (a float checkpoint)
   or reads the packed tensors as they are (a checkpoint saved quantized), and puts a
   :class:`~.int8.Linear8bit` / :class:`~.nf4.Linear4bit` in the layer's place. One float weight
   is in memory at a time, never the whole float model.

Which layers: every ``nn.Linear`` and GPT-2 ``Conv1D`` except the reference's default skips (the
modules of tied weights, the module of the last parameter, the output embeddings: an LM head
stays in full precision) or, when given, ``llm_int8_skip_modules`` instead. A name skips a
module when it matches from the start up to a module boundary, as a regex with that boundary,
or as a suffix. A checkpoint saved quantized decides by its own tensors.

GPTQ and AWQ checkpoints (``quant_method`` "gptq" / "awq" in config.json) follow
:class:`~.load_group.GroupQuantPlan`, with the same two steps.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..errors import (CheckpointCorruptError, CheckpointError, InvalidInputError, ShapeMismatchError,
                      UnsupportedOptionError)
from ..layers.conv1d import Conv1D
from ..io.loading import LoadReport, checkpoint_key_map, copy_out_of_checkpoint
from .config import BitsAndBytesConfig, quantization_config_from_dict
from .gptq_config import AwqConfig, GPTQConfig
from .int8 import Linear8bit
from .load_group import GroupQuantPlan
from .nf4 import STATE_PREFIX, Linear4bit

_STATS_4BIT = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
# suffixes that only quantized checkpoints have: bitsandbytes 8-bit / 4-bit, GPTQ / AWQ
_QUANT_SUFFIXES = ((".SCB", "bitsandbytes 8-bit"), (".weight_format", "bitsandbytes 8-bit"),
                   (".weight.absmax", "bitsandbytes 4-bit"), (".weight.quant_map", "bitsandbytes 4-bit"),
                   (".qweight", "GPTQ/AWQ packed"), (".qzeros", "GPTQ/AWQ packed"), (".g_idx", "GPTQ"))


def plan_quantization(config: Any, *, quantization_config: Any = None, load_in_8bit: bool = False,
                      load_in_4bit: bool = False, device: torch.device
                      ) -> "QuantizationPlan | GroupQuantPlan | None":
    """What ``from_pretrained`` was asked, reconciled with ``config.json``'s
    ``quantization_config``; None when the model loads unquantized."""
    if load_in_8bit and load_in_4bit:
        raise InvalidInputError("load_in_8bit=True and load_in_4bit=True: choose one (8-bit keeps about "
                                "half the bytes of 16-bit weights, 4-bit a quarter)")
    if (load_in_8bit or load_in_4bit) and quantization_config is not None:
        raise InvalidInputError("pass either load_in_8bit/load_in_4bit or quantization_config, not both; "
                                "put the setting in the BitsAndBytesConfig")
    asked = quantization_config_from_dict(quantization_config) if quantization_config is not None else (
        BitsAndBytesConfig(load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit)
        if load_in_8bit or load_in_4bit else None)
    saved_dict = getattr(config, "_extra", {}).get("quantization_config")
    saved = quantization_config_from_dict(saved_dict, "config.json's quantization_config") \
        if saved_dict is not None else None
    if saved is not None and asked is not None:
        if type(asked) is not type(saved) or asked.quantization_method() != saved.quantization_method():
            raise InvalidInputError(
                f"this checkpoint was saved quantized as {saved.quantization_method()!r} (config.json), "
                f"but {asked.quantization_method()!r} was asked for; load it without quantization "
                "arguments, or quantize its unquantized original")
        if isinstance(saved, BitsAndBytesConfig):
            saved.bnb_4bit_compute_dtype = asked.bnb_4bit_compute_dtype   # how to compute is the caller's
    chosen = saved or asked
    if chosen is None:
        return None
    chosen.check_device(device)
    if isinstance(chosen, (GPTQConfig, AwqConfig)):
        if saved is None:
            raise UnsupportedOptionError(
                f"quantization_config={type(chosen).__name__} on a checkpoint that is not {chosen.quant_method}-"
                "quantized: GPTQ and AWQ need a calibration pass, which loading does not run; make the "
                f"weights first (`pretrained quantize <model> --method {chosen.quant_method} --out <folder>`) "
                "and load that folder, or quantize on load with BitsAndBytesConfig")
        return GroupQuantPlan(chosen)
    return QuantizationPlan(chosen, prequantized=saved is not None)


def check_unquantized(keys: list[str], name: str) -> None:
    """Refuse a checkpoint that holds quantized tensors when its config does not say how they
    were made (loading them as float weights would give a model of noise)."""
    for key in keys:
        kind = "bitsandbytes 4-bit" if STATE_PREFIX in key else next(
            (kind for suffix, kind in _QUANT_SUFFIXES if key.endswith(suffix)), None)
        if kind is not None:
            raise CheckpointError(
                f"{name!r} holds {kind} quantized tensors ({key!r}) but its config.json has no "
                "quantization_config saying how they were made; add the quantization_config the "
                "quantizing tool wrote (bitsandbytes: quant_method 'bitsandbytes' with load_in_8bit "
                "or load_in_4bit; GPTQ: quant_method 'gptq' with bits, group_size, checkpoint_format; "
                "AWQ: quant_method 'awq' with bits, group_size, version), or load the model's "
                "unquantized checkpoint")


def skip_patterns(model: nn.Module, config: BitsAndBytesConfig) -> list[str]:
    """The module names kept in full precision (see the module doc)."""
    if config.llm_int8_skip_modules is not None:
        return list(config.llm_int8_skip_modules)
    skips: set[str] = set()
    if getattr(getattr(model, "config", None), "tie_word_embeddings", True):
        for a, b in getattr(model, "tied_weights", {}).items():
            skips |= {a, b}
    for a, b in getattr(model, "shared_weights", {}).items():
        skips |= {a, b}
    params = list(model.named_parameters())
    if params:
        skips.add(params[-1][0])
    out_emb = getattr(model, "get_output_embeddings", lambda: None)()
    if out_emb is not None:
        skips |= {n for n, m in model.named_modules() if m is out_emb}
    return sorted(k.removesuffix(".weight") for k in skips)


def is_skipped(name: str, patterns: list[str]) -> bool:
    return any(re.match(rf"(?:{p})(?:(?<=\.)|(?=\.|$))", name) or name.endswith(p) for p in patterns)


class QuantizationPlan:
    """The quantization of one ``from_pretrained`` call (see the module doc)."""

    def __init__(self, config: BitsAndBytesConfig, prequantized: bool) -> None:
        self.config, self.prequantized = config, prequantized
        self.targets: dict[str, str] = {}     # module name -> checkpoint key of its weight
        self._keys: set[str] = set()

    def attach(self, model: nn.Module, ckpt: Any, prefix: str) -> "_HidingCheckpoint":
        """Choose the target layers of ``model`` (on meta) and return the checkpoint without them."""
        linears = [n for n, m in model.named_modules() if n and type(m) in (nn.Linear, Conv1D)]
        names = [n + ".weight" for n in linears]
        key_map = checkpoint_key_map(names, ckpt.keys(), prefix, bool(prefix) and hasattr(model, prefix))
        keys = self._keys = set(ckpt.keys())
        hidden: set[str] = set()
        skips = skip_patterns(model, self.config)
        for name in linears:
            key = key_map.get(name + ".weight")
            if key is None:
                continue   # not in the checkpoint: left to the ordinary missing-weight path
            base = key[: -len("weight")]
            stats = self._stats_keys(base, keys)
            if self.prequantized:
                if not stats:
                    continue   # saved in full precision (an LM head): loads as it is
                self._check_kind(stats, key)
            elif is_skipped(name, skips):
                continue
            self.targets[name] = key
            hidden |= {key, *stats}
        if self.prequantized:
            stray = [k for k in keys - hidden if k.endswith(".SCB") or STATE_PREFIX in k]
            if stray:
                raise CheckpointCorruptError(
                    f"quantized tensors {stray[:3]} belong to no linear layer of {type(model).__name__}; "
                    "the checkpoint is not this model's")
        return _HidingCheckpoint(ckpt, hidden)

    def _stats_keys(self, base: str, keys: set[str]) -> list[str]:
        found = [base + s for s in ("SCB", "weight_format") if base + s in keys]
        found += [k for k in (base + "weight." + s for s in _STATS_4BIT) if k in keys]
        return found + [k for k in keys if k.startswith(base + "weight." + STATE_PREFIX)]

    def _check_kind(self, stats: list[str], key: str) -> None:
        is8 = any(k.endswith(".SCB") for k in stats)
        if is8 != self.config.load_in_8bit:
            raise CheckpointCorruptError(
                f"{key!r} is stored {'8-bit' if is8 else '4-bit'} but config.json's quantization_config "
                f"says {self.config.quantization_method()!r}; the config is not this checkpoint's")

    def finish(self, model: nn.Module, ckpt: Any, report: LoadReport, dtype: torch.dtype,
               device: torch.device) -> None:
        """Put the quantized layers in place, one weight read at a time."""
        for name, key in self.targets.items():
            module = model.get_submodule(name)
            bias = module.bias if module.bias is not None and module.bias.device.type != "meta" else None
            if module.bias is not None and bias is None:   # a bias the checkpoint lacked: zeros
                bias = torch.zeros(module.bias.shape, dtype=dtype, device=device)
            out_in = tuple(module.weight.shape[::-1]) if isinstance(module, Conv1D) else tuple(module.weight.shape)
            q = self._read(ckpt, key, out_in, bias, dtype, isinstance(module, Conv1D)).to(device)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, q)
            report.missing_keys = [k for k in report.missing_keys if k not in (name + ".weight", name + ".bias")]
        if not self.prequantized:
            copy_out_of_checkpoint(model)
        kind = "8" if self.config.load_in_8bit else "4"
        setattr(model, f"is_loaded_in_{kind}bit", True)
        model.quantization_method = "bitsandbytes"
        cfg = model.config
        cfg._extra["quantization_config"] = self.config.to_dict()
        cfg.quantization_config = cfg._extra["quantization_config"]

    def _read(self, ckpt: Any, key: str, out_in: tuple[int, int], bias: torch.Tensor | None,
              dtype: torch.dtype, transposed: bool) -> nn.Module:
        c, base = self.config, key[: -len("weight")]
        where = f"{ckpt.path_of(key)}: {key!r}"
        if self.prequantized and c.load_in_8bit:
            q, scb = ckpt.get(key), ckpt.get(base + "SCB")
            fmt = ckpt.get(base + "weight_format") if base + "weight_format" in self._keys else None
            if fmt is not None and int(fmt.reshape(-1)[0]) != 0:
                raise CheckpointCorruptError(f"{where}: weight_format {int(fmt.reshape(-1)[0])} is a GPU tile "
                                             "layout; only row-major (0) int8 weights load")
            if q.dtype != torch.int8 or tuple(q.shape) != out_in or tuple(scb.shape) != out_in[:1]:
                raise CheckpointCorruptError(f"{where}: expected int8 {list(out_in)} and SCB [{out_in[0]}], "
                                             f"got {q.dtype} {list(q.shape)} and {list(scb.shape)}")
            return Linear8bit.from_quantized(q, scb, bias, c.llm_int8_threshold)
        if self.prequantized:
            tensors = {"": ckpt.get(key)}
            for k in self._stats_keys(base, self._keys):
                tensors[k[len(base) + len("weight."):]] = ckpt.get(k)
            m = Linear4bit.from_state(tensors, bias, compute_dtype=c.bnb_4bit_compute_dtype, where=where)
            if (m.out_features, m.in_features) != out_in:
                raise ShapeMismatchError(f"{where}: quantized shape {[m.out_features, m.in_features]}, but the "
                                         f"model expects {list(out_in)}; the config does not match the weights")
            return m
        w = ckpt.get(key)
        if not w.is_floating_point():
            raise CheckpointCorruptError(f"{where}: holds {w.dtype} values, not float weights to quantize")
        w = w.t() if transposed else w
        if tuple(w.shape) != out_in:
            raise ShapeMismatchError(f"{where}: tensor has shape {list(w.shape)} but the model expects "
                                     f"{list(out_in)}; the config does not match the weights")
        w = w.to(dtype)
        if c.load_in_8bit:
            return Linear8bit.from_float(w, bias, c.llm_int8_threshold)
        return Linear4bit.from_float(w, bias, quant_type=c.bnb_4bit_quant_type,
                                     double_quant=c.bnb_4bit_use_double_quant,
                                     compute_dtype=c.bnb_4bit_compute_dtype, quant_storage=c.bnb_4bit_quant_storage)


class _HidingCheckpoint:
    """A checkpoint without some keys (the quantized layers' tensors, read by the plan itself)."""

    def __init__(self, ckpt: Any, hidden: set[str]) -> None:
        self._ckpt, self._hidden = ckpt, hidden

    def keys(self) -> list[str]:
        return [k for k in self._ckpt.keys() if k not in self._hidden]

    def __getattr__(self, name: str) -> Any:   # shape, get, path_of, first_float_dtype, close
        return getattr(self._ckpt, name)


__all__ = ["plan_quantization", "check_unquantized", "skip_patterns", "is_skipped", "QuantizationPlan"]
