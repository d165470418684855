"""Multi-process data-parallel training on ``torch.distributed``, as launched by ``torchrun``.

``torchrun --nproc_per_node=2 train.py`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the Trainer
then joins the process group (gloo on CPU, nccl on GPU), wraps the model in
``DistributedDataParallel``, gives each rank its share of every batch, and lets only rank 0 write
files. Nothing here runs in a single-process job.

Example::

    >>> from pretrained.training.distributed import world_size
    >>> world_size()
    1
"""

from __future__ import annotations

import atexit
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InvalidInputError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else \
        int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else \
        int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def init_distributed(device: torch.device, backend: str | None, timeout_s: int) -> None:
    """Join the process group torchrun describes (no-op for one process or when joined)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if not dist.is_available():
        raise InvalidInputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
    if missing:
        raise InvalidInputError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {missing} are not set; "
                                "launch with torchrun --nproc_per_node=N script.py")
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise InvalidInputError("ddp_backend='nccl' needs CUDA GPUs; use 'gloo' on CPU")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    # A group left for interpreter exit to tear down can abort the process ("terminate called
    # without an active exception" from gloo's threads): the group we joined, we leave.
    atexit.register(_leave)


def _leave() -> None:
    if dist.is_available() and dist.is_initialized():
        # objects in reference cycles (a DDP wrapper and its reducer, pending gloo work holding
        # tensors) must go while the group and the interpreter are alive, not in finalization
        import gc

        gc.collect()
        try:
            # leave together: a rank that exits while another still works (rank 0 writing its
            # files) closes sockets the other's gloo threads use, which aborted it at exit
            # ("terminate called without an active exception", ~1 run in 8 here)
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer already gone: leave anyway
            pass
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


__all__ = ["world_size", "rank", "is_distributed", "init_distributed", "barrier", "gather_objects",
           "mean_across_ranks", "wrap_ddp", "unwrap"]
