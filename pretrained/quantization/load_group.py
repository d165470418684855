"""Loading GPTQ and AWQ checkpoints: the plan ``from_pretrained`` follows when config.json's
``quantization_config`` says ``quant_method: "gptq"`` or ``"awq"``.

The same two steps as the bitsandbytes load (:mod:`.load`): :meth:`GroupQuantPlan.attach`
finds every ``nn.Linear`` whose packed tensors (``<name>.qweight``, ``.qzeros``, ``.scales``,
``.g_idx``) are in the checkpoint and hides them from the ordinary load (which fills biases,
norms, embeddings and any layer saved in full precision, such as the LM head);
:meth:`GroupQuantPlan.finish` reads each layer's tensors, checks them against the layer's sizes
and the config, and puts a :class:`~.group_linear.GroupQuantLinear` in its place, packed as it
was stored. Which layers are quantized is decided by the tensors, as the tools that write these
checkpoints decide it (``modules_to_not_convert`` only records it).

Example::

    >>> from pretrained import AutoModelForCausalLM                         # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained("a-gptq-folder")       # doctest: +SKIP
    >>> model.quantization_method                                           # doctest: +SKIP
    'gptq'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import CheckpointCorruptError, CheckpointError
from ..layers.conv1d import Conv1D
from ..io.loading import LoadReport, checkpoint_key_map, copy_out_of_checkpoint
from .gptq_config import AwqConfig, GPTQConfig
from .group_linear import GroupQuantLinear

_PARTS = ("qweight", "qzeros", "scales", "g_idx")


class GroupQuantPlan:
    """The GPTQ / AWQ part of one ``from_pretrained`` call (see the module doc)."""

    prequantized = True

    def __init__(self, config: GPTQConfig | AwqConfig) -> None:
        self.config = config
        self.fmt = config.format   # gptq / gptq_v2 / gemm / gemv: GroupQuantLinear's layouts
        self.targets: dict[str, str] = {}     # module name -> checkpoint key prefix ("model.x.q_proj.")
        self._keys: set[str] = set()

    def attach(self, model: nn.Module, ckpt: Any, prefix: str) -> "_Hiding":
        linears = {n: m for n, m in model.named_modules() if n and type(m) in (nn.Linear, Conv1D)}
        key_map = checkpoint_key_map([n + ".qweight" for n in linears], ckpt.keys(), prefix,
                                     bool(prefix) and hasattr(model, prefix))
        self._keys = keys = set(ckpt.keys())
        hidden: set[str] = set()
        for name, module in linears.items():
            key = key_map.get(name + ".qweight")
            if key is None:
                continue   # saved in full precision (an LM head), or missing: the ordinary path
            if isinstance(module, Conv1D):
                raise CheckpointError(f"{key!r}: GPTQ/AWQ tensors for GPT-2's Conv1D layer {name!r}; this "
                                      "library reads them for nn.Linear layers only")
            base = key[: -len("qweight")]
            self.targets[name] = base
            hidden |= {base + p for p in _PARTS if base + p in keys}
        stray = [k for k in keys - hidden if k.rpartition(".")[2] in ("qweight", "qzeros", "g_idx")]
        if stray:
            raise CheckpointCorruptError(f"packed tensors {stray[:3]} belong to no linear layer of "
                                         f"{type(model).__name__}; the checkpoint is not this model's")
        if not self.targets:
            raise CheckpointCorruptError(
                f"config.json says quant_method {self.config.quant_method!r}, but the checkpoint has no "
                "'<layer>.qweight' tensors for this model's linear layers; the config is not this checkpoint's")
        return _Hiding(ckpt, hidden)

    def finish(self, model: nn.Module, ckpt: Any, report: LoadReport, dtype: torch.dtype,
               device: torch.device) -> None:
        c = self.config
        for name, base in self.targets.items():
            module = model.get_submodule(name)
            bias = module.bias if module.bias is not None and module.bias.device.type != "meta" else None
            if module.bias is not None and bias is None:
                bias = torch.zeros(module.bias.shape, dtype=dtype, device=device)
            # copies, not views of the memory-mapped file: with every view gone the mapping closes
            # with the checkpoint, and the pages read here leave the resident set
            tensors = {p: ckpt.get(base + p).clone() for p in _PARTS if base + p in self._keys}
            q = GroupQuantLinear.from_checkpoint(
                tensors, bias, in_features=module.in_features, out_features=module.out_features, bits=c.bits,
                group_size=c.group_size, fmt=self.fmt, where=f"{ckpt.path_of(base + 'qweight')}: {base}*")
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, q.to(device))
            report.missing_keys = [k for k in report.missing_keys if k not in (name + ".weight", name + ".bias")]
        copy_out_of_checkpoint(model)
        model.quantization_method = c.quant_method
        cfg = model.config
        cfg._extra["quantization_config"] = c.to_dict()
        cfg.quantization_config = cfg._extra["quantization_config"]


class _Hiding:
    def __init__(self, ckpt: Any, hidden: set[str]) -> None:
        self._ckpt, self._hidden = ckpt, hidden

    def keys(self) -> list[str]:
        return [k for k in self._ckpt.keys() if k not in self._hidden]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ckpt, name)


__all__ = ["GroupQuantPlan"]
