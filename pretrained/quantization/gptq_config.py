"""``GPTQConfig`` and ``AwqConfig``: the ``quantization_config`` of GPTQ and AWQ checkpoints,
with the reference's field names, defaults and ``config.json`` layout.

A checkpoint made by AutoGPTQ / GPTQModel / optimum carries ``quant_method: "gptq"`` with
``bits``, ``group_size``, ``desc_act``, ``sym`` and ``checkpoint_format`` ("gptq" is the v1
zero-minus-one convention, "gptq_v2" stores zeros as they are); AutoAWQ's carries ``quant_method:
"awq"`` with ``bits`` 4, ``group_size``, ``zero_point`` and ``version`` ("gemm" or "gemv"). Keys
the tools add for their own records (``static_groups``, ``model_name_or_path``, ``meta``, ...) are
kept and written back unchanged; they do not change how the weights read.

Example::

    >>> c = GPTQConfig(bits=4, group_size=128, desc_act=True)
    >>> c.to_dict()["checkpoint_format"], c.v1
    ('gptq', True)
    >>> AwqConfig.from_dict({"quant_method": "awq", "bits": 4, "version": "GEMV"}).format
    'gemv'
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidInputError, UnsupportedOptionError

GPTQ_FORMATS = ("gptq", "gptq_v2")
AWQ_FORMATS = ("gemm", "gemv")
# backends are kernel choices of GPTQModel on GPUs; this library has one CPU path of its own
_CPU_BACKENDS = (None, "auto", "auto_trainable", "torch", "autoawq")


class _GroupConfig:
    """What GPTQ and AWQ share: integer codes in groups of input columns with a scale and zero."""

    quant_method = ""
    _FIELDS: dict[str, Any] = {}

    def __init__(self, **values: Any) -> None:
        values.pop("quant_method", None)
        for name, default in self._FIELDS.items():
            setattr(self, name, copy.deepcopy(values.pop(name, default)))
        self.extra = values   # the tools' own records, written back as they were

    def _check_common(self) -> None:
        name = type(self).__name__
        if isinstance(self.bits, bool) or self.bits not in self._BITS:
            raise InvalidInputError(f"{name}.bits={self.bits!r}: use one of {list(self._BITS)}")
        gs = self.group_size
        if isinstance(gs, bool) or not isinstance(gs, int) or (gs != -1 and gs <= 0):
            raise InvalidInputError(f"{name}.group_size={gs!r}: use a positive number of input columns "
                                    "(128 is usual) or -1 for one group per output row")
        backend = self.backend.lower() if isinstance(self.backend, str) else self.backend
        if backend not in _CPU_BACKENDS:
            raise UnsupportedOptionError(
                f"{name}.backend={self.backend!r} names a GPU kernel of GPTQModel/AutoAWQ; this library "
                "computes these weights with its own CPU path: leave backend out (or 'auto')")

    def check_device(self, device: Any) -> None:
        """Nothing to refuse: the plain math runs on any device (the fast path is the CPU's)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"quant_method": self.quant_method}
        out.update({name: copy.deepcopy(getattr(self, name)) for name in self._FIELDS})
        out.update(copy.deepcopy(self.extra))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "_GroupConfig":
        if not isinstance(data, dict):
            raise InvalidInputError(f"quantization_config must be an object, got {type(data).__name__}")
        method = data.get("quant_method", cls.quant_method)
        if method != cls.quant_method:
            raise UnsupportedOptionError(f"quant_method {method!r} is not {cls.quant_method}")
        return cls(**data)

    def quantization_method(self) -> str:
        return f"{self.quant_method}-{self.bits}bit"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


class GPTQConfig(_GroupConfig):
    """A GPTQ checkpoint's settings (see the module doc). ``format`` / ``checkpoint_format``:
    "gptq" (v1, zeros stored minus one) or "gptq_v2". Loading reads ``g_idx`` from the
    checkpoint, so ``desc_act`` and ``sym`` are records of how it was made; ``dataset``,
    ``damp_percent`` and the rest are the quantizer's settings (``pretrained quantize``)."""

    quant_method = "gptq"
    _BITS = (2, 3, 4, 8)
    _FIELDS = {"bits": 4, "tokenizer": None, "dataset": None, "group_size": 128, "damp_percent": 0.1,
               "desc_act": False, "act_group_aware": True, "sym": True, "true_sequential": True,
               "format": "gptq", "meta": None, "backend": "auto", "model_seqlen": None,
               "block_name_to_quantize": None, "module_name_preceding_first_block": None, "batch_size": 1,
               "pad_token_id": None, "max_input_length": None, "cache_block_outputs": True,
               "modules_in_block_to_quantize": None}

    def __init__(self, bits: int = 4, **kwargs: Any) -> None:
        fmt = kwargs.pop("checkpoint_format", None)
        super().__init__(bits=bits, **kwargs)
        if fmt is not None:
            self.format = fmt
        self.format = str(self.format).lower()
        self._check_common()
        if self.format not in GPTQ_FORMATS:
            raise UnsupportedOptionError(
                f"GPTQConfig checkpoint_format={self.format!r}: this library reads GPTQ's {list(GPTQ_FORMATS)} "
                "layouts (qweight/qzeros/scales/g_idx); convert the checkpoint to one of them with the tool "
                "that wrote it (GPTQModel), or quantize the float model with `pretrained quantize --method gptq`")
        if not isinstance(self.damp_percent, (int, float)) or not 0 < self.damp_percent < 1:
            raise InvalidInputError(f"GPTQConfig.damp_percent={self.damp_percent!r}: expected a number in (0, 1)")
        if self.desc_act:
            self.act_group_aware = False   # the reference's rule: the two orders exclude each other

    @property
    def v1(self) -> bool:
        """True for AutoGPTQ's v1 zero convention (``zero - 1`` stored)."""
        return self.format == "gptq"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["checkpoint_format"] = self.format
        return out


class AwqConfig(_GroupConfig):
    """An AWQ checkpoint's settings (see the module doc): 4-bit codes with a zero point,
    ``version`` (or ``format``) "gemm" or "gemv"."""

    quant_method = "awq"
    _BITS = (4,)
    _FIELDS = {"bits": 4, "group_size": 128, "zero_point": True, "format": "gemm", "backend": "auto",
               "modules_to_not_convert": None}

    def __init__(self, bits: int = 4, **kwargs: Any) -> None:
        version = kwargs.pop("version", None)
        super().__init__(bits=bits, **kwargs)
        if version is not None:
            self.format = version
        self.format = str(self.format).lower()
        self._check_common()
        if self.format not in AWQ_FORMATS:
            raise UnsupportedOptionError(
                f"AwqConfig version={self.format!r}: this library reads AutoAWQ's {list(AWQ_FORMATS)} layouts; "
                "'gemv_fast', Marlin and exllama layouts are GPU kernels' own: re-export the model as GEMM, or "
                "quantize the float model with `pretrained quantize --method awq`")
        if self.zero_point is not True:
            raise UnsupportedOptionError(
                "AwqConfig zero_point=False (symmetric AWQ) has no packed layout in AutoAWQ's GEMM/GEMV "
                "writers; use a zero-point checkpoint, or GPTQ with sym=True")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["version"] = out.pop("format")
        return out


__all__ = ["GPTQConfig", "AwqConfig", "GPTQ_FORMATS", "AWQ_FORMATS"]
