"""``BitsAndBytesConfig``: the reference's settings for 8-bit and 4-bit weights, with its field
names, defaults and ``config.json`` layout (``quantization_config`` with ``quant_method:
"bitsandbytes"``), validated with named errors.

Example::

    >>> import torch
    >>> q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
    ...                        bnb_4bit_compute_dtype=torch.bfloat16)
    >>> q.quantization_method(), q.to_dict()["bnb_4bit_compute_dtype"]
    ('nf4', 'bfloat16')
    >>> BitsAndBytesConfig.from_dict(q.to_dict()) == q
    True
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import InvalidInputError, UnsupportedOptionError
from .formats import QUANT_TYPES
from .gptq_config import AwqConfig, GPTQConfig

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_STORAGE = {"uint8": torch.uint8, "int8": torch.int8, "float16": torch.float16,
            "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
#: quantization methods of the reference that this library does not load yet
_LATER = ("aqlm", "quanto", "eetq", "hqq", "compressed-tensors", "fbgemm_fp8",
          "torchao", "bitnet", "vptq", "spqr", "fp8", "higgs", "quark", "auto-round", "mxfp4")


def _dtype(name: str, value: Any, table: dict[str, torch.dtype], default: torch.dtype) -> torch.dtype:
    if value is None:
        return default
    if isinstance(value, str):
        value = value.removeprefix("torch.")
        if value in table:
            return table[value]
    elif isinstance(value, torch.dtype) and value in table.values():
        return value
    raise InvalidInputError(f"BitsAndBytesConfig.{name}={value!r}: use one of {sorted(table)} "
                            "(a string or the torch dtype)")


class BitsAndBytesConfig:
    """How to quantize the linear layers of a model: ``load_in_8bit`` (int8 per output row,
    computed with LLM.int8() as bitsandbytes computes it; weight-only with
    ``pretrained.quantization.set_llm_int8(model, False)``) or
    ``load_in_4bit`` (``bnb_4bit_quant_type`` "nf4" or "fp4" in blocks of 64, optionally
    ``bnb_4bit_use_double_quant``; computed in ``bnb_4bit_compute_dtype``).

    ``llm_int8_skip_modules``: module names kept in full precision (when given, they replace the
    default, which keeps the output layer: the tied, last and output-embedding modules).
    ``llm_int8_threshold``: LLM.int8()'s outlier threshold; see :mod:`pretrained.quantization.int8`
    for what it does on the CPU. Unknown keyword arguments are refused (the reference logs and
    drops them).
    """

    quant_method = "bitsandbytes"

    def __init__(self, load_in_8bit: bool = False, load_in_4bit: bool = False,
                 llm_int8_threshold: float = 6.0, llm_int8_skip_modules: list[str] | None = None,
                 llm_int8_enable_fp32_cpu_offload: bool = False, llm_int8_has_fp16_weight: bool = False,
                 bnb_4bit_compute_dtype: Any = None, bnb_4bit_quant_type: str = "fp4",
                 bnb_4bit_use_double_quant: bool = False, bnb_4bit_quant_storage: Any = None,
                 **kwargs: Any) -> None:
        kwargs.pop("quant_method", None)
        # the reference's to_dict() writes the private twins too: accept them back
        load_in_8bit = kwargs.pop("_load_in_8bit", load_in_8bit)
        load_in_4bit = kwargs.pop("_load_in_4bit", load_in_4bit)
        if kwargs:
            raise InvalidInputError(f"BitsAndBytesConfig got unknown argument(s) {sorted(kwargs)}; it takes "
                                    "load_in_8bit, load_in_4bit, llm_int8_*, bnb_4bit_*")
        for name, value in (("load_in_8bit", load_in_8bit), ("load_in_4bit", load_in_4bit),
                            ("llm_int8_enable_fp32_cpu_offload", llm_int8_enable_fp32_cpu_offload),
                            ("llm_int8_has_fp16_weight", llm_int8_has_fp16_weight),
                            ("bnb_4bit_use_double_quant", bnb_4bit_use_double_quant)):
            if not isinstance(value, bool):
                raise InvalidInputError(f"BitsAndBytesConfig.{name}={value!r}: expected True or False")
        if load_in_8bit and load_in_4bit:
            raise InvalidInputError("BitsAndBytesConfig: load_in_8bit and load_in_4bit are both True; "
                                    "choose one (8-bit: about half the bytes of 16-bit weights, 4-bit: a quarter)")
        if isinstance(llm_int8_threshold, bool) or not isinstance(llm_int8_threshold, (int, float)) \
                or llm_int8_threshold < 0:
            raise InvalidInputError(f"BitsAndBytesConfig.llm_int8_threshold={llm_int8_threshold!r}: "
                                    "expected a number >= 0 (6.0 by default; 0 turns outlier columns off)")
        if llm_int8_skip_modules is not None and (
                not isinstance(llm_int8_skip_modules, (list, tuple))
                or not all(isinstance(m, str) and m for m in llm_int8_skip_modules)):
            raise InvalidInputError(f"BitsAndBytesConfig.llm_int8_skip_modules={llm_int8_skip_modules!r}: "
                                    "expected a list of module names such as ['lm_head']")
        if bnb_4bit_quant_type not in QUANT_TYPES:
            raise InvalidInputError(f"BitsAndBytesConfig.bnb_4bit_quant_type={bnb_4bit_quant_type!r}: "
                                    f"use one of {list(QUANT_TYPES)}")
        self.load_in_8bit, self.load_in_4bit = load_in_8bit, load_in_4bit
        self.llm_int8_threshold = float(llm_int8_threshold)
        self.llm_int8_skip_modules = list(llm_int8_skip_modules) if llm_int8_skip_modules is not None else None
        self.llm_int8_enable_fp32_cpu_offload = llm_int8_enable_fp32_cpu_offload
        self.llm_int8_has_fp16_weight = llm_int8_has_fp16_weight
        self.bnb_4bit_compute_dtype = _dtype("bnb_4bit_compute_dtype", bnb_4bit_compute_dtype, _DTYPES,
                                             torch.float32)
        self.bnb_4bit_quant_type = bnb_4bit_quant_type
        self.bnb_4bit_use_double_quant = bnb_4bit_use_double_quant
        self.bnb_4bit_quant_storage = _dtype("bnb_4bit_quant_storage", bnb_4bit_quant_storage, _STORAGE,
                                             torch.uint8)

    def quantization_method(self) -> str | None:
        """"llm_int8", "nf4", "fp4", or None when neither 8 nor 4 bits is asked for."""
        if self.load_in_8bit:
            return "llm_int8"
        return self.bnb_4bit_quant_type if self.load_in_4bit else None

    def is_quantizable(self) -> bool:
        return self.load_in_8bit or self.load_in_4bit

    def check_device(self, device: torch.device) -> None:
        """Refuse what this library cannot honour on ``device`` (named, with what to do)."""
        if not self.is_quantizable():
            raise InvalidInputError("BitsAndBytesConfig has neither load_in_8bit nor load_in_4bit set; "
                                    "set one, or leave quantization_config out")
        if self.llm_int8_enable_fp32_cpu_offload and device.type == "cpu":
            raise UnsupportedOptionError(
                "llm_int8_enable_fp32_cpu_offload=True splits a model between int8 on a CUDA GPU and "
                "float32 on the CPU; on the CPU alone it does not apply: leave it False (the CPU runs "
                "the int8 layers itself), or keep modules in float32 with llm_int8_skip_modules")
        if self.llm_int8_has_fp16_weight and self.load_in_8bit:
            raise UnsupportedOptionError(
                "llm_int8_has_fp16_weight=True (16-bit weights re-quantized on every call, for full "
                "fine-tuning through bitsandbytes) is not implemented; train LoRA adapters over the int8 "
                "weights instead (pretrained.peft.prepare_model_for_kbit_training + get_peft_model)")

    # --- dict / json ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The reference's ``config.json`` entry, key for key (the private twins included)."""
        return {
            "_load_in_4bit": self.load_in_4bit, "_load_in_8bit": self.load_in_8bit,
            "bnb_4bit_compute_dtype": str(self.bnb_4bit_compute_dtype).replace("torch.", ""),
            "bnb_4bit_quant_storage": str(self.bnb_4bit_quant_storage).replace("torch.", ""),
            "bnb_4bit_quant_type": self.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": self.bnb_4bit_use_double_quant,
            "llm_int8_enable_fp32_cpu_offload": self.llm_int8_enable_fp32_cpu_offload,
            "llm_int8_has_fp16_weight": self.llm_int8_has_fp16_weight,
            "llm_int8_skip_modules": copy.deepcopy(self.llm_int8_skip_modules),
            "llm_int8_threshold": self.llm_int8_threshold,
            "load_in_4bit": self.load_in_4bit, "load_in_8bit": self.load_in_8bit,
            "quant_method": self.quant_method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BitsAndBytesConfig":
        if not isinstance(data, dict):
            raise InvalidInputError(f"quantization_config must be an object, got {type(data).__name__}")
        method = data.get("quant_method", cls.quant_method)
        if method != cls.quant_method:
            raise UnsupportedOptionError(f"quant_method {method!r} is not bitsandbytes")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BitsAndBytesConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"BitsAndBytesConfig({self.to_dict()})"


def quantization_config_from_dict(data: Any, source: str = "quantization_config") -> Any:
    """A ``quantization_config`` (an object or a dict, e.g. config.json's) -> the config class of
    its ``quant_method`` (bitsandbytes, gptq, awq); every other method is refused by name."""
    if isinstance(data, (BitsAndBytesConfig, GPTQConfig, AwqConfig)):
        return data
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source} must be a BitsAndBytesConfig, GPTQConfig, AwqConfig or a dict, "
                                f"got {type(data).__name__}")
    method = data.get("quant_method")
    for cls in (BitsAndBytesConfig, GPTQConfig, AwqConfig):
        if method == cls.quant_method:
            return cls.from_dict(data)
    later = " (not implemented yet)" if method in _LATER else ""
    raise UnsupportedOptionError(
        f"{source} has quant_method={method!r}{later}: this library loads quant_method 'bitsandbytes' "
        "(load_in_8bit / load_in_4bit), 'gptq' and 'awq'; use the model's unquantized weights (in "
        "bfloat16 for half the memory of float32) and quantize them on load with BitsAndBytesConfig, "
        "or make GPTQ/AWQ weights with `pretrained quantize`")


__all__ = ["BitsAndBytesConfig", "quantization_config_from_dict"]
