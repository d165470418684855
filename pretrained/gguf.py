"""GGUF checkpoints (llama.cpp's single-file format): metadata, config, weights, tokenizer.

Our own reader of the format (v2 and v3, little-endian): a header (magic ``GGUF``, version,
tensor and metadata counts), typed metadata key/values (arrays included), a table of tensor
infos (name, dims fastest-first, ggml type, offset), then the tensor data at the next multiple
of ``general.alignment`` (32 by default). The file is memory-mapped; a tensor is read and
dequantized only when asked for (:mod:`pretrained.gguf_quants`).

:class:`GGUFFile` turns llama.cpp's names back into a model's: hyperparameters into a
config dict (:meth:`~GGUFFile.config_dict`), tensor names into state-dict keys, undoing what
the converter did to the weights (Llama's Q/K row order for rotary embeddings, GPT-2's Conv1D
transposition). :meth:`~GGUFFile.checkpoint` gives what :func:`pretrained.loading.load_checkpoint_into`
streams into a meta-built model, one tensor at a time.

Example::

    >>> from pretrained.gguf import load_gguf                                  # doctest: +SKIP
    >>> f = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")                       # doctest: +SKIP
    >>> f.config_dict()["num_hidden_layers"]                                   # doctest: +SKIP
    30
    >>> name, weight = next(f.tensors())                                       # doctest: +SKIP
    >>> name, weight.shape                                                     # doctest: +SKIP
    ('model.embed_tokens.weight', torch.Size([49152, 576]))
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from .errors import CheckpointCorruptError, CheckpointError, UnknownModelTypeError
from .gguf_quants import (GGML_TYPES, SUPPORTED_TYPES, dequantize, tensor_nbytes,
                          type_name)

__all__ = ["GGUFFile", "GGUFTensorInfo", "GGUFCheckpoint", "load_gguf", "resolve_gguf",
           "SUPPORTED_ARCHITECTURES", "gguf_path", "gguf_config_dict"]

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

    def value(self, vtype: int, key: str) -> Any:
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
                return [self.value(9, key) for _ in range(count)]
            raise CheckpointCorruptError(
                f"{self.path}: metadata {key!r} is an array of unknown type {etype}; the file "
                "is corrupt or from a newer GGUF version")
        raise CheckpointCorruptError(
            f"{self.path}: metadata {key!r} has unknown value type {vtype}; the file is corrupt "
            "or from a newer GGUF version")


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
        return _arch_for(self)

    def config_dict(self) -> dict[str, Any]:
        """The model's config as a ``config.json`` dict (``model_type`` included)."""
        return self._arch().config(self)

    def hf_names(self) -> dict[str, str]:
        """GGUF tensor name -> the model's state-dict key (unknown names are kept as they are)."""
        arch = self._arch()
        return {n: arch.rename(n) for n in self.tensor_infos if n not in arch.skip}

    def checkpoint(self) -> "GGUFCheckpoint":
        """A Checkpoint-like view for :func:`pretrained.loading.load_checkpoint_into`."""
        return GGUFCheckpoint(self)

    def tensors(self, dtype: torch.dtype = torch.float32) -> Iterator[tuple[str, torch.Tensor]]:
        """``(state-dict key, tensor)`` one at a time, dequantized and put in HF layout."""
        ckpt = self.checkpoint()
        for key in ckpt.keys():
            yield key, ckpt.get(key).to(dtype)

    # --- tokenizer -------------------------------------------------------------------------
    def tokenizer(self):
        """``(tokenizers.Tokenizer, tokenizer_config dict)`` from the ``tokenizer.*`` metadata."""
        from .gguf_tokenizer import build_tokenizer

        return build_tokenizer(self.metadata, self.path)


# --- architectures ------------------------------------------------------------------------------
class _Arch:
    """How one llama.cpp architecture maps onto a model type: config keys and tensor names."""

    def __init__(self, model_type: str, config_keys: dict[str, str], names: dict[str, str],
                 globals_: dict[str, str], transposed: tuple[str, ...] = (),
                 permute_qk: bool = False, skip: tuple[str, ...] = ()) -> None:
        self.model_type, self.config_keys, self.names = model_type, config_keys, names
        self.globals, self.transposed, self.permute_qk, self.skip = (
            globals_, transposed, permute_qk, skip)

    def rename(self, name: str) -> str:
        base, dot, suffix = name.rpartition(".")
        if not dot:
            return name
        if base in self.globals:
            return f"{self.globals[base]}.{suffix}"
        m = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
        if m and m.group(2) in self.names:
            return self.names[m.group(2)].format(i=m.group(1)) + "." + suffix
        return name

    def config(self, f: GGUFFile) -> dict[str, Any]:
        arch, md = f.architecture, f.metadata
        out: dict[str, Any] = {"model_type": self.model_type}
        for key, field in self.config_keys.items():
            if f"{arch}.{key}" in md and field not in out:
                out[field] = md[f"{arch}.{key}"]
        if "vocab_size" not in out:
            tokens = md.get("tokenizer.ggml.tokens")
            if isinstance(tokens, list):
                out["vocab_size"] = len(tokens)
            elif "token_embd.weight" in f.tensor_infos:
                out["vocab_size"] = f.tensor_infos["token_embd.weight"].shape[0]
        # llama.cpp writes the output projection only when it is not the embedding matrix
        out["tie_word_embeddings"] = "output.weight" not in f.tensor_infos
        # the file's ids (the reference keeps its config class defaults, e.g. 50256 for gpt2)
        for field in ("bos_token_id", "eos_token_id"):
            if isinstance(md.get(f"tokenizer.ggml.{field}"), int):
                out[field] = md[f"tokenizer.ggml.{field}"]
        if self.model_type == "gpt2" and out.get("n_inner") == 4 * out.get("n_embd", -1):
            out["n_inner"] = None  # the reference's default, the same width
        scaling = md.get(f"{arch}.rope.scaling.type")
        if scaling in ("linear", "yarn") and md.get(f"{arch}.rope.scaling.factor"):
            rope = {"rope_type": scaling, "factor": float(md[f"{arch}.rope.scaling.factor"])}
            orig = md.get(f"{arch}.rope.scaling.original_context_length")
            if scaling == "yarn" and orig:
                rope["original_max_position_embeddings"] = int(orig)
            out["rope_scaling"] = rope
        return out


_LLAMA_KEYS = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
    "attention.key_length": "head_dim", "rope.dimension_count": "head_dim",
    "rope.freq_base": "rope_theta", "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size",
}
_LLAMA_NAMES = {
    "attn_norm": "model.layers.{i}.input_layernorm",
    "attn_q": "model.layers.{i}.self_attn.q_proj", "attn_k": "model.layers.{i}.self_attn.k_proj",
    "attn_v": "model.layers.{i}.self_attn.v_proj",
    "attn_output": "model.layers.{i}.self_attn.o_proj",
    "attn_q_norm": "model.layers.{i}.self_attn.q_norm",
    "attn_k_norm": "model.layers.{i}.self_attn.k_norm",
    "ffn_norm": "model.layers.{i}.post_attention_layernorm",
    "ffn_gate": "model.layers.{i}.mlp.gate_proj", "ffn_up": "model.layers.{i}.mlp.up_proj",
    "ffn_down": "model.layers.{i}.mlp.down_proj",
}
_LLAMA_GLOBALS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                  "output": "lm_head"}
_GPT2_KEYS = {
    "block_count": "n_layer", "context_length": "n_positions", "embedding_length": "n_embd",
    "feed_forward_length": "n_inner", "attention.head_count": "n_head",
    "attention.layer_norm_epsilon": "layer_norm_epsilon", "vocab_size": "vocab_size",
}
_GPT2_NAMES = {
    "attn_norm": "transformer.h.{i}.ln_1", "attn_qkv": "transformer.h.{i}.attn.c_attn",
    "attn_output": "transformer.h.{i}.attn.c_proj", "ffn_norm": "transformer.h.{i}.ln_2",
    "ffn_up": "transformer.h.{i}.mlp.c_fc", "ffn_down": "transformer.h.{i}.mlp.c_proj",
}
_GPT2_GLOBALS = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
                 "output_norm": "transformer.ln_f", "output": "lm_head"}

# llama.cpp architecture name -> mapping. Only llama permutes Q/K rows: its converter reorders
# them for llama.cpp's rotary layout; qwen2/qwen3 files keep the HF order.
_ARCHS: dict[str, _Arch] = {
    "llama": _Arch("llama", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS, permute_qk=True,
                   skip=("rope_freqs.weight",)),
    "qwen2": _Arch("qwen2", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS),
    "qwen3": _Arch("qwen3", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS),
    "gpt2": _Arch("gpt2", _GPT2_KEYS, _GPT2_NAMES, _GPT2_GLOBALS,
                  transposed=("attn_qkv.weight", "attn_output.weight", "ffn_up.weight",
                              "ffn_down.weight")),
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)


def _arch_for(f: GGUFFile) -> _Arch:
    arch = _ARCHS.get(f.architecture)
    if arch is None:
        raise UnknownModelTypeError(
            f"{f.path}: GGUF architecture {f.architecture!r} is not supported by pretrained; "
            f"supported GGUF architectures: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return arch


# --- the Checkpoint-like view -------------------------------------------------------------------
class GGUFCheckpoint:
    """What :func:`pretrained.loading.load_checkpoint_into` reads: HF keys, HF shapes, and
    each tensor dequantized to float32 in HF layout when asked for.

    Every tensor's type is checked up front, so an unsupported quantization fails before the
    model is built rather than halfway through loading it."""

    format = "gguf"

    def __init__(self, f: GGUFFile) -> None:
        self.file = f
        self.paths = [f.path]
        arch = f._arch()
        self._arch = arch
        self._gguf_name = {hf: g for g, hf in f.hf_names().items()}
        for g in self._gguf_name.values():
            f._check_type(f.tensor_infos[g])
        md = f.metadata
        self._heads = md.get(f"{f.architecture}.attention.head_count")
        kv = md.get(f"{f.architecture}.attention.head_count_kv", self._heads)
        self._kv_heads = kv

    def __repr__(self) -> str:
        return f"GGUFCheckpoint({str(self.file.path)!r}, {len(self._gguf_name)} tensors)"

    def keys(self) -> list[str]:
        return list(self._gguf_name)

    def path_of(self, key: str) -> Path:
        return self.file.path

    def _transposed(self, gguf_name: str) -> bool:
        return gguf_name.endswith(self._arch.transposed) and len(
            self.file.tensor_infos[gguf_name].shape) == 2

    def shape(self, key: str) -> tuple[int, ...]:
        g = self._gguf_name[key]
        shape = self.file.tensor_infos[g].shape
        return tuple(reversed(shape)) if self._transposed(g) else shape

    def get(self, key: str) -> torch.Tensor:
        g = self._gguf_name[key]
        f, info = self.file, self.file.tensor_infos[g]
        raw = f.raw(g).numpy()
        if self._arch.permute_qk and (".attn_q." in g or ".attn_k." in g):
            # a row permutation commutes with dequantizing (blocks never cross rows), so it is
            # done on the stored bytes, several times smaller than the float32 result
            heads = self._heads if ".attn_q." in g else self._kv_heads
            raw = _unpermute_rows(raw.reshape(info.shape[0], -1), heads, f.path, g).reshape(-1)
        t = f.read(g, torch.float32, raw=raw)
        if self._transposed(g):
            return torch.from_numpy(np.ascontiguousarray(t.numpy().T))
        if np.shares_memory(t.numpy(), f._buf):  # F32 as stored: own it, not a view of the file
            t = t.clone()
        return t

    def first_float_dtype(self) -> torch.dtype:
        # The reference dequantizes llama/gpt2 GGUF weights to float32 whatever they were stored as.
        return torch.float32

    def close(self) -> None:
        pass


def _unpermute_rows(rows: np.ndarray, heads: Any, path: Path, name: str) -> np.ndarray:
    """Undo llama.cpp's row order for rotary embeddings.

    Its converter interleaves each head's two halves of rows, ``[x0, x_h, x1, x_h+1, ...]``
    (HF: ``[x0, x1, ..., x_h, ...]``); this puts them back. ``rows`` is (rows, anything)."""
    n = rows.shape[0]
    if not isinstance(heads, int) or heads <= 0 or n % (2 * heads):
        raise CheckpointCorruptError(
            f"{path}: cannot undo the rotary row order of {name!r}: {n} rows do not split "
            f"into {heads!r} heads of pairs; the head counts in the metadata are wrong")
    half = n // heads // 2
    return np.ascontiguousarray(
        rows.reshape(heads, half, 2, -1).swapaxes(1, 2)).reshape(rows.shape)


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
    """The local path of ``gguf_file`` in a resolved model (:class:`pretrained.hub.ModelFiles`),
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
    from .hub import resolve

    return gguf_path(resolve(name_or_path, **hub_kw), gguf_file)


def gguf_config_dict(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike,
                     **hub_kw: Any) -> dict[str, Any]:
    """The config dict of ``gguf_file`` in a model folder (for the Auto classes)."""
    return load_gguf(resolve_gguf(name_or_path, gguf_file, **hub_kw)).config_dict()
