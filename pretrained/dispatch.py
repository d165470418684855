"""``from_pretrained``'s ``device_map`` / ``max_memory`` / ``offload_folder``, from the arguments
to a placed model: :class:`DevicePlacement` reads the arguments (before the model is built),
plans once the model exists on the meta device (:mod:`pretrained.placement`), sends each tensor
to its device while the checkpoint streams in, and hooks the result (:mod:`pretrained.offload`).

What it cannot honour is refused by name: a device this machine lacks, a dict that misses
weights or splits tied ones, disk blocks whose weights cannot be memory-mapped as they are
stored without ``offload_folder``, a quantized or GGUF model spread over several devices.

Example::

    >>> from pretrained import AutoModelForCausalLM                              # doctest: +SKIP
    >>> m = AutoModelForCausalLM.from_pretrained("path/to/llama", device_map="auto",
    ...                                          max_memory={"cpu": "2GiB"})     # doctest: +SKIP
    >>> m.hf_device_map                                                          # doctest: +SKIP
    {'model.embed_tokens': 'cpu', 'model.layers.0': 'cpu', ..., 'model.norm': 'disk', 'lm_head': 'cpu'}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import InvalidInputError, UnsupportedOptionError
from .io.loading import checkpoint_key_map
from .offload import OffloadStore, attach_hooks
from .placement import (DISK, STRATEGIES, Device, block_names, block_sizes, check_device_exists,
                        collapse, expand_device_map, machine_memory, main_device, normalize_device,
                        owner_key, parse_max_memory, plan_blocks, torch_device)

__all__ = ["DevicePlacement"]

logger = logging.getLogger("pretrained")


class DevicePlacement:
    """One ``from_pretrained`` call's placement (see the module doc). ``device`` is where the
    model's inputs go (and quantization's device checks look); ``spread`` whether blocks sit
    on more than one device or on disk (then hooks run them)."""

    def __init__(self, device_map: Any = None, max_memory: Any = None, offload_folder: Any = None,
                 offload_state_dict: Any = None) -> None:
        if offload_state_dict not in (None, True, False):
            raise InvalidInputError(f"offload_state_dict={offload_state_dict!r}: pass True or False")
        # (offload_state_dict: this library always streams the checkpoint one tensor at a time)
        self.folder = Path(offload_folder) if offload_folder is not None else None
        self.given = device_map is not None
        self.strategy: str | None = None
        self.user_map: dict[str, Device] | None = None
        self.budgets: dict[Device, int] | None = None
        if max_memory is not None:
            self.budgets = parse_max_memory(max_memory)
            for dev in self.budgets:
                if dev != DISK:
                    check_device_exists(dev, f"max_memory key {dev!r}")
        if device_map is None and (max_memory is not None or offload_folder is not None):
            which = "max_memory" if max_memory is not None else "offload_folder"
            raise InvalidInputError(f"{which}= takes effect with a device_map: pass device_map='auto' "
                                    "(or 'balanced', 'sequential', or a dict of module -> device)")
        if isinstance(device_map, str) and device_map in STRATEGIES:
            self.strategy = device_map
            budgets = self.budgets or machine_memory()
            gpus = sorted(d for d in budgets if isinstance(d, int) and budgets[d] > 0)
            self.device = torch_device(gpus[0]) if gpus else torch.device("cpu")
        elif isinstance(device_map, dict):
            if not device_map:
                raise InvalidInputError("device_map={} places nothing; pass {'': 'cpu'} or 'auto'")
            self.user_map = {k: normalize_device(v, f"device_map[{k!r}]") for k, v in device_map.items()}
            for dev in self.user_map.values():
                check_device_exists(dev)
            self.device = main_device(self.user_map)
        else:
            dev = normalize_device("cpu" if device_map is None else device_map, "device_map")
            check_device_exists(dev)
            self.user_map = {"": dev}
            self.device = main_device(self.user_map)
        if max_memory is not None and self.strategy is None:
            raise InvalidInputError("max_memory= guides device_map='auto' / 'balanced' / "
                                    "'balanced_low_0' / 'sequential'; with a fixed device_map it "
                                    "has nothing to decide")
        # whether blocks may go to disk (then the model may be larger than memory)
        self.may_offload = self.strategy is not None or DISK in (self.user_map or {}).values()
        self.map: dict[str, Device] = {}        # key -> device (the plan's blocks or the user's keys)
        self.owners: dict[str, str] = {}        # tensor name -> its key in self.map
        self.store: OffloadStore | None = None
        self.spread = False

    # --- planning (model on meta) --------------------------------------------------------------
    def plan(self, model: nn.Module, dtype: torch.dtype, ckpt: Any = None, prefix: str = "",
             quantized: str | None = None, gguf: bool = False) -> None:
        """Decide every tensor's device; refuse what cannot run (see the module doc)."""
        if self.strategy is not None:
            blocks = block_sizes(model, block_names(model), dtype)
            self.map = plan_blocks(blocks, self.budgets or machine_memory(), self.strategy)
        else:
            self.map = expand_device_map(model, self.user_map or {"": "cpu"})
        keys = list(self.map)
        names = [n for n, _ in (*model.named_parameters(remove_duplicate=False),
                                *model.named_buffers(remove_duplicate=False))]
        self.owners = {n: owner_key(n, keys) for n in names}
        devices = set(self.map.values())
        self.spread = len(devices) > 1 or DISK in devices
        self.device = main_device(self.map)
        if self.spread and (quantized or gguf):
            what = f"a {quantized}-quantized model" if quantized else "a GGUF file's packed blocks"
            where = "offloading to disk" if DISK in devices else "spreading over several devices"
            raise UnsupportedOptionError(
                f"device_map={self.hf_device_map(model)}: {where} is not supported for {what}; "
                "load it on one device (device_map='cpu' or 'cuda:0'), or give max_memory room for "
                "the whole quantized model")
        if DISK in devices:
            self._check_disk(model, dtype, ckpt, prefix)

    def _check_disk(self, model: nn.Module, dtype: torch.dtype, ckpt: Any, prefix: str) -> None:
        self.store = OffloadStore(self.folder)
        self._keys = checkpoint_key_map(list(self.owners), ckpt.keys(), prefix,
                                        bool(prefix) and hasattr(model, prefix))
        self._dtype = dtype
        if self.folder is not None:
            return
        shapes = dict(model.named_parameters(remove_duplicate=False))
        shapes.update(model.named_buffers(remove_duplicate=False))
        bad = []
        for name, key in self._keys.items():
            if self.map[self.owners[name]] != DISK:
                continue
            want = dtype if shapes[name].is_floating_point() else shapes[name].dtype
            if ckpt.format != "safetensors" or not self.store.mappable(ckpt.path_of(key), key, want):
                bad.append(name)
        if bad:
            why = "its weights are not in safetensors files" if ckpt.format != "safetensors" else \
                f"those weights are not stored as {str(dtype).replace('torch.', '')} safetensors"
            raise InvalidInputError(
                f"device_map puts {len(bad)} tensor(s) on 'disk' ({', '.join(bad[:4])}"
                f"{' ...' if len(bad) > 4 else ''}), but {why}, so they cannot be memory-mapped as "
                "they are: pass offload_folder='some/folder' to keep a copy there, or give the "
                "other devices more max_memory")

    # --- loading ----------------------------------------------------------------------------------
    def converter(self, dtype: torch.dtype, ckpt: Any) -> Callable[[str, torch.Tensor], torch.Tensor] | None:
        """The per-tensor step of the streaming load: each tensor to its block's device (disk:
        memory-mapped); None when the whole model goes to one device (the plain step)."""
        if not self.spread:
            return None

        def convert(name: str, t: torch.Tensor) -> torch.Tensor:
            want = dtype if t.is_floating_point() else t.dtype
            dev = self.map[self.owners[name]]
            if dev != DISK:
                return t.to(device=torch_device(dev), dtype=want)
            key = self._keys.get(name)
            if key is not None and ckpt.format == "safetensors" and \
                    self.store.mappable(ckpt.path_of(key), key, want):
                return self.store.map(ckpt.path_of(key), key)
            return self.store.write(name, t.to(want))

        return convert

    def dispatch(self, model: nn.Module) -> None:
        """After loading: tensors made at load (buffers computed at build, initialised weights) to
        their block's device; hooks; ``model.hf_device_map``. Disk weights are read-only."""
        if self.given:
            model.hf_device_map = self.hf_device_map(model)
        if not self.spread:
            return
        spans = self.store.spans if self.store is not None else {}
        moved: dict[int, torch.Tensor] = {}   # (a tied tensor moves once, stays one)
        with torch.no_grad():
            for mod_name, module in model.named_modules(remove_duplicate=False):
                for kind in ("_parameters", "_buffers"):
                    for attr, t in getattr(module, kind).items():
                        name = f"{mod_name}.{attr}" if mod_name else attr
                        if t is None or name not in self.owners:
                            continue
                        dev = self.map[self.owners[name]]
                        if t.numel() and t.data_ptr() in spans:
                            t.requires_grad_(False)   # a memory-mapped disk weight
                        elif torch_device(dev) != t.device:   # (disk tensors the file lacked: in RAM)
                            if id(t) not in moved:
                                on = t.to(torch_device(dev))
                                moved[id(t)] = nn.Parameter(on, requires_grad=t.requires_grad) \
                                    if isinstance(t, nn.Parameter) else on
                            getattr(module, kind)[attr] = moved[id(t)]
        attach_hooks(model, self.owners, self.map, self.device, self.store)
        on_disk = [k for k, d in self.map.items() if d == DISK]
        if on_disk:
            logger.info("%d block(s) of %s are offloaded to disk and read per forward: %s",
                        len(on_disk), type(model).__name__, on_disk)

    def hf_device_map(self, model: nn.Module) -> dict[str, Device]:
        """The placement in the reference's ``hf_device_map`` layout."""
        if self.strategy is not None:
            return collapse(self.map, model)
        return dict(self.map)
