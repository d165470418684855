"""Running a model whose blocks sit on several devices or on disk (the execution side of
``device_map``; the plan is :mod:`pretrained.placement`).

- **Disk weights** are memory-mapped, never read at load: straight from the checkpoint's
  safetensors file when it holds them in the dtype asked for (aligned), else from a raw copy
  written to ``offload_folder`` (``<name>.dat`` plus ``index.json``: dtype and shape per tensor).
  The mapping is private, so nothing is ever written back to a file. After each forward of a
  disk block the pages of the files it read are dropped from the process again
  (``madvise(MADV_DONTNEED)``, the whole file: the kernel maps neighbouring pages in on each
  fault, so a block's own byte range is not enough): a block is read from the page cache (or
  the disk) when it runs and is not resident in between.
- **Hooks** on each placed module move its inputs to the device it runs on. Blocks mapped to
  ``"cpu"`` or ``"disk"`` run on the model's main device (the first GPU of the map, else the
  CPU): when that is a GPU, their weights are copied there for their forward and dropped after,
  as the reference does; on the CPU they are used in place (read through the mapping). Disk
  weights do not require grad (a write would only reach the private mapping and be dropped).
  A placed module that is not a list element (embeddings, norm, head) returns its outputs on
  its input's device, so the parent's own code (``wte(ids) + wpe(pos)``) sees one device;
  layers hand their output to the next layer where it is. The model itself
  gets its inputs on the main device and returns its outputs on the caller's device; a KV cache
  keeps each layer's keys and values on the device that layer runs on.

Example (a disk copy of a small module, read only while it runs)::

    >>> import tempfile, torch
    >>> from torch import nn
    >>> from pretrained.offload import OffloadStore
    >>> lin = nn.Linear(4, 2)
    >>> store = OffloadStore(tempfile.mkdtemp())
    >>> w = store.write("lin.weight", lin.weight.detach())
    >>> bool(torch.equal(w, lin.weight)), w.data_ptr() != lin.weight.data_ptr()
    (True, True)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import mmap
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointCorruptError

__all__ = ["MappedFile", "OffloadStore", "attach_hooks", "move_to"]

_SAFE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
                "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class MappedFile:
    """A file mapped once, privately (copy-on-write: writes never reach the file); tensors are
    views of its bytes, so only the pages a computation touches are read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)

    def tensor(self, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        count = 1
        for n in shape:
            count *= n
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(self.map, dtype=dtype, count=count, offset=offset).view(shape)

    def release(self) -> None:
        """Drop the file's pages from this process (they are read again when used)."""
        if hasattr(self.map, "madvise"):
            self.map.madvise(mmap.MADV_DONTNEED)


def safetensors_header(path: Path) -> tuple[int, dict]:
    """(offset of the data, header) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return 8 + n, json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        raise CheckpointCorruptError(f"{path}: not a valid safetensors file ({e})") from None


class OffloadStore:
    """Where a model's disk tensors live: views of the checkpoint's own safetensors files where
    they can be, copies in ``folder`` otherwise. Remembers each tensor's bytes for release."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._files: dict[Path, MappedFile] = {}
        self._headers: dict[Path, tuple[int, dict]] = {}
        self.spans: dict[int, MappedFile] = {}   # data_ptr of a mapped tensor -> its file
        self.index: dict[str, dict] = {}

    def _file(self, path: Path) -> MappedFile:
        if path not in self._files:
            self._files[path] = MappedFile(path)
        return self._files[path]

    def mappable(self, path: Path, key: str, dtype: torch.dtype) -> bool:
        """Whether tensor ``key`` of safetensors file ``path`` can be used as it is stored."""
        if path not in self._headers:
            self._headers[path] = safetensors_header(path)
        base, header = self._headers[path]
        entry = header.get(key)
        if not isinstance(entry, dict) or _SAFE_DTYPES.get(entry.get("dtype")) != dtype:
            return False
        return (base + entry["data_offsets"][0]) % dtype.itemsize == 0

    def map(self, path: Path, key: str) -> torch.Tensor:
        """Tensor ``key`` of safetensors file ``path``, memory-mapped (see :meth:`mappable`)."""
        base, header = self._headers[path]
        entry = header[key]
        t = self._file(path).tensor(base + entry["data_offsets"][0], _SAFE_DTYPES[entry["dtype"]],
                                    tuple(entry["shape"]))
        if t.numel():
            self.spans[t.data_ptr()] = self._files[path]
        return t

    def write(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Copy ``t`` to ``<folder>/<name>.dat`` and return it memory-mapped from there."""
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.dat"
        flat = t.detach().to("cpu").contiguous().reshape(-1)
        flat.view(torch.uint8).numpy().tofile(path)
        self.index[name] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
        (self.folder / "index.json").write_text(json.dumps(self.index, indent=1) + "\n")
        if flat.numel() == 0:
            return torch.empty(t.shape, dtype=t.dtype)
        out = MappedFile(path)
        self._files[path] = out
        mapped = out.tensor(0, t.dtype, tuple(t.shape))
        self.spans[mapped.data_ptr()] = out
        return mapped


# --- moving values between devices ------------------------------------------------------------------
def move_to(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (tuples, lists, dicts, output dataclasses) on ``device``;
    other objects (a KV cache) as they are."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(move_to(o, device) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return type(obj)((k, move_to(v, device)) for k, v in obj.items())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = copy.copy(obj)
        for f in dataclasses.fields(obj):
            setattr(out, f.name, move_to(getattr(obj, f.name), device))
        return out
    return obj


def _first_device(args: Any, kwargs: dict) -> torch.device | None:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v.device
    return None


class _PlacedModule:
    """The hooks of one placed module: inputs to ``device``; offloaded weights copied there for
    the forward; disk pages dropped after; outputs back to the input's device unless ``chain``."""

    def __init__(self, slots: list[tuple[nn.Module, str, str]], device: torch.device, copy_weights: bool,
                 files: list[MappedFile], chain: bool) -> None:
        self.slots, self.device, self.copy_weights = slots, device, copy_weights
        self.files, self.chain = files, chain
        self.saved: list[tuple[nn.Module, str, str, torch.Tensor]] | None = None
        self.back: list[torch.device | None] = []

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.back.append(_first_device(args, kwargs))
        if self.copy_weights and self.saved is None:
            self.saved, copies = [], {}
            for owner, kind, attr in self.slots:
                t = getattr(owner, kind)[attr]
                if id(t) not in copies:
                    moved = t.detach().to(self.device)
                    copies[id(t)] = nn.Parameter(moved, requires_grad=False) \
                        if isinstance(t, nn.Parameter) else moved
                self.saved.append((owner, kind, attr, t))
                getattr(owner, kind)[attr] = copies[id(t)]
        return move_to(args, self.device), move_to(kwargs, self.device)

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        back = self.back.pop() if self.back else None
        if self.saved is not None and not self.back:
            for owner, kind, attr, t in self.saved:
                getattr(owner, kind)[attr] = t
            self.saved = None
        if not self.back:
            for f in self.files:
                f.release()
        return output if self.chain or back is None else move_to(output, back)


class _ModelIO:
    """The model's own hooks: inputs on the main device, outputs back on the caller's."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.back = device, []

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.back.append(_first_device(args, kwargs))
        return move_to(args, self.device), move_to(kwargs, self.device)

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        back = self.back.pop() if self.back else None
        return output if back is None else move_to(output, back)


def attach_hooks(model: nn.Module, owners: dict[str, str], device_map: dict[str, Any],
                 main: torch.device, store: OffloadStore | None) -> int:
    """Hook every placed module of ``model``. ``owners``: each tensor name -> its map key;
    ``device_map``: key -> device (int, "cpu", "disk", "mps"). Returns how many were hooked."""
    from .placement import DISK, torch_device

    slots: dict[str, list[tuple[nn.Module, str, str]]] = {k: [] for k in device_map}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            for attr, t in getattr(module, kind).items():
                name = f"{mod_name}.{attr}" if mod_name else attr
                if t is not None and name in owners:
                    slots[owners[name]].append((module, kind, attr))
    modules = dict(model.named_modules(remove_duplicate=False))
    for key, dev in device_map.items():
        module = modules[key]
        offloaded = dev in ("cpu", DISK)
        run_on = main if offloaded else torch_device(dev)
        files: dict[int, MappedFile] = {}
        if dev == DISK and store is not None:
            for owner, kind, attr in slots[key]:
                t = getattr(owner, kind)[attr]
                f = store.spans.get(t.data_ptr()) if t.numel() else None
                if f is not None:
                    files[id(f)] = f
        parent = modules.get(key.rpartition(".")[0]) if key else None
        copy_weights = offloaded and run_on.type != "cpu"
        placed = _PlacedModule(slots[key], run_on, copy_weights, list(files.values()),
                               chain=isinstance(parent, (nn.ModuleList, nn.ModuleDict)))
        module.register_forward_pre_hook(placed.pre, with_kwargs=True)
        module.register_forward_hook(placed.post, with_kwargs=True)
    if "" not in device_map:
        io = _ModelIO(main)
        model.register_forward_pre_hook(io.pre, with_kwargs=True, prepend=True)
        model.register_forward_hook(io.post, with_kwargs=True)
    return len(device_map)
