"""Weights on disk -> tensors in a module built on the meta device.

Formats: ``model.safetensors``, sharded ``model.safetensors.index.json``, ``pytorch_model.bin``
and its sharded index. Pickles are read with ``torch.load(weights_only=True)`` only, so a
crafted file cannot run code. Tensors are read one at a time (safetensors memory-maps the file)
and assigned in place, so peak memory stays near one copy of the weights.

Every failure names the file and, where there is one, the tensor.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..config import CONFIG_NAME, load_json
from ..errors import (
    CheckpointCorruptError,
    CheckpointError,
    InvalidInputError,
    ModelNotFoundError,
    ShapeMismatchError,
    UnsafeCheckpointError,
)
from .hub import ModelFiles, check_relative_filename

logger = logging.getLogger("pretrained")

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"

# Older checkpoints (TF-era BERT) name LayerNorm parameters gamma/beta.
_LEGACY_RENAMES = ((re.compile(r"\.gamma$"), ".weight"), (re.compile(r"\.beta$"), ".bias"))


# --- reading ----------------------------------------------------------------------------------
class Checkpoint:
    """Read-only view of a (possibly sharded) checkpoint: names, shapes and tensors on demand."""

    def __init__(self, paths: list[Path], fmt: str, key_to_path: dict[str, Path]) -> None:
        self.paths = paths
        self.format = fmt  # "safetensors" | "pickle"
        self._key_to_path = key_to_path
        self._handles: dict[Path, object] = {}

    def __repr__(self) -> str:
        return f"Checkpoint({self.format}, {len(self.paths)} file(s), {len(self._key_to_path)} tensors)"

    def keys(self) -> list[str]:
        return list(self._key_to_path)

    def path_of(self, key: str) -> Path:
        return self._key_to_path[key]

    def _open(self, path: Path):
        handle = self._handles.get(path)
        if handle is None:
            handle = _open_safetensors(path) if self.format == "safetensors" else _load_pickle(path)
            self._handles[path] = handle
        return handle

    def shape(self, key: str) -> tuple[int, ...]:
        path = self._key_to_path[key]
        handle = self._open(path)
        if self.format == "safetensors":
            return tuple(handle.get_slice(key).get_shape())
        return tuple(handle[key].shape)

    def get(self, key: str) -> torch.Tensor:
        path = self._key_to_path[key]
        handle = self._open(path)
        try:
            if self.format == "safetensors":
                return handle.get_tensor(key)
            return handle.pop(key)  # drop our reference: the model now owns it
        except Exception as e:  # safetensors raises its own error type for bad offsets
            raise CheckpointCorruptError(f"{path}: cannot read tensor {key!r}: {e}") from None

    def first_float_dtype(self) -> torch.dtype | None:
        for key in self._key_to_path:
            handle = self._open(self._key_to_path[key])
            if self.format == "safetensors":
                dt = _SAFE_DTYPES.get(handle.get_slice(key).get_dtype())
            else:
                dt = handle[key].dtype
            if dt is not None and dt.is_floating_point:
                return dt
        return None

    def close(self) -> None:
        self._handles.clear()


_SAFE_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "F64": torch.float64}


def _open_safetensors(path: Path):
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError, or OSError for unreadable files
        raise CheckpointCorruptError(
            f"{path}: not a valid safetensors file ({e}). The file is truncated or corrupt: "
            "download it again or re-save the model."
        ) from None


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle holds more than tensors, and loading it could "
            f"run code ({str(e).splitlines()[0]}). Convert the checkpoint to safetensors with "
            "the tool that made it, from a source you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointCorruptError(
            f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]}); the file is "
            "truncated or corrupt: download it again."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise UnsafeCheckpointError(
            f"{path}: refused: expected a mapping of names to tensors, found "
            f"{type(obj).__name__}; this is not a model state dict"
        )
    return obj


def _read_index(index_path: Path) -> dict[str, str]:
    try:
        data = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointCorruptError(f"{index_path}: not a valid shard index ({e})") from None
    for shard in set(weight_map.values()):
        try:
            check_relative_filename(str(shard))
        except InvalidInputError:
            raise CheckpointCorruptError(
                f"{index_path}: refusing shard name {shard!r}: shard files must lie inside the "
                "model folder"
            ) from None
    return weight_map


def open_checkpoint(files: ModelFiles, *, use_safetensors: bool | None = None) -> Checkpoint:
    """Find and open the weights of a model: safetensors first, then pickles (unless
    ``use_safetensors=True``). Raises :class:`CheckpointError` naming what was looked for."""
    candidates = [(SAFE_WEIGHTS, False, "safetensors"), (SAFE_INDEX, True, "safetensors")]
    if use_safetensors is not True:
        candidates += [(PT_WEIGHTS, False, "pickle"), (PT_INDEX, True, "pickle")]
    if use_safetensors is False:
        candidates = candidates[2:] + candidates[:2]
    for name, sharded, fmt in candidates:
        path = files.get(name)
        if path is None:
            continue
        if not sharded:
            ckpt = Checkpoint([path], fmt, {})
            handle = ckpt._open(path)
            keys = handle.keys()
            ckpt._key_to_path = {k: path for k in keys}
            return ckpt
        weight_map = _read_index(path)
        shard_paths: dict[str, Path] = {}
        for shard in sorted(set(weight_map.values())):
            p = files.get(shard)
            if p is None:
                raise CheckpointCorruptError(
                    f"{path}: names shard {shard!r}, which is missing from {files.name!r}; "
                    "download the model again"
                )
            shard_paths[shard] = p
        ckpt = Checkpoint(list(shard_paths.values()), fmt, {})
        key_to_path = {}
        for shard, p in shard_paths.items():
            for k in ckpt._open(p).keys():
                key_to_path[k] = p
        for k, shard in weight_map.items():
            if key_to_path.get(k) != shard_paths[shard]:
                raise CheckpointCorruptError(
                    f"{path}: tensor {k!r} should be in shard {shard!r} but is not there"
                )
        ckpt._key_to_path = key_to_path
        return ckpt
    looked = [c[0] for c in candidates]
    hint = " (use_safetensors=True excluded the pickle formats)" if use_safetensors else ""
    raise CheckpointError(
        f"{files.name!r} has no weights file: looked for {', '.join(looked)}{hint}"
    )


class FolderWeights:
    """A model folder's ``config.json`` and weights (safetensors, else ``pytorch_model.bin``):
    one of the weight sources ``from_pretrained`` loads from. The other is a GGUF file
    (:class:`pretrained.gguf.GGUFFile`), with the same two methods: ``config_dict()`` and
    ``checkpoint()`` (what :func:`load_checkpoint_into` reads: ``keys``, ``shape``, ``get``,
    ``path_of``, ``first_float_dtype``, ``close``)."""

    def __init__(self, files: ModelFiles, use_safetensors: bool | None = None) -> None:
        self.files, self.use_safetensors = files, use_safetensors

    def config_dict(self) -> dict:
        path = self.files.get(CONFIG_NAME)
        if path is None:
            raise ModelNotFoundError(f"{self.files.name!r} has no {CONFIG_NAME}; is it a model folder?")
        return load_json(path)

    def checkpoint(self) -> Checkpoint:
        return open_checkpoint(self.files, use_safetensors=self.use_safetensors)


def cast_to(dtype: torch.dtype, device: torch.device):
    """The default per-tensor step of :func:`load_checkpoint_into`: floating-point tensors to
    ``dtype`` on ``device``, others (integer buffers) to ``device`` only. A quantizing load
    passes its own step (name, tensor) -> tensor instead."""
    def convert(name: str, t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

    return convert


# --- assigning --------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What happened while loading, as the reference reports it."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"missing_keys": self.missing_keys, "unexpected_keys": self.unexpected_keys,
                "mismatched_keys": self.mismatched_keys}


def _slots(model: nn.Module) -> list[list[str]]:
    """Each distinct parameter/buffer with all the names it has (tied weights share one)."""
    by_id: dict[int, list[str]] = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        by_id.setdefault(id(t), []).append(name)
    return list(by_id.values())


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if attr in owner._parameters:
        owner._parameters[attr] = value if isinstance(value, nn.Parameter) else nn.Parameter(
            value, requires_grad=value.is_floating_point()
        )
    else:
        owner._buffers[attr] = value


def checkpoint_key_map(model_names: Iterable[str], ckpt_keys: Iterable[str],
                       prefix: str, model_has_prefix: bool) -> dict[str, str]:
    """Map model parameter names to checkpoint keys, adding or stripping the base-model prefix
    (a head model loads a bare-encoder checkpoint and vice versa) and legacy gamma/beta names."""
    ckpt = {}
    for k in ckpt_keys:
        norm = k
        for pattern, repl in _LEGACY_RENAMES:
            norm = pattern.sub(repl, norm)
        ckpt[norm] = k
    ckpt_has_prefix = bool(prefix) and any(k.startswith(prefix + ".") for k in ckpt)
    out = {}
    for name in model_names:
        cand = name
        if prefix and model_has_prefix and not ckpt_has_prefix and name.startswith(prefix + "."):
            cand = name[len(prefix) + 1:]
        elif prefix and not model_has_prefix and ckpt_has_prefix:
            cand = f"{prefix}.{name}"
            if cand not in ckpt:   # a backbone's file can hold both (Swin's: embeddings.*, swin.layernorm.*)
                cand = name
        if cand in ckpt:
            out[name] = ckpt[cand]
    return out


def load_checkpoint_into(
    model: nn.Module,
    ckpt: Checkpoint,
    *,
    dtype: torch.dtype,
    device: torch.device,
    prefix: str,
    ignore_unexpected: tuple[str, ...] = (),
    ignore_mismatched_sizes: bool = False,
    convert=None,
) -> LoadReport:
    """Stream every tensor of ``ckpt`` into ``model`` (built on meta), one at a time.

    Each tensor goes through ``convert(model_name, tensor)`` before it is assigned: by default
    :func:`cast_to` (floating-point tensors to ``dtype``, integer buffers keep theirs). Weights
    the checkpoint lacks are left on meta and listed in ``missing_keys`` for the caller to init.
    """
    convert = convert or cast_to(dtype, device)
    report = LoadReport()
    slots = _slots(model)
    all_names = [n for slot in slots for n in slot]
    model_has_prefix = bool(prefix) and hasattr(model, prefix)
    key_map = checkpoint_key_map(all_names, ckpt.keys(), prefix, model_has_prefix)
    used: set[str] = set()
    for names in slots:
        key = next((key_map[n] for n in names if n in key_map), None)
        if key is None:
            report.missing_keys.append(names[0])
            continue
        used.update(key_map[n] for n in names if n in key_map)
        expected = tuple(_get(model, names[0]).shape)
        got = ckpt.shape(key)
        if got != expected:
            if ignore_mismatched_sizes:
                report.mismatched_keys.append((names[0], got, expected))
                report.missing_keys.append(names[0])
                continue
            raise ShapeMismatchError(
                f"{ckpt.path_of(key)}: tensor {key!r} has shape {list(got)} but the model "
                f"expects {list(expected)} for {names[0]!r}. The config does not match the "
                "weights; fix config.json, or pass ignore_mismatched_sizes=True to "
                "re-initialise that weight."
            )
        first = _get(model, names[0])
        t = ckpt.get(key)
        if first.is_floating_point() and not t.is_floating_point():
            raise CheckpointCorruptError(
                f"{ckpt.path_of(key)}: tensor {key!r} holds {str(t.dtype).replace('torch.', '')} "
                f"values where the model has {str(first.dtype).replace('torch.', '')} weights "
                f"({names[0]!r}); the checkpoint is damaged or not this model's")
        t = convert(names[0], t)
        # (an integer parameter, such as packed GGUF blocks, cannot require grad)
        value = nn.Parameter(t, requires_grad=t.is_floating_point()) \
            if isinstance(first, nn.Parameter) else t
        for n in names:
            _set_tensor(model, n, value)
    ignore = [re.compile(p) for p in ignore_unexpected]
    for k in ckpt.keys():
        if k not in used and not any(p.search(k) for p in ignore):
            report.unexpected_keys.append(k)
    return report


def _get(model: nn.Module, name: str) -> torch.Tensor:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    return getattr(owner, attr)


def materialize_missing(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Give weights the checkpoint lacked real storage (zeros, so a bare bias that no module
    init covers, such as BERT's ``cls.predictions.bias``, starts at 0); the caller inits them."""
    for names_ in _slots(model):
        t = _get(model, names_[0])
        if t.device.type != "meta":
            continue
        new = torch.zeros(t.shape, device=device,
                          dtype=dtype if t.is_floating_point() else t.dtype)
        value = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
        for n in names_:
            _set_tensor(model, n, value)


def copy_out_of_checkpoint(model: nn.Module) -> None:
    """After quantizing while loading: copy the float tensors left (embeddings, norms, a head kept
    in float), which may still be views of the memory-mapped checkpoint, so that the mapping closes
    with the checkpoint and the pages of the weights just quantized (each read once) leave the
    resident set; then give the quantization's freed temporaries back to the system. Without this
    SmolLM2-135M in int8 held ~540 MiB after loading, twice its bfloat16 model."""
    from ..heap import release_freed_heap

    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.device.type == "cpu":
                p.data = p.data.clone()
        for module in model.modules():
            for name, b in module._buffers.items():
                if b is not None and b.is_floating_point() and b.device.type == "cpu":
                    module._buffers[name] = b.clone()
    release_freed_heap()
