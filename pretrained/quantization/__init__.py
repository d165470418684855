"""Quantized weights: 8-bit (int8 per output row) and 4-bit (NF4 / FP4 in blocks, optionally
double-quantized) linear layers in bitsandbytes' serialized layout, and GPTQ / AWQ checkpoints'
grouped integer codes (2, 3, 4, 8 bits) in their packed layouts, computed on the CPU by plain
PyTorch math (the backend swaps in faster ops: :mod:`pretrained.backends.quantized`).

- :mod:`.config`   ``BitsAndBytesConfig`` (the reference's fields and ``config.json`` entry)
- :mod:`.formats`  the number formats: codes, blockwise (de)quantization, the state's JSON
- :mod:`.int8`     ``Linear8bit`` (LLM.int8(), bitsandbytes' numbers; weight-only on request)
- :mod:`.nf4`      ``Linear4bit`` (NF4 / FP4, double quantization, compute dtype)
- :mod:`.load`     what ``from_pretrained`` calls: the plan, layer choice, streaming quantization
- :mod:`.gptq_config`  ``GPTQConfig`` / ``AwqConfig`` (GPTQ and AWQ checkpoints' config.json entry)
- :mod:`.packing`      GPTQ / AWQ GEMM / AWQ GEMV bit layouts (pack, unpack)
- :mod:`.group_linear` ``GroupQuantLinear`` (GPTQ / AWQ codes in groups, kept packed)
- :mod:`.load_group`   reading GPTQ / AWQ checkpoints in ``from_pretrained``

Example::

    >>> from pretrained import AutoModelForCausalLM, BitsAndBytesConfig      # doctest: +SKIP
    >>> q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")  # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q)  # doctest: +SKIP
    >>> model.get_memory_footprint()                                          # doctest: +SKIP
"""

from __future__ import annotations

from .config import BitsAndBytesConfig, quantization_config_from_dict
from .gptq_config import AwqConfig, GPTQConfig
from .group_linear import GroupQuantLinear
from .int8 import Linear8bit, QuantizedLinear, set_llm_int8
from .nf4 import Linear4bit

__all__ = ["BitsAndBytesConfig", "GPTQConfig", "AwqConfig", "quantization_config_from_dict", "Linear8bit",
           "Linear4bit", "GroupQuantLinear", "QuantizedLinear", "set_llm_int8"]
