"""GGUF files (llama.cpp's single-file format): header, metadata, tensor table, memory map.

Our own reader of the format (v2 and v3, little-endian): a header (magic ``GGUF``, version,
tensor and metadata counts), typed metadata key/values (arrays included), a table of tensor
infos (name, dims fastest-first, ggml type, offset), then the tensor data at the next multiple
of ``general.alignment`` (32 by default). The file is memory-mapped; a tensor is read and
dequantized only when asked for (:mod:`pretrained.gguf.dequant`). What the names and numbers
mean for a model is :mod:`pretrained.gguf.architectures`; the tokenizer is
:mod:`pretrained.gguf.tokenizer`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import numpy as np
import torch

from ..errors import CheckpointCorruptError, CheckpointError
from .dequant import GGML_TYPES, SUPPORTED_TYPES, dequantize, tensor_nbytes, type_name

if TYPE_CHECKING:
    from .architectures import GGUFCheckpoint, _Arch

__all__ = ["GGUFFile", "GGUFTensorInfo", "load_gguf", "gguf_path", "resolve_gguf",
           "gguf_config_dict"]

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
# metadata value types: id -> (struct format, size); 8 = string and 9 = array are variable
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NP_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
               10: "<u8", 11: "<i8", 12: "<f8"}



class GGUFTensorInfo(NamedTuple):
    """One tensor of the file: ``shape`` in torch order, ``offset`` from the file's start."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)


class _Reader:
    """Bounds-checked little-endian reads over the mapped file; any overrun means truncation."""

    def __init__(self, buf: np.ndarray, path: Path) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)
        self.mv = memoryview(buf)

    def need(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.size:
            raise CheckpointCorruptError(
                f"{self.path}: truncated GGUF file: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes. Download or convert the file again."
            )
        start = self.pos
        self.pos += n
        return start

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, n = _SCALARS[vtype]
        return struct.unpack_from(fmt, self.buf, self.need(n, what))[0]

    def string(self, what: str) -> str:
        n = self.scalar(10, what)
        start = self.need(n, what)
        try:
            return str(self.mv[start:start + n], "utf-8")
        except UnicodeDecodeError:
            raise CheckpointCorruptError(
                f"{self.path}: {what} at offset {start} is not valid UTF-8; the file is corrupt"
            ) from None

    def strings(self, count: int, key: str) -> list[str]:
        """An array of strings (a vocabulary: ~100k of them), in one tight loop."""
        if count > self.size:
            self.need(count, f"metadata array {key!r}")
        mv, unpack, pos, out = self.mv, struct.unpack_from, self.pos, []
        try:
            for _ in range(count):
                (n,) = unpack("<Q", mv, pos)
                pos += 8 + n
                out.append(str(mv[pos - n:pos], "utf-8"))
        except struct.error:
            pos = self.size + 1
        except UnicodeDecodeError:
            raise CheckpointCorruptError(
                f"{self.path}: metadata array {key!r} holds a string that is not valid UTF-8; "
                "the file is corrupt") from None
        if pos > self.size:  # a slice past the end is silently short: check once at the end
            self.need(pos - self.pos, f"metadata array {key!r}")
        self.pos = pos
        return out

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        if depth > MAX_NESTING:   # llama.cpp writes one level; thousands would exhaust the stack
            raise CheckpointCorruptError(
                f"{self.path}: metadata {key!r} nests arrays more than {MAX_NESTING} deep; the "
                "file is corrupt or hostile")
        if vtype in _SCALARS:
            v = self.scalar(vtype, f"metadata {key!r}")
            return bool(v) if vtype == 7 else v
        if vtype == 8:
            return self.string(f"metadata {key!r}")
        if vtype == 9:
            etype = self.scalar(4, f"metadata {key!r}")
            count = self.scalar(10, f"metadata {key!r}")
            if etype in _SCALARS:
                start = self.need(count * _SCALARS[etype][1], f"metadata array {key!r}")
                arr = np.frombuffer(self.buf, dtype=_NP_SCALARS[etype], count=count, offset=start)
                return arr.astype(bool).tolist() if etype == 7 else arr.tolist()
            if etype == 8:
                return self.strings(count, key)
            if etype == 9:
                return [self.value(9, key, depth + 1) for _ in range(count)]
            raise CheckpointCorruptError(
                f"{self.path}: metadata {key!r} is an array of unknown type {etype}; the file "
                "is corrupt or from a newer GGUF version")
        raise CheckpointCorruptError(
            f"{self.path}: metadata {key!r} has unknown value type {vtype}; the file is corrupt "
            "or from a newer GGUF version")


MAX_NESTING = 16   # arrays of arrays in metadata (llama.cpp's files nest at most one level)


class GGUFFile:
    """A parsed GGUF file: ``metadata`` (key -> value), ``tensor_infos`` (name -> info).

    Use :func:`load_gguf` to open one. Nothing but the header and metadata is read until a
    tensor is asked for."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            self._buf = (np.memmap(self.path, dtype=np.uint8, mode="c") if size
                         else np.zeros(0, np.uint8))
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot open the GGUF file ({e.strerror})") from None
        r = _Reader(self._buf, self.path)
        magic = bytes(self._buf[:4])
        if magic != _MAGIC:
            if len(magic) < 4:
                r.need(4, "the GGUF magic")
            raise CheckpointCorruptError(
                f"{self.path}: not a GGUF file: it starts with {magic!r}, not {_MAGIC!r}. Pass "
                "a .gguf file written by llama.cpp (or gguf-py) as gguf_file=")
        r.pos = 4
        self.version = r.scalar(4, "the version")
        if self.version not in _VERSIONS:
            endian = (" (it looks big-endian; only little-endian files are supported)"
                      if struct.unpack("<I", struct.pack(">I", self.version))[0] in _VERSIONS else "")
            raise CheckpointError(
                f"{self.path}: GGUF version {self.version} is not supported{endian}; this reader "
                f"handles versions {', '.join(map(str, _VERSIONS))}. Convert the model again with "
                "a recent llama.cpp (convert_hf_to_gguf.py).")
        n_tensors = r.scalar(10, "the tensor count")
        n_kv = r.scalar(10, "the metadata count")
        if n_tensors > r.size or n_kv > r.size:
            raise CheckpointCorruptError(
                f"{self.path}: the header claims {n_tensors} tensors and {n_kv} metadata entries, "
                f"more than a {r.size}-byte file can hold; the file is corrupt")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string("a metadata key")
            self.metadata[key] = r.value(r.scalar(4, f"the type of metadata {key!r}"), key)
        alignment = self.metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise CheckpointCorruptError(
                f"{self.path}: general.alignment is {alignment!r}; it must be a power of two")
        raw_infos = []
        for _ in range(n_tensors):
            name = r.string("a tensor name")
            n_dims = r.scalar(4, f"the dims of tensor {name!r}")
            if n_dims > 8:
                raise CheckpointCorruptError(f"{self.path}: tensor {name!r} has {n_dims} dims; "
                                             "the file is corrupt")
            dims = [r.scalar(10, f"the dims of tensor {name!r}") for _ in range(n_dims)]
            ggml_type = r.scalar(4, f"the type of tensor {name!r}")
            offset = r.scalar(10, f"the offset of tensor {name!r}")
            raw_infos.append((name, tuple(reversed(dims)), ggml_type, offset))
        self.data_offset = -(-r.pos // alignment) * alignment
        self.tensor_infos: dict[str, GGUFTensorInfo] = {}
        for name, shape, ggml_type, offset in raw_infos:
            n_values = int(np.prod(shape, dtype=np.int64)) if shape else 1
            nbytes = tensor_nbytes(ggml_type, n_values)
            block = GGML_TYPES.get(ggml_type, ("", 1, 0))[1]
            if shape and shape[-1] % block:
                raise CheckpointCorruptError(
                    f"{self.path}: tensor {name!r} has rows of {shape[-1]} values, not a multiple "
                    f"of the {block}-value blocks of its type {type_name(ggml_type)}; the file is "
                    "corrupt")
            start = self.data_offset + offset
            if nbytes is not None and start + nbytes > r.size:
                raise CheckpointCorruptError(
                    f"{self.path}: truncated GGUF file: tensor {name!r} ends at byte "
                    f"{start + nbytes}, but the file has {r.size} bytes. Download or convert the "
                    "file again.")
            self.tensor_infos[name] = GGUFTensorInfo(name, shape, ggml_type, start, nbytes or 0)

    def __repr__(self) -> str:
        return (f"GGUFFile({str(self.path)!r}, v{self.version}, {self.architecture!r}, "
                f"{len(self.tensor_infos)} tensors)")

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise CheckpointCorruptError(f"{self.path}: the metadata has no general.architecture")
        return arch

    # --- tensors ---------------------------------------------------------------------------
    def raw(self, name: str) -> torch.Tensor:
        """The stored bytes of one tensor (a uint8 view of the mapped file, not a copy)."""
        info = self.tensor_infos[name]
        return torch.from_numpy(self._buf[info.offset:info.offset + info.nbytes])

    def read(self, name: str, dtype: torch.dtype = torch.float32, *,
             raw: np.ndarray | None = None) -> torch.Tensor:
        """One tensor as stored (GGUF name, GGUF layout), dequantized to ``dtype``
        (from ``raw`` instead of the file's bytes when given)."""
        info = self.tensor_infos[name]
        self._check_type(info)
        return dequantize(self.raw(name) if raw is None else raw, info.ggml_type, info.shape, dtype)

    def _check_type(self, info: GGUFTensorInfo) -> None:
        if info.type_name not in SUPPORTED_TYPES:
            raise CheckpointError(
                f"{self.path}: tensor {info.name!r} is stored as {info.type_name}, which "
                f"pretrained cannot dequantize; supported types: {', '.join(SUPPORTED_TYPES)}. "
                "Re-quantize the model to one of them (llama-quantize).")

    def _arch(self) -> "_Arch":
        from .architectures import arch_for

        return arch_for(self)

    def config_dict(self) -> dict[str, Any]:
        """The model's config as a ``config.json`` dict (``model_type`` included)."""
        return self._arch().config(self)

    def hf_names(self) -> dict[str, str]:
        """GGUF tensor name -> the model's state-dict key (unknown names are kept as they are)."""
        arch = self._arch()
        return {n: arch.rename(n) for n in self.tensor_infos if n not in arch.skip}

    def checkpoint(self) -> "GGUFCheckpoint":
        """A Checkpoint-like view for :func:`pretrained.io.loading.load_checkpoint_into`."""
        from .architectures import GGUFCheckpoint

        return GGUFCheckpoint(self)

    def tensors(self, dtype: torch.dtype = torch.float32) -> Iterator[tuple[str, torch.Tensor]]:
        """``(state-dict key, tensor)`` one at a time, dequantized and put in HF layout."""
        ckpt = self.checkpoint()
        for key in ckpt.keys():
            yield key, ckpt.get(key).to(dtype)

    # --- tokenizer -------------------------------------------------------------------------
    def tokenizer(self):
        """``(tokenizers.Tokenizer, tokenizer_config dict)`` from the ``tokenizer.*`` metadata."""
        from .tokenizer import build_tokenizer

        return build_tokenizer(self.metadata, self.path)


# --- opening ------------------------------------------------------------------------------------
_CACHE: dict[tuple, GGUFFile] = {}


def load_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open and parse a GGUF file (the last one opened is kept, so the Auto classes reading
    the config and then the weights parse it once)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise CheckpointError(f"{p}: cannot open the GGUF file ({e.strerror})") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    f = _CACHE.get(key)
    if f is None:
        f = GGUFFile(p)
        _CACHE.clear()
        _CACHE[key] = f
    return f


def gguf_path(files: Any, gguf_file: str | os.PathLike) -> Path:
    """The local path of ``gguf_file`` in a resolved model (:class:`pretrained.io.hub.ModelFiles`),
    or, as the reference allows, an existing file path given directly."""
    if not isinstance(gguf_file, (str, os.PathLike)) or not os.fspath(gguf_file):
        raise CheckpointError(f"gguf_file must be the name of a .gguf file, got {gguf_file!r}")
    direct = Path(gguf_file).expanduser()
    if direct.is_absolute() and direct.is_file():
        return direct
    path = files.get(os.fspath(gguf_file))
    if path is not None:
        return path
    if direct.is_file():
        return direct
    folder = files.folder
    have = sorted(p.name for p in Path(folder).glob("*.gguf")) if folder is not None and Path(
        folder).is_dir() else []
    raise CheckpointError(
        f"{files.name!r} has no file {os.fspath(gguf_file)!r} ({files.describe()}); "
        + (f"GGUF files there: {', '.join(have)}" if have else "it holds no .gguf file"))


def resolve_gguf(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike,
                 **hub_kw: Any) -> Path:
    """The local path of ``gguf_file`` inside a model folder or hub repo."""
    from ..io.hub import resolve

    return gguf_path(resolve(name_or_path, **hub_kw), gguf_file)


def gguf_config_dict(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike,
                     **hub_kw: Any) -> dict[str, Any]:
    """The config dict of ``gguf_file`` in a model folder (for the Auto classes)."""
    return load_gguf(resolve_gguf(name_or_path, gguf_file, **hub_kw)).config_dict()
