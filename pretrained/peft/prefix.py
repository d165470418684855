"""Prefix tuning (Li & Liang, 2021) for causal LMs: ``num_virtual_tokens`` trained key/value
pairs per layer, placed in the KV cache before the real tokens; the base model stays frozen.

The layout of the trained table and the files follow PEFT (``PrefixTuningConfig``,
``adapter_model.safetensors`` with one tensor ``prompt_embeddings`` of shape
(num_virtual_tokens, num_layers * 2 * token_dim): per virtual token, layer 0's key, layer 0's
value, layer 1's key, ...), so prefixes move both ways. As in PEFT, the real tokens' positions
start after the prefix.

Example::

    >>> import torch
    >>> from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel
    >>> from pretrained.peft import PrefixTuningConfig, get_peft_model
    >>> lm = GPT2LMHeadModel.from_config(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2))
    >>> model = get_peft_model(lm, PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"))
    >>> model.print_trainable_parameters()
    trainable params: 256 || all params: 24,032 || trainable%: 1.0652
    >>> model(torch.tensor([[1, 2, 3]])).logits.shape
    torch.Size([1, 3, 50])
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InvalidInputError
from .lora import CONFIG_NAME, WEIGHTS_NAME

_NEUTRAL = {"auto_mapping": None, "revision": None, "modules_to_save": None, "init_weights": None}


@dataclass
class PrefixTuningConfig:
    """Prefix-tuning settings with PEFT's names; the model sizes are filled from the model."""

    num_virtual_tokens: int = 20
    task_type: str | None = "CAUSAL_LM"
    token_dim: int | None = None
    num_layers: int | None = None
    num_attention_heads: int | None = None
    encoder_hidden_size: int | None = None
    prefix_projection: bool = False
    num_transformer_submodules: int = 1
    inference_mode: bool = False
    base_model_name_or_path: str | None = None
    peft_type: str = "PREFIX_TUNING"

    def __post_init__(self) -> None:
        if isinstance(self.num_virtual_tokens, bool) or not isinstance(self.num_virtual_tokens, int) \
                or self.num_virtual_tokens <= 0:
            raise InvalidInputError(f"PrefixTuningConfig.num_virtual_tokens={self.num_virtual_tokens!r}: "
                                    "expected an int > 0")
        if self.task_type not in (None, "CAUSAL_LM"):
            raise InvalidInputError(f"PrefixTuningConfig.task_type={self.task_type!r}: prefix tuning is "
                                    "implemented for causal LMs ('CAUSAL_LM')")
        if self.num_transformer_submodules != 1:
            raise InvalidInputError("num_transformer_submodules=2 is for encoder-decoders, not supported")
        if self.peft_type != "PREFIX_TUNING":
            raise InvalidInputError(f"peft_type={self.peft_type!r}: this is not a prefix-tuning adapter")

    def fill_from(self, model: nn.Module) -> None:
        cfg = getattr(model, "config", None)
        heads = getattr(cfg, "num_attention_heads", None)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        hidden, layers = getattr(cfg, "hidden_size", None), getattr(cfg, "num_hidden_layers", None)
        if None in (heads, hidden, layers):
            raise InvalidInputError(f"prefix tuning needs a model config with hidden_size, num_hidden_layers "
                                    f"and num_attention_heads; {type(model).__name__} has none")
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        want = {"token_dim": head_dim * kv_heads, "num_layers": layers, "num_attention_heads": kv_heads}
        for key, value in want.items():
            have = getattr(self, key)
            if have is not None and have != value:
                raise InvalidInputError(f"PrefixTuningConfig.{key}={have} but the model needs {value}; the "
                                        "prefix was made for another model")
            setattr(self, key, value)
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.token_dim

    def to_dict(self) -> dict[str, Any]:
        return dict(sorted({**_NEUTRAL, **dataclasses.asdict(self), "peft_version": "0.21.2"}.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrefixTuningConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class PrefixEncoder(nn.Module):
    """The trained table (optionally produced by a 2-layer MLP while training)."""

    def __init__(self, config: PrefixTuningConfig) -> None:
        super().__init__()
        out = config.num_layers * 2 * config.token_dim
        self.prefix_projection = config.prefix_projection and not config.inference_mode
        if self.prefix_projection:
            self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
            self.transform = nn.Sequential(nn.Linear(config.token_dim, config.encoder_hidden_size), nn.Tanh(),
                                           nn.Linear(config.encoder_hidden_size, out))
        else:
            self.embedding = nn.Embedding(config.num_virtual_tokens, out)

    def table(self) -> torch.Tensor:
        """(num_virtual_tokens, num_layers * 2 * token_dim)"""
        w = self.embedding.weight
        return self.transform(w) if self.prefix_projection else w


class PrefixTuningModel(nn.Module):
    """A causal LM with a trained prefix; ``forward`` takes the base model's arguments."""

    # what generate() may pass to forward (the prefix is the cache: no past_key_values)
    forward_inputs = frozenset({"input_ids", "attention_mask", "labels", "token_type_ids",
                                "output_hidden_states"})

    def __init__(self, model: nn.Module, config: PrefixTuningConfig) -> None:
        super().__init__()
        config.fill_from(model)
        if config.base_model_name_or_path is None:
            name = getattr(getattr(model, "config", None), "name_or_path", None)
            config.base_model_name_or_path = str(name) if name else None
        for p in model.parameters():
            p.requires_grad_(False)
        self.base_model = model
        self.peft_config = {"default": config}
        self.prompt_encoder = nn.ModuleDict({"default": PrefixEncoder(config).to(_device_of(model))})

    @property
    def active_peft_config(self) -> PrefixTuningConfig:
        return self.peft_config["default"]

    def get_base_model(self) -> nn.Module:
        return self.base_model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "peft_config", "prompt_encoder"):
                raise
            return getattr(self.base_model, name)

    def prefix_cache(self, batch_size: int) -> Any:
        """A KV cache holding the prefix for ``batch_size`` rows."""
        from ..cache import DynamicCache

        cfg = self.active_peft_config
        table = self.prompt_encoder["default"].table().to(_dtype_of(self.base_model))
        heads, dim = cfg.num_attention_heads, cfg.token_dim // cfg.num_attention_heads
        # (nvt, L*2*D) -> (L*2, B, heads, nvt, head_dim)
        kv = table.view(1, cfg.num_virtual_tokens, cfg.num_layers * 2, heads, dim).expand(batch_size, -1, -1, -1, -1)
        kv = kv.permute(2, 0, 3, 1, 4)
        cache = DynamicCache()
        for layer in range(cfg.num_layers):
            cache.update(layer, kv[2 * layer], kv[2 * layer + 1])
        return cache

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> Any:
        b = input_ids.shape[0] if input_ids.dim() > 1 else 1
        n = self.active_peft_config.num_virtual_tokens
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(b, n), attention_mask], dim=1)
        # segment ids only where given: GPT-2 takes them, the Llama family and GPT-NeoX do not
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.base_model(input_ids, attention_mask=attention_mask, labels=labels,
                               output_hidden_states=output_hidden_states,
                               past_key_values=self.prefix_cache(b), use_cache=True, **extra)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        return (sum(p.numel() for p in self.parameters() if p.requires_grad),
                sum(p.numel() for p in self.parameters()))

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100 * trainable / total:.4f}")

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            table = self.prompt_encoder["default"].table().detach().contiguous().clone()
        save_file({"prompt_embeddings": table}, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        data = self.active_peft_config.to_dict()
        data["inference_mode"] = True
        (folder / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")
        return folder

    def load_adapter_weights(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        path = Path(folder) / WEIGHTS_NAME
        try:
            table = load_file(str(path))["prompt_embeddings"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cannot read the prefix from {str(path)!r} ({type(e).__name__}: {e})") from None
        encoder = self.prompt_encoder["default"]
        if encoder.prefix_projection:
            raise InvalidInputError("a saved prefix is the projected table; load it with is_trainable=False "
                                    "or prefix_projection=False")
        if table.shape != encoder.embedding.weight.shape:
            raise InvalidInputError(f"{str(path)!r}: prompt_embeddings has shape {tuple(table.shape)}, this "
                                    f"model needs {tuple(encoder.embedding.weight.shape)}")
        with torch.no_grad():
            encoder.embedding.weight.copy_(table)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _dtype_of(model: nn.Module) -> torch.dtype:
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


__all__ = ["PrefixTuningConfig", "PrefixTuningModel", "PrefixEncoder"]
