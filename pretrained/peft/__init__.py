"""Parameter-efficient fine-tuning: LoRA adapters in PEFT's file format.

Example::

    >>> from pretrained.peft import LoraConfig, get_peft_model          # doctest: +SKIP
    >>> model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16,
    ...                        target_modules=["query", "value"]))     # doctest: +SKIP
    >>> model.save_pretrained("adapter")   # loads with peft.PeftModel.from_pretrained  # doctest: +SKIP
"""

from __future__ import annotations

from .kbit import prepare_model_for_kbit_training
from .lora import LoraConfig, LoraLinear
from .model import PeftModel, get_peft_model
from .prefix import PrefixTuningConfig, PrefixTuningModel

__all__ = ["LoraConfig", "LoraLinear", "PeftModel", "get_peft_model", "PrefixTuningConfig", "PrefixTuningModel",
           "prepare_model_for_kbit_training"]
