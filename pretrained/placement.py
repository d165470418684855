"""Where each block of a model goes: ``device_map``, ``max_memory`` and the planner behind
``device_map="auto"``.

A model is cut into *blocks* that never straddle two devices: each element of an
``nn.ModuleList`` (a decoder or encoder layer, with everything inside it), and every other
module whose subtree holds no ``ModuleList`` (embeddings, final norm, head). A module holding
tensors of its own is never cut. Blocks are sized in bytes for the dtype being loaded (a tensor
shared by two blocks, as tied embeddings and LM head, counts once and puts both on one device)
and given, in module order, to the devices in turn: CUDA GPUs by index, then ``"cpu"``, then
``"disk"`` (weights memory-mapped from a file and read per forward, see :mod:`pretrained.offload`).

Strategies, as the reference names them: ``"sequential"`` fills GPU 0, then GPU 1, ...;
``"balanced"`` (and ``"auto"``) gives each GPU about an equal share; ``"balanced_low_0"`` the same
over the GPUs after the first, GPU 0 taking only what does not fit there (room for
``generate``'s work). When a GPU takes part and blocks are left to the CPU or disk, the first GPU
keeps room for the largest block, as those blocks run there. Without a GPU all strategies fill
the CPU and then the disk.

The result, like the reference's ``model.hf_device_map``, names the largest modules that sit on
one device: ``{"": "cpu"}`` when everything fits on the CPU, else e.g.
``{"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cpu", "model.norm": "disk",
"lm_head": 0}``. GPUs are ints.

Example (planning only: no memory is taken, the devices need not exist)::

    >>> import torch
    >>> from torch import nn
    >>> from pretrained.placement import infer_device_map
    >>> net = nn.Sequential(nn.Embedding(10, 4), nn.ModuleList([nn.Linear(4, 4) for _ in range(3)]))
    >>> infer_device_map(net, max_memory={0: 330, "cpu": 100}, dtype=torch.float32)
    {'0': 0, '1.0': 0, '1.1': 'cpu', '1.2': 'disk'}
"""

from __future__ import annotations

import difflib
from typing import Any, Union

import torch
from torch import nn

from .errors import InvalidInputError

__all__ = ["DISK", "STRATEGIES", "parse_size", "parse_max_memory", "normalize_device",
           "block_names", "block_sizes", "plan_blocks", "collapse", "infer_device_map",
           "expand_device_map", "main_device", "torch_device"]

Device = Union[int, str]   # a CUDA index, "cpu", "mps" or "disk"
DISK = "disk"
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
GPU_SHARE = 0.9   # of a GPU's free memory, when max_memory does not say: room for activations


# --- reading the arguments ----------------------------------------------------------------------
def parse_size(size: int | str, what: str = "max_shard_size") -> int:
    """Bytes from an int or a string such as ``"200MB"``, ``"2GiB"``, ``"1.5GB"`` (units 10^3 or
    2^10 as written), with an error naming ``what``.

    >>> parse_size("2GiB"), parse_size("200MB"), parse_size(512)
    (2147483648, 200000000, 512)
    """
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 0:
            raise InvalidInputError(f"{what}={size!r}: a size cannot be negative")
        return size
    if isinstance(size, str):
        s = size.strip().upper()
        for unit, mult in (("GIB", 2**30), ("MIB", 2**20), ("KIB", 2**10), ("TB", 10**12),
                           ("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)):
            if s.endswith(unit):
                try:
                    value = float(s[: -len(unit)])
                except ValueError:
                    break
                if value >= 0:
                    return int(value * mult)
                break
    raise InvalidInputError(f"{what}={size!r}: use an int of bytes or a string such as '5GB', "
                            "'200MB' or '2GiB'")


def normalize_device(value: Any, what: str = "device_map") -> Device:
    """``0``, ``"cuda:1"``, ``torch.device("cuda", 0)``, ``"cpu"``, ``"disk"``, ``"mps"`` -> the
    planner's spelling (an int for a CUDA device)."""
    if isinstance(value, torch.device):
        value = str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("cpu", DISK, "mps"):
            return v
        if v == "cuda":
            return 0
        if v.startswith("cuda:") and v[5:].isdigit():
            return int(v[5:])
        if v.isdigit():
            return int(v)
    raise InvalidInputError(f"{what}: {value!r} is not a device; use a GPU index (0), 'cuda:0', "
                            "'cpu', 'mps' or 'disk'")


def check_device_exists(device: Device, what: str = "device_map") -> None:
    """Refuse a device this machine does not have, naming what it has."""
    if isinstance(device, int):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise InvalidInputError(f"{what} names GPU {device}, but this machine has {have}; use "
                                    "'cpu' (and 'disk'), or device_map='auto' to use what is there")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInputError(f"{what} names 'mps', which this machine does not have; use 'cpu'")


def torch_device(device: Device) -> torch.device:
    """The torch device a block's weights live on ("disk": memory-mapped on the CPU)."""
    if isinstance(device, int):
        return torch.device("cuda", device)
    return torch.device("cpu" if device == DISK else device)


def parse_max_memory(max_memory: Any) -> dict[Device, int]:
    """``{0: "10GiB", "cpu": "30GB", "disk": ...}`` -> ``{0: 10737418240, "cpu": 30000000000}``."""
    if not isinstance(max_memory, dict) or not max_memory:
        raise InvalidInputError(f"max_memory={max_memory!r}: pass a dict of device -> size, e.g. "
                                "{0: '10GiB', 'cpu': '30GB'}")
    out: dict[Device, int] = {}
    for key, size in max_memory.items():
        dev = normalize_device(key, f"max_memory key {key!r}")
        out[dev] = parse_size(size, f"max_memory[{key!r}]")
    return out


def machine_memory() -> dict[Device, int]:
    """What this machine has free now: 90% of each GPU's free memory, the CPU's available RAM."""
    out: dict[Device, int] = {}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out[i] = int(torch.cuda.mem_get_info(i)[0] * GPU_SHARE)
    out["cpu"] = _available_ram()
    return out


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


# --- the model's blocks ---------------------------------------------------------------------------
_LISTS = (nn.ModuleList, nn.ModuleDict)


def _holds_list(module: nn.Module) -> bool:
    return any(isinstance(m, _LISTS) for m in module.modules())


def _own_tensors(module: nn.Module) -> bool:
    return any(t is not None for t in (*module._parameters.values(), *module._buffers.values()))


def block_names(model: nn.Module) -> list[str]:
    """The model's blocks (see the module doc), in module order; ``[""]`` when it has none
    smaller than itself."""
    out: list[str] = []

    def visit(prefix: str, module: nn.Module, in_list: bool) -> None:
        if in_list or _own_tensors(module) or not _holds_list(module):
            out.append(prefix)
            return
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child, isinstance(module, _LISTS))

    visit("", model, False)
    return out


def _element_bytes(t: torch.Tensor, dtype: torch.dtype | None) -> int:
    if dtype is not None and t.is_floating_point():
        return torch.tensor([], dtype=dtype).element_size()
    return t.element_size()


def block_sizes(model: nn.Module, names: list[str], dtype: torch.dtype | None = None
                ) -> list[tuple[str, dict[int, int]]]:
    """Each block with its tensors (``id`` -> bytes in ``dtype`` for floating-point ones), so a
    tensor two blocks share is seen as one."""
    out = []
    for name in names:
        module = model.get_submodule(name) if name else model
        tensors = {id(t): t.numel() * _element_bytes(t, dtype)
                   for t in (*module.parameters(), *module.buffers())}
        out.append((name, tensors))
    return out


# --- planning -------------------------------------------------------------------------------------
def _order(budgets: dict[Device, int]) -> list[Device]:
    gpus = sorted(d for d in budgets if isinstance(d, int))
    return [*gpus, *(d for d in ("mps", "cpu") if d in budgets), DISK]


def plan_blocks(blocks: list[tuple[str, dict[int, int]]], max_memory: dict[Device, int],
                strategy: str = "sequential") -> dict[str, Device]:
    """Give each block a device under ``max_memory`` (bytes per device; pure, nothing is
    allocated or asked of the machine); blocks that fit nowhere go to ``"disk"``."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"device_map={strategy!r}: use one of {', '.join(STRATEGIES)}, a "
                                "device ('cpu', 'cuda:0') or a dict of module name -> device")
    budgets = {d: n for d, n in max_memory.items() if d != DISK}
    sizes = [sum(t.values()) for _, t in blocks]
    total = sum({i: n for _, t in blocks for i, n in t.items()}.values())
    largest = max(sizes, default=0)
    gpus = [d for d in _order(budgets) if isinstance(d, int) and budgets[d] > 0]
    if strategy != "sequential" and len(gpus) > 1:
        low0 = strategy == "balanced_low_0"
        share = gpus[1:] if low0 else gpus
        # an equal share, plus one block: blocks do not divide the model exactly
        per = -(-total // len(share)) + largest
        for g in share:
            budgets[g] = min(budgets[g], per)
        if low0:
            budgets[gpus[0]] = min(budgets[gpus[0]], max(0, total - sum(budgets[g] for g in share)))
    plan = _assign(blocks, budgets)
    offloaded = [s for (n, _), s in zip(blocks, sizes) if plan[n] in ("cpu", DISK)]
    used_gpus = [d for d in dict.fromkeys(plan.values()) if isinstance(d, int)]
    if used_gpus and offloaded:   # offloaded blocks run on the first GPU: keep room for one
        budgets[used_gpus[0]] = max(0, budgets[used_gpus[0]] - max(offloaded))
        plan = _assign(blocks, budgets)
    return plan


def _assign(blocks: list[tuple[str, dict[int, int]]], budgets: dict[Device, int]) -> dict[str, Device]:
    order = _order(budgets)
    used = dict.fromkeys(order, 0)
    where: dict[int, Device] = {}   # tensor id -> its device (shared tensors pull their block)
    plan: dict[str, Device] = {}
    i = 0
    for name, tensors in blocks:
        new = sum(n for t, n in tensors.items() if t not in where)
        tied = [where[t] for t in tensors if t in where]
        if tied:
            dev = tied[0]
        else:
            while order[i] != DISK and used[order[i]] + new > budgets[order[i]]:
                i += 1
            dev = order[i]
        used[dev] += new
        for t in tensors:
            where.setdefault(t, dev)
        plan[name] = dev
    return plan


def collapse(plan: dict[str, Device], model: nn.Module) -> dict[str, Device]:
    """The reference's ``hf_device_map`` layout of a plan over blocks: each module whose blocks
    share one device is one entry (``{"": "cpu"}`` for a model on one device)."""
    out: dict[str, Device] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        devs = {d for n, d in plan.items() if not prefix or n == prefix or n.startswith(prefix + ".")}
        if len(devs) == 1:
            out[prefix] = devs.pop()
            return
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", model)
    return out


def infer_device_map(model: nn.Module, max_memory: Any = None, strategy: str = "sequential",
                     dtype: torch.dtype | None = None) -> dict[str, Device]:
    """The device map ``from_pretrained(device_map=strategy, max_memory=...)`` would use for
    ``model`` (which may be on the meta device), in the ``hf_device_map`` layout. ``max_memory``
    (device -> bytes or "2GiB") is taken as given, GPUs this machine lacks included, so plans
    can be checked anywhere; without it, the machine's free memory is used."""
    budgets = parse_max_memory(max_memory) if max_memory is not None else machine_memory()
    names = block_names(model)
    return collapse(plan_blocks(block_sizes(model, names, dtype), budgets, strategy), model)


# --- a user's dict ------------------------------------------------------------------------------
def _tensor_names(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]


def owner_key(name: str, keys: list[str]) -> str | None:
    """The longest key of a device map that ``name`` (a tensor or module) lies under."""
    best = None
    for k in keys:
        if (k == "" or name == k or name.startswith(k + ".")) and (best is None or len(k) > len(best)):
            best = k
    return best


def expand_device_map(model: nn.Module, device_map: dict) -> dict[str, Device]:
    """Check a user's ``{module name: device}`` against ``model`` and return it normalised: every
    key a module, every tensor covered, tied tensors on one device."""
    modules = dict(model.named_modules(remove_duplicate=False))
    params = {n for n, _ in _tensor_names(model)}
    out: dict[str, Device] = {}
    for key, value in device_map.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"device_map key {key!r}: keys are module names (strings)")
        if key not in modules:
            if key in params:
                owner = key.rpartition(".")[0]
                raise InvalidInputError(f"device_map key {key!r} is a parameter; place its module "
                                        f"{owner!r} instead")
            close = difflib.get_close_matches(key, list(modules), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInputError(f"device_map names {key!r}, which is not a module of "
                                    f"{type(model).__name__}{hint}")
        out[key] = normalize_device(value, f"device_map[{key!r}]")
    keys = list(out)
    seen: dict[int, tuple[str, Device]] = {}
    uncovered: list[str] = []
    for name, t in _tensor_names(model):
        key = owner_key(name, keys)
        if key is None:
            owner = name.rpartition(".")[0]
            if owner not in uncovered:
                uncovered.append(owner)
            continue
        other = seen.setdefault(id(t), (name, out[key]))
        if other[1] != out[key]:
            raise InvalidInputError(
                f"device_map puts {other[0]!r} on {other[1]!r} and {name!r} on {out[key]!r}, but "
                "they are one tied tensor; put both modules on the same device")
    if uncovered:
        shown = ", ".join(repr(u) for u in uncovered[:6]) + (" ..." if len(uncovered) > 6 else "")
        raise InvalidInputError(
            f"device_map does not place {len(uncovered)} module(s) that hold weights: {shown}; add "
            "them (or a module above them, '' for the whole model) to the dict")
    return out


def main_device(device_map: dict[str, Device]) -> torch.device:
    """Where inputs go and offloaded blocks run: the first GPU of the map, else the CPU."""
    for d in device_map.values():
        if d not in ("cpu", DISK):
            return torch_device(d)
    return torch.device("cpu")
