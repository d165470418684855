"""Writing GGUF files (v3, little-endian): typed metadata, the tensor table, aligned data.

:func:`write_gguf` is the format only; what a model's config, weights and tokenizer become is
:mod:`pretrained.convert.gguf` (``model.save_pretrained(out, gguf="q8_0")``).

Example::

    >>> import torch
    >>> from pathlib import Path
    >>> from tempfile import TemporaryDirectory
    >>> from pretrained.gguf.reader import GGUFFile
    >>> with TemporaryDirectory() as d:
    ...     p = write_gguf(Path(d) / "t.gguf", {"general.architecture": "llama"},
    ...                    [("x", 0, (2, 2), torch.ones(2, 2).view(torch.uint8).reshape(-1))])
    ...     GGUFFile(p).read("x").tolist()
    [[1.0, 1.0], [1.0, 1.0]]
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .dequant import GGML_BF16, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0

__all__ = ["write_gguf", "EXPORT_TYPES"]

#: the ``gguf=`` names -> (ggml type of the matrices, llama.cpp's general.file_type)
EXPORT_TYPES = {"f32": (GGML_F32, 0), "f16": (GGML_F16, 1), "bf16": (GGML_BF16, 32),
                "q8_0": (GGML_Q8_0, 7), "q4_0": (GGML_Q4_0, 2), "q4_1": (GGML_Q4_1, 3)}
ALIGNMENT = 32

# --- the file format -------------------------------------------------------------------------
_U32, _I32, _F32, _BOOL, _STR, _ARR = 4, 5, 6, 7, 8, 9


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, value: Any) -> bytes:
    """One metadata entry, typed as llama.cpp reads it: bool, uint32 (a non-negative int),
    int32 (a negative one), float32, string, and arrays of strings, int32 or float32."""
    if isinstance(value, bool):
        return _str(key) + struct.pack("<IB", _BOOL, value)
    if isinstance(value, int):
        return _str(key) + (struct.pack("<II", _U32, value) if value >= 0 else struct.pack("<Ii", _I32, value))
    if isinstance(value, float):
        return _str(key) + struct.pack("<If", _F32, value)
    if isinstance(value, str):
        return _str(key) + struct.pack("<I", _STR) + _str(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return _str(key) + struct.pack("<IIQ", _ARR, _STR, len(value)) + b"".join(map(_str, value))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return _str(key) + struct.pack("<IIQ", _ARR, _I32, len(value)) + np.asarray(value, "<i4").tobytes()
        if all(isinstance(v, (int, float)) for v in value):
            return _str(key) + struct.pack("<IIQ", _ARR, _F32, len(value)) + np.asarray(value, "<f4").tobytes()
    raise InvalidInputError(f"GGUF metadata {key!r}: cannot write a value of type {type(value).__name__}")


def write_gguf(path: str | os.PathLike, metadata: dict[str, Any],
               tensors: list[tuple[str, int, tuple[int, ...], torch.Tensor]]) -> Path:
    """Write a GGUF v3 file: ``metadata`` (key -> value, see :func:`_kv` for the types) and
    ``tensors`` as ``(name, ggml type, torch-order shape, stored bytes as uint8)``. Written to a
    temporary file beside ``path`` and moved into place, so a failure leaves no partial file."""
    path = Path(path)
    meta = {"general.alignment": ALIGNMENT, **metadata}
    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(meta))]
    head += [_kv(k, v) for k, v in meta.items()]
    offset = 0
    for name, ggml_type, shape, data in tensors:
        dims = tuple(reversed(shape))
        head.append(_str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset))
        offset += -(-data.numel() // ALIGNMENT) * ALIGNMENT
    header = b"".join(head)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + b"\0" * (-len(header) % ALIGNMENT))
            for _, _, _, data in tensors:
                raw = data.contiguous().numpy().tobytes()
                f.write(raw + b"\0" * (-len(raw) % ALIGNMENT))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
