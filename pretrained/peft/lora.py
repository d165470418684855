"""LoRA (Hu et al., 2021): a frozen linear layer plus a trainable low-rank update
``W x + (B A x) * lora_alpha / r``; ``B`` starts at zero so the model starts unchanged.

:class:`LoraConfig` has PEFT's fields and file format (``adapter_config.json``), so adapters
move both ways between this library and PEFT. :class:`LoraLinear` wraps ``nn.Linear`` or GPT-2's
``Conv1D`` (weight stored (in, out): ``fan_in_fan_out``) and keeps the original layer as
``base_layer``, so parameter names match PEFT's (``...query.lora_A.weight``).

Example::

    >>> import torch
    >>> from pretrained.peft.lora import LoraLinear
    >>> base = torch.nn.Linear(8, 4)
    >>> lora = LoraLinear.from_base(base, r=2, lora_alpha=4)
    >>> x = torch.randn(3, 8)
    >>> torch.equal(lora(x), base(x))   # B = 0: the adapted layer starts as the base layer
    True
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError, UnsupportedOptionError
from ..layers import Conv1D
from ..quantization.int8 import QuantizedLinear

# what LoRA adapts: linears, GPT-2's Conv1D, and the 8-/4-bit linears (QLoRA)
_ADAPTABLE = (nn.Linear, Conv1D, QuantizedLinear)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"

# PEFT's default targets per model_type (used when target_modules is None).
DEFAULT_TARGETS = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"], "distilbert": ["q_lin", "v_lin"], "deberta-v2": ["query_proj", "value_proj"],
    "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "qwen3": ["q_proj", "v_proj"],
    "bart": ["q_proj", "v_proj"],   # PEFT has no default for marian, mbart, pegasus either
}
# Heads a classification task trains fully (PEFT adds them to modules_to_save).
TASK_HEADS = {"SEQ_CLS": ["classifier", "score"], "TOKEN_CLS": ["classifier", "score"],
              "QUESTION_ANS": ["qa_outputs"]}
TASK_TYPES = ("SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "CAUSAL_LM", "SEQ_2_SEQ_LM", "FEATURE_EXTRACTION")
# Keys of PEFT's adapter_config.json that we write with their neutral values and refuse when set.
_UNSUPPORTED = {"use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
                "layers_pattern": None, "layer_replication": None, "target_parameters": None,
                "trainable_token_indices": None, "use_qalora": False, "lora_bias": False,
                "megatron_config": None, "loftq_config": {}, "eva_config": None, "corda_config": None,
                "alora_invocation_tokens": None, "arrow_config": None, "use_bdlora": None}
_NEUTRAL = {"auto_mapping": None, "revision": None, "megatron_core": "megatron.core",
            "qalora_group_size": 16, "ensure_weight_tying": False, "kasa_config": None,
            "lora_ga_config": None, "monteclora_config": None, "velora_config": None}


@dataclass
class LoraConfig:
    """LoRA settings, with PEFT's names and defaults.

    ``target_modules``: module names (a module matches when its full name equals one, or ends
    with ``"." + name``), a regex matched against the full name, ``"all-linear"``, or None for
    the model type's default. ``bias``: "none", "all" or "lora_only" (which biases train).
    ``modules_to_save``: modules trained fully and saved with the adapter (the classifier head
    is added for ``task_type`` SEQ_CLS/TOKEN_CLS/QUESTION_ANS).
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    bias: str = "none"
    modules_to_save: list[str] | None = None
    task_type: str | None = None
    fan_in_fan_out: bool = False
    init_lora_weights: bool | str = True
    use_rslora: bool = False
    inference_mode: bool = False
    base_model_name_or_path: str | None = None
    peft_type: str = "LORA"

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise InvalidInputError(f"LoraConfig.r={self.r!r}: the rank must be an int > 0")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise InvalidInputError(f"LoraConfig.lora_alpha={self.lora_alpha!r}: expected a number > 0")
        if not 0 <= self.lora_dropout < 1:
            raise InvalidInputError(f"LoraConfig.lora_dropout={self.lora_dropout!r}: expected [0, 1)")
        if self.bias not in ("none", "all", "lora_only"):
            raise InvalidInputError(f"LoraConfig.bias={self.bias!r}: use 'none', 'all' or 'lora_only'")
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            raise InvalidInputError(f"LoraConfig.task_type={self.task_type!r}: use one of {TASK_TYPES}")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise InvalidInputError(f"LoraConfig.init_lora_weights={self.init_lora_weights!r}: use "
                                    "True, False or 'gaussian'")
        if self.peft_type != "LORA":
            raise InvalidInputError(f"peft_type={self.peft_type!r}: this is not a LoRA adapter")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if isinstance(value, (set, tuple)):
                setattr(self, name, sorted(value))
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        heads = TASK_HEADS.get(self.task_type or "", [])
        if heads:
            self.modules_to_save = list(self.modules_to_save or []) + [h for h in heads
                                                                        if h not in (self.modules_to_save or [])]

    @property
    def scaling(self) -> float:
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    # --- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {**_UNSUPPORTED, **_NEUTRAL, **dataclasses.asdict(self)}
        data["peft_version"] = "0.21.2"  # the PEFT file format this writes
        return dict(sorted(data.items()))

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "adapter_config.json") -> "LoraConfig":
        if data.get("peft_type", "LORA") != "LORA":
            raise InvalidInputError(f"{source}: peft_type {data.get('peft_type')!r} is not supported; "
                                    "only LoRA adapters load here")
        for key, neutral in _UNSUPPORTED.items():
            value = data.get(key, neutral)
            if value not in (neutral, None, {}, [], False):
                raise InvalidInputError(f"{source}: {key}={value!r} is a PEFT feature this library does "
                                        "not implement; only plain LoRA adapters load")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        # modules_to_save already lists the task heads; do not add them twice
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "LoraConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise InvalidInputError(f"{str(folder)!r} has no {CONFIG_NAME}; is it a PEFT adapter folder?")
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise InvalidInputError(f"{str(path)!r} is not valid JSON ({e})") from None
        return cls.from_dict(data, str(path))


class LoraLinear(nn.Module):
    """``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``; ``merge()`` folds the update into
    the base weight (then the forward costs nothing extra)."""

    def __init__(self, base_layer: nn.Module, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 fan_in_fan_out: bool = False, init_lora_weights: bool | str = True,
                 use_rslora: bool = False) -> None:
        super().__init__()
        if isinstance(base_layer, Conv1D):
            fan_in_fan_out = True  # GPT-2 stores (in, out)
        elif not isinstance(base_layer, _ADAPTABLE):
            raise InvalidInputError(f"LoRA wraps nn.Linear, Conv1D or quantized linear layers, not "
                                    f"{type(base_layer).__name__}")
        weight = base_layer.weight
        if isinstance(base_layer, QuantizedLinear):   # packed codes: the sizes are the layer's
            n_in, n_out = base_layer.in_features, base_layer.out_features
        else:
            n_in, n_out = (weight.shape[0], weight.shape[1]) if fan_in_fan_out else (weight.shape[1], weight.shape[0])
        self.base_layer = base_layer
        self.fan_in_fan_out = fan_in_fan_out
        self.r, self.lora_alpha = r, lora_alpha
        self.scaling = lora_alpha / (math.sqrt(r) if use_rslora else r)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        # Half-precision and quantized base layers keep float32 adapters (PEFT's autocast_adapter_dtype).
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
        self.lora_A = nn.Linear(n_in, r, bias=False, device=weight.device, dtype=dtype)
        self.lora_B = nn.Linear(r, n_out, bias=False, device=weight.device, dtype=dtype)
        self.merged = False
        self.reset_lora_parameters(init_lora_weights)

    @classmethod
    def from_base(cls, base_layer: nn.Module, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                  fan_in_fan_out: bool = False, init_lora_weights: bool | str = True,
                  use_rslora: bool = False) -> "LoraLinear":
        return cls(base_layer, r, lora_alpha, lora_dropout, fan_in_fan_out, init_lora_weights, use_rslora)

    def reset_lora_parameters(self, init: bool | str = True) -> None:
        with torch.no_grad():
            if init == "gaussian":
                nn.init.normal_(self.lora_A.weight, std=1 / self.r)
            else:
                nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            if init is False:  # a non-zero update (tests, debugging)
                nn.init.kaiming_uniform_(self.lora_B.weight, a=math.sqrt(5))
            else:
                nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """The update in the base weight's layout."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (out, in)
        return (delta.T if self.fan_in_fan_out else delta).to(self.base_layer.weight.dtype)

    def merge(self) -> None:
        if isinstance(self.base_layer, QuantizedLinear):
            raise UnsupportedOptionError(
                "merging a LoRA adapter into 8-bit or 4-bit weights is not implemented (it would round the "
                "update away); load the full-precision base, PeftModel.from_pretrained(base, adapter), and "
                "merge there")
        if not self.merged:
            with torch.no_grad():
                self.base_layer.weight += self.delta_weight()
            self.merged = True

    def unmerge(self) -> None:
        if self.merged:
            with torch.no_grad():
                self.base_layer.weight -= self.delta_weight()
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        a = self.lora_A.weight
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(a.dtype)))) * self.scaling
        return out + update.to(out.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, merged={self.merged}"


class ModulesToSave(nn.Module):
    """A module trained fully: a trainable copy used in the forward, the frozen original kept
    (as PEFT does, so both count in the parameter totals)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.original_module = module
        self.modules_to_save = copy.deepcopy(module)
        for p in self.original_module.parameters():
            p.requires_grad_(False)
        for p in self.modules_to_save.parameters():
            p.requires_grad_(True)

    def forward(self, *args: Any) -> Any:
        return self.modules_to_save(*args)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.modules_to_save, name)


def _matches(name: str, targets: list[str] | str) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return name in targets or any(name.endswith(f".{t}") for t in targets)


def _under(name: str, modules: list[str]) -> bool:
    return any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", name) for m in modules)


def target_names(model: nn.Module, config: LoraConfig) -> list[str]:
    """Full names of the modules LoRA wraps, or a clear error."""
    targets = config.target_modules
    if targets is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in DEFAULT_TARGETS:
            raise InvalidInputError(f"LoraConfig.target_modules is None and there is no default for "
                                    f"model_type {model_type!r}; name the layers, e.g. ['q_proj', 'v_proj']")
        targets = DEFAULT_TARGETS[model_type]
    skip = list(config.modules_to_save or [])
    output = getattr(model, "get_output_embeddings", lambda: None)() if targets == "all-linear" else None
    found, wrong_type = [], []
    for name, module in model.named_modules():
        if not name or _under(name, skip):
            continue
        if config.exclude_modules and _matches(name, config.exclude_modules):
            continue
        if targets == "all-linear":
            if isinstance(module, _ADAPTABLE) and module is not output:
                found.append(name)
        elif _matches(name, targets):
            (found if isinstance(module, _ADAPTABLE) else wrong_type).append(name)
    if wrong_type:
        bad = model.get_submodule(wrong_type[0])
        # a GGUF file's packed blocks (pretrained.layers.gguf) compute but do not train
        fix = ("; load the GGUF file with from_pretrained(..., gguf_file=..., dequantize=True) to "
               "train adapters on it") if hasattr(bad, "ggml_type") else ""
        raise InvalidInputError(f"LoRA target {wrong_type[0]!r} is a {type(bad).__name__}; "
                                f"only nn.Linear, Conv1D and quantized linear layers can be adapted{fix}")
    if not found:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, _ADAPTABLE)})
        raise InvalidInputError(f"LoraConfig.target_modules={targets!r} matches no layer of "
                                f"{type(model).__name__}; its linear layers are named {linear}")
    return found


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def inject_lora(model: nn.Module, config: LoraConfig) -> None:
    """Swap the target layers for LoRA layers and set which parameters train (in place)."""
    names = target_names(model, config)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        _replace(model, name, LoraLinear(base, config.r, config.lora_alpha, config.lora_dropout,
                                         config.fan_in_fan_out, config.init_lora_weights, config.use_rslora))
    for name, module in list(model.named_modules()):
        if name and config.modules_to_save and any(name == m or name.endswith(f".{m}") for m in config.modules_to_save) \
                and not isinstance(module, (ModulesToSave, LoraLinear)) and not _under(name.rpartition(".")[0], config.modules_to_save):
            _replace(model, name, ModulesToSave(module))
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            p.requires_grad_(not config.inference_mode)
        elif config.bias == "all" and name.endswith(".bias") and ".original_module." not in name:
            p.requires_grad_(True)
        elif config.bias == "lora_only" and name.endswith(".base_layer.bias"):
            p.requires_grad_(True)


def adapter_state_dict(model: nn.Module, config: LoraConfig) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's file names (without the ``base_model.model.`` prefix)."""
    out = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if ".lora_A." in name or ".lora_B." in name:
            out[name] = t
        elif ".modules_to_save." in name:
            out[name.replace(".modules_to_save.", ".")] = t
        # bias="all" saves every bias under its own name, the copies inside modules_to_save
        # included (PEFT writes those too)
        if config.bias == "all" and name.endswith(".bias"):
            out[name] = t
        elif config.bias == "lora_only" and name.endswith(".base_layer.bias"):
            out[name] = t
    seen: set[int] = set()
    result = {}
    for k, v in out.items():
        v = v.detach().contiguous()
        result[k] = v.clone() if v.data_ptr() in seen else v  # safetensors refuses shared storage
        seen.add(v.data_ptr())
    return result


def file_key_to_param(model: nn.Module, key: str) -> str:
    """A key of adapter_model.safetensors (prefix removed) -> our parameter name."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        owner = ".".join(parts[:i])
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            continue
        if isinstance(module, ModulesToSave):
            return f"{owner}.modules_to_save.{'.'.join(parts[i:])}"
        break
    return key


def unwrap_layers(model: nn.Module, merge: bool) -> nn.Module:
    """Replace LoRA layers by their base layer (merged or not) and ModulesToSave by the
    trained copy (merge) or the original (no merge)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLinear):
            if merge:
                module.merge()
            _replace(model, name, module.base_layer)
        elif isinstance(module, ModulesToSave):
            _replace(model, name, module.modules_to_save if merge else module.original_module)
    return model


__all__ = ["LoraConfig", "LoraLinear", "ModulesToSave", "inject_lora", "target_names", "adapter_state_dict",
           "unwrap_layers", "DEFAULT_TARGETS"]
