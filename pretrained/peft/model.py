"""PeftModel: a model with LoRA layers injected, saved and loaded as PEFT adapters.

Parameter names follow PEFT (``base_model.model.<path>.lora_A.weight``), and
``save_pretrained`` writes PEFT's two files, ``adapter_config.json`` and
``adapter_model.safetensors`` (adapter-only tensors, same keys as PEFT), so an adapter trained
here loads with ``peft.PeftModel.from_pretrained`` and the other way round.

Example::

    >>> from pretrained.models.bert import BertConfig, BertForSequenceClassification
    >>> from pretrained.peft import LoraConfig, get_peft_model
    >>> base = BertForSequenceClassification.from_config(BertConfig(
    ...     vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, num_labels=2))
    >>> model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"],
    ...                                         task_type="SEQ_CLS"))
    >>> model.print_trainable_parameters()
    trainable params: 1,090 || all params: 39,012 || trainable%: 2.7940
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InvalidInputError
from .lora import (CONFIG_NAME, WEIGHTS_NAME, LoraConfig, LoraLinear, adapter_state_dict, file_key_to_param,
                   inject_lora, unwrap_layers)
from .prefix import PrefixTuningConfig, PrefixTuningModel

PREFIX = "base_model.model."


class LoraModel(nn.Module):
    """Holds the adapted model as ``.model`` (so names read ``base_model.model.*``)."""

    def __init__(self, model: nn.Module, config: LoraConfig) -> None:
        super().__init__()
        inject_lora(model, config)
        self.model = model


class PeftModel(nn.Module):
    """A base model with LoRA adapters; forwards every call and attribute to the base model."""

    def __init__(self, model: nn.Module, peft_config: LoraConfig) -> None:
        super().__init__()
        if isinstance(model, PeftModel):
            raise InvalidInputError("this model already has LoRA adapters")
        if not isinstance(peft_config, LoraConfig):
            raise InvalidInputError(f"peft_config must be a LoraConfig, got {type(peft_config).__name__}")
        if peft_config.base_model_name_or_path is None:
            name = getattr(getattr(model, "config", None), "name_or_path", None)
            peft_config.base_model_name_or_path = str(name) if name else None
        self.peft_config = {"default": peft_config}
        self.base_model = LoraModel(model, peft_config)

    @property
    def active_peft_config(self) -> LoraConfig:
        return self.peft_config["default"]

    def get_base_model(self) -> nn.Module:
        return self.base_model.model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.model.generate(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "peft_config"):
                raise
            return getattr(self.base_model.model, name)

    # --- parameters -------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def print_trainable_parameters(self) -> None:
        """Print the counts in PEFT's words (all params include the frozen copies)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100 * trainable / total:.4f}")

    # --- merging ----------------------------------------------------------------------------
    def merge_adapter(self) -> None:
        for m in self.modules():
            if isinstance(m, LoraLinear):
                m.merge()

    def unmerge_adapter(self) -> None:
        for m in self.modules():
            if isinstance(m, LoraLinear):
                m.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """The base model with the updates folded into its weights (LoRA layers removed)."""
        return unwrap_layers(self.base_model.model, merge=True)

    def unload(self) -> nn.Module:
        """The base model without the LoRA updates (heads in modules_to_save keep their training)."""
        return unwrap_layers(self.base_model.model, merge=False)

    # --- files ------------------------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v for k, v in adapter_state_dict(self.base_model.model, self.active_peft_config).items()}

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write adapter_config.json and adapter_model.safetensors (PEFT's format)."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.active_peft_config
        state = self.adapter_state_dict()
        tmp = folder / (WEIGHTS_NAME + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / WEIGHTS_NAME)
        inference = config.inference_mode
        config.inference_mode = True  # as PEFT writes it
        config.save_pretrained(folder)
        config.inference_mode = inference
        return folder

    def load_adapter_weights(self, folder: str | os.PathLike) -> None:
        """Load adapter_model.safetensors into this model (all tensors must fit)."""
        from safetensors.torch import load_file

        path = Path(folder) / WEIGHTS_NAME
        if not path.is_file():
            raise CheckpointError(f"{str(folder)!r} has no {WEIGHTS_NAME}")
        try:
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cannot read {str(path)!r} ({type(e).__name__}: {e})") from None
        model = self.base_model.model
        params = dict(model.named_parameters())
        expected = {k for k in adapter_state_dict(model, self.active_peft_config)}
        loaded = set()
        with torch.no_grad():
            for key, value in tensors.items():
                name = file_key_to_param(model, key[len(PREFIX):] if key.startswith(PREFIX) else key)
                if name not in params:
                    raise InvalidInputError(
                        f"{str(path)!r}: tensor {key!r} has no place in {type(model).__name__}; the adapter "
                        "was trained for another base model or other target_modules")
                if params[name].shape != value.shape:
                    raise InvalidInputError(
                        f"{str(path)!r}: {key!r} has shape {tuple(value.shape)} but this model's is "
                        f"{tuple(params[name].shape)}; the adapter was trained for another base model")
                params[name].copy_(value)
                loaded.add(key[len(PREFIX):] if key.startswith(PREFIX) else key)
        missing = sorted(k for k in expected - loaded if ".lora_" in k)
        if missing:
            raise InvalidInputError(f"{str(path)!r} lacks adapter weights for {missing[:4]}"
                                    f"{' ...' if len(missing) > 4 else ''}; it does not match this "
                                    "model and LoraConfig")

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: str | os.PathLike, is_trainable: bool = False,
                        config: LoraConfig | PrefixTuningConfig | None = None) -> Any:
        """Wrap ``model`` with the adapter saved in ``model_id`` (a folder: LoRA or prefix
        tuning). Frozen for inference unless ``is_trainable``."""
        folder = Path(model_id)
        if config is None:
            config = _read_config(folder)
        config.inference_mode = not is_trainable
        peft_model = cls(model, config) if isinstance(config, LoraConfig) else PrefixTuningModel(model, config)
        peft_model.load_adapter_weights(folder)
        if not is_trainable:
            for p in peft_model.parameters():
                p.requires_grad_(False)
            peft_model.eval()
        return peft_model


def get_peft_model(model: nn.Module, peft_config: LoraConfig | PrefixTuningConfig) -> Any:
    """LoRA: inject LoRA layers into ``model`` (in place) and wrap it as a PeftModel. Prefix
    tuning: wrap it as a PrefixTuningModel (the base model is frozen)."""
    if isinstance(peft_config, PrefixTuningConfig):
        return PrefixTuningModel(model, peft_config)
    return PeftModel(model, peft_config)


def _read_config(folder: Path) -> LoraConfig | PrefixTuningConfig:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise InvalidInputError(f"{str(folder)!r} has no {CONFIG_NAME}; is it a PEFT adapter folder?")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise InvalidInputError(f"{str(path)!r} is not valid JSON ({e})") from None
    if data.get("peft_type") == "PREFIX_TUNING":
        return PrefixTuningConfig.from_dict(data)
    return LoraConfig.from_dict(data, str(path))


__all__ = ["PeftModel", "LoraModel", "get_peft_model"]
