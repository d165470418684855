"""Datasets, column filtering and the samplers the Trainer uses.

Accepted datasets: a ``torch.utils.data.Dataset`` (map-style), a list of dicts, or a Hugging Face
``datasets.Dataset`` (recognised without importing ``datasets``). Columns that the model's
``forward`` does not take are dropped (``remove_unused_columns``), labels included under their
usual names (``labels``, ``label``, ``label_ids``, or ``args.label_names``).

The training order is a pure function of ``(seed, epoch)``: :class:`EpochSampler` draws
``torch.randperm(n)`` from a generator seeded with ``seed + epoch``, so resuming from a checkpoint
needs no sampler state, and skipping the batches already seen costs nothing (indices are skipped
before any example is loaded). In multi-process runs rank ``r`` takes positions ``r, r+W, ...``
of the same permutation, padded by wrapping around so every rank gets as many examples.

Example::

    >>> from pretrained.training.data import EpochSampler
    >>> s = EpochSampler(6, seed=0)
    >>> s.set_epoch(1)
    >>> sorted(s) == list(range(6))
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import Sampler

from ..errors import InvalidInputError

LABEL_ALIASES = ("label", "label_ids")


def is_hf_dataset(dataset: Any) -> bool:
    return type(dataset).__module__.split(".")[0] == "datasets" and hasattr(dataset, "column_names")


def check_dataset(dataset: Any, what: str) -> Any:
    """The dataset as something a DataLoader indexes, or a clear error."""
    if dataset is None:
        return None
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise InvalidInputError(f"{what} is an IterableDataset; the Trainer needs a map-style "
                                "dataset with __len__ (a list of dicts, a torch Dataset or a "
                                "datasets.Dataset)")
    if isinstance(dataset, (dict, str, bytes)) or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise InvalidInputError(f"{what} must be a list of dicts, a torch Dataset or a "
                                f"datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise InvalidInputError(f"{what} is empty")
    return dataset


def columns_of(dataset: Any) -> list[str]:
    if is_hf_dataset(dataset):
        return list(dataset.column_names)
    first = dataset[0]
    return list(first.keys()) if isinstance(first, Mapping) or hasattr(first, "keys") else []


def forward_columns(model: torch.nn.Module) -> list[str] | None:
    """The argument names of the model's forward, or None when it takes ``**kwargs``."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n in params if n != "self"]


def prepare_dataset(dataset: Any, keep: list[str] | None, labels: list[str], what: str,
                    remove_unused: bool) -> tuple[Any, Callable | None]:
    """Drop unused columns: from a datasets.Dataset directly; for other datasets, return a
    filter applied to each example before collation."""
    if not remove_unused or keep is None:
        return dataset, None
    columns = columns_of(dataset)
    wanted = set(keep) | set(labels) | set(LABEL_ALIASES)
    inputs = sorted(set(keep) - set(labels))
    if columns and not set(inputs) & set(columns):
        raise InvalidInputError(
            f"{what} has columns {columns}, none of which the model takes as input (it takes "
            f"{inputs}); tokenize the text first (dataset.map(tokenize)), or pass "
            "remove_unused_columns=False")
    if is_hf_dataset(dataset):
        unused = [c for c in columns if c not in wanted]
        return (dataset.remove_columns(unused) if unused else dataset), None
    return dataset, lambda example: {k: v for k, v in example.items() if k in wanted}


class FilteringCollator:
    """Apply a per-example column filter, then the real collator."""

    def __init__(self, keep: Callable[[Mapping], dict], collator: Callable) -> None:
        self.keep = keep
        self.collator = collator

    def __call__(self, features: list[Any]) -> Any:
        return self.collator([self.keep(f) if isinstance(f, Mapping) else f for f in features])


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices of one rank, reproducible from ``(seed, epoch)``."""

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(n / world_size)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        """Select the epoch; the first ``skip_samples`` indices of this rank are skipped once."""
        self.epoch = epoch
        self.skip = skip_samples

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order += order[: total - self.n]  # wrap around so every rank has per_rank samples
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        order = self._order()[self.skip:]
        self.skip = 0
        return iter(order)

    def __len__(self) -> int:
        return self.per_rank - self.skip


class ShardSampler(Sampler[int]):
    """Evaluation: rank ``r`` takes the ``r``-th contiguous shard (the last ones may be shorter
    or empty), so gathered results concatenate back into dataset order with no duplicates."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        per_rank = math.ceil(n / world_size)
        self.indices = list(range(min(rank * per_rank, n), min((rank + 1) * per_rank, n)))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


__all__ = ["check_dataset", "columns_of", "forward_columns", "prepare_dataset", "EpochSampler",
           "ShardSampler", "FilteringCollator", "is_hf_dataset"]
