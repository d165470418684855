"""The dtype and device arguments of loading (``torch_dtype=``, ``device_map=``), read once with
errors that say what to pass."""

from __future__ import annotations

from typing import Any

import torch

from .errors import InvalidInputError

__all__ = ["resolve_dtype", "resolve_device"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64, "fp32": torch.float32, "fp16": torch.float16,
           "bf16": torch.bfloat16, "half": torch.float16, "float": torch.float32}


def resolve_dtype(value: Any) -> torch.dtype | str | None:
    """``torch_dtype`` argument -> torch.dtype, "auto" or None, with a clear error."""
    if value is None or value == "auto" or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.replace("torch.", "") in _DTYPES:
        return _DTYPES[value.replace("torch.", "")]
    raise InvalidInputError(
        f"torch_dtype={value!r} is not supported; use 'auto', torch.float32, torch.bfloat16 "
        "or torch.float16"
    )


def resolve_device(device_map: Any) -> torch.device:
    """``device_map`` -> the one device a whole loaded model goes to (placement while loading,
    per module and under ``max_memory``, is :mod:`pretrained.dispatch`)."""
    if device_map is None:
        return torch.device("cpu")
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if set(device_map) != {""} or len(devices) != 1:
            raise InvalidInputError(
                f"device_map={device_map!r}: a model is placed per module while it loads "
                "(from_pretrained(path, device_map=...), or pipeline(model=path, device_map=...)); "
                "to move a loaded model pass 'auto', 'cpu', 'cuda:0' or {'': device}"
            )
        device_map = devices.pop()
    if device_map == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_map if not isinstance(device_map, int) else f"cuda:{device_map}")
    except (RuntimeError, TypeError):
        raise InvalidInputError(
            f"device_map={device_map!r} is not a device; use 'auto', 'cpu' or 'cuda:0'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device_map={device_map!r}: CUDA is not available on this "
                                "machine; use 'cpu' or 'auto'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InvalidInputError(f"device_map={device_map!r}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise InvalidInputError(f"device_map={device_map!r}: unsupported device type")
    return device
