"""The pipeline base: input -> preprocess -> (batched) forward -> postprocess -> output.

A task pipeline subclasses :class:`Pipeline` and writes four small methods:

* ``_sanitize_parameters(**params) -> (preprocess, forward, postprocess)``: explicit keyword
  arguments only; the base checks names before calling it, so an unknown parameter is a clear
  :class:`InvalidInputError` listing the known ones;
* ``preprocess(item, **p) -> list[dict]``: one item -> one or more *features* (a long input may
  become several windows). A feature holds the model inputs (the keys in
  ``tokenizer.model_input_names``: lists of ints, one sequence) and anything else the
  postprocessing needs (offsets, the text...), passed through untouched;
* ``_forward(batch, **p) -> dict[str, Tensor]``: runs the model on a padded batch (tensors
  ``(B, T)``) and returns batch-first tensors; keys listed in ``token_outputs`` have a length axis
  (dim 1) that the base trims back to each feature's own length;
* ``postprocess(output, **p)``: one item's output dict (its feature's keys, model inputs
  included, plus the model outputs); with ``chunked = True`` the list of its features' dicts,
  in order.

Batching: features are padded per batch (on the right: encoders then give the same numbers
batched as one by one); with ``batch_size > 1`` the features of up to ``8 * batch_size`` items
are sorted by length first, so a batch holds similar lengths and pads little. Results always
come back in input order.

Inputs: one item (a string, or what the task takes as one item) gives one result; a list or
tuple gives a list; any other iterable (a generator, a dataset) gives a generator that reads
its input lazily, at most ``8 * batch_size`` items ahead.

Example::

    >>> from pretrained import pipeline                                    # doctest: +SKIP
    >>> clf = pipeline("text-classification", model="path/to/model")     # doctest: +SKIP
    >>> clf(["I love it", "I hate it"], batch_size=2)                      # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.99}, {'label': 'NEGATIVE', 'score': 0.98}]
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from ..backends import set_weight_packing
from ..modeling import resolve_dtype

__all__ = ["Pipeline", "UNSET", "resolve_pipeline_device"]


class _Unset:
    """Marks a parameter the caller did not pass (``None`` can be a meaningful value)."""

    _instance = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
SORT_WINDOW = 8  # batches' worth of items read ahead and sorted by length
_LARGE = int(1e20)  # tokenizer.model_max_length above this means "no limit known"


def resolve_pipeline_device(device: Any, model: torch.nn.Module | None = None) -> torch.device:
    """``device`` argument -> torch.device, as the reference reads it.

    None: the model's device if it is not the CPU, else the first GPU when there is one, else the
    CPU. -1: the CPU. An int >= 0: that CUDA device. A string or torch.device: as given.
    """
    if device is None:
        current = _model_device(model) if model is not None else torch.device("cpu")
        if current.type != "cpu":
            return current
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(device, bool):
        raise InvalidInputError(f"device={device!r} is not a device; use 'cpu', 'cuda:0', -1 or 0")
    if isinstance(device, int):
        if device < 0:
            return torch.device("cpu")
        device = f"cuda:{device}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(f"device={device!r} is not a device; use 'cpu', 'cuda:0', -1 or 0") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device={device!r}: CUDA is not available on this machine; "
                                    "use device='cpu' (or -1)")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise InvalidInputError(f"device={device!r}: this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value


class Pipeline:
    """Base of every task pipeline; see the module docstring for the contract."""

    #: the task name (set on each subclass; the factory may pass an alias's target)
    task: ClassVar[str] = ""
    #: the model head the task needs (a key of a model module's MODEL_CLASSES); None: any model
    head: ClassVar[str | None] = None
    #: model outputs with a length axis (dim 1), trimmed back to each feature's length
    token_outputs: ClassVar[tuple[str, ...]] = ()
    #: postprocess receives the list of an item's features (long inputs split in windows)
    chunked: ClassVar[bool] = False
    #: side of the padding in a batch; "right" keeps encoders' positions unchanged
    padding_side: ClassVar[str] = "right"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        device: Any = None,
        torch_dtype: Any = None,
        batch_size: int | None = None,
        pack_weights: bool = False,
        **params: Any,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InvalidInputError(f"model must be a loaded model (torch.nn.Module), got "
                                    f"{type(model).__name__}; use pipeline(task, model=path) to load one")
        if tokenizer is None:
            raise InvalidInputError(f"the {self.task} pipeline needs a tokenizer; pass tokenizer=...")
        self.model = model
        self.tokenizer = tokenizer
        self.device = resolve_pipeline_device(device, model)
        dtype = resolve_dtype(torch_dtype)
        if isinstance(dtype, torch.dtype) and _float_dtype(model) != dtype:
            model.to(dtype)
        placed = set(getattr(model, "hf_device_map", {}).values())
        if _model_device(model) != self.device and len(placed) < 2 and "disk" not in placed:
            model.to(self.device)   # (a model spread over devices or disk stays as placed)
        model.eval()
        # Opt-in: pre-packed linear weights (pretrained.backends) make small CPU batches ~1.2x faster but
        # keep a second copy of the weights, and this library is lean in memory by default.
        if pack_weights and self.device.type == "cpu":
            set_weight_packing(model, True)
        self.batch_size = 1 if batch_size is None else _positive_int(batch_size, "batch_size")
        self._init_params = dict(params)
        self._params = self._split_parameters(params)

    # --- what a task defines -----------------------------------------------------------------
    def _sanitize_parameters(self) -> tuple[dict, dict, dict]:
        """Split the task's parameters into (preprocess, forward, postprocess) keyword dicts."""
        return {}, {}, {}

    def preprocess(self, item: Any, **params: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _forward(self, batch: dict[str, torch.Tensor], **params: Any) -> dict[str, torch.Tensor]:
        out = self.model(**batch)
        return {"logits": out.logits}

    def postprocess(self, output: Any, **params: Any) -> Any:
        raise NotImplementedError

    def _is_single(self, inputs: Any) -> bool:
        """Whether ``inputs`` is one item (else a list/tuple/iterable of items)."""
        return isinstance(inputs, (str, Mapping))

    # --- parameters --------------------------------------------------------------------------
    def _split_parameters(self, params: dict[str, Any]) -> tuple[dict, dict, dict]:
        sig = inspect.signature(self._sanitize_parameters)
        known = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
                 or p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidInputError(
                f"the {self.task} pipeline got unknown parameter(s) {unknown}; its parameters are "
                f"{sorted(known) + ['batch_size']}"
            )
        pre, fwd, post = self._sanitize_parameters(**params)
        return dict(pre), dict(fwd), dict(post)

    def _call_parameters(self, params: dict[str, Any]) -> tuple[int, dict, dict, dict]:
        params = dict(params)
        batch_size = params.pop("batch_size", None)
        batch_size = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        pre, fwd, post = self._split_parameters(params) if params else ({}, {}, {})
        ipre, ifwd, ipost = self._params
        return batch_size, {**ipre, **pre}, {**ifwd, **fwd}, {**ipost, **post}

    # --- running -----------------------------------------------------------------------------
    def __call__(self, inputs: Any, **params: Any) -> Any:
        """Run the pipeline on one item, a list of items, or an iterable (a generator back)."""
        return self._run(inputs, params)

    def _run(self, inputs: Any, params: dict[str, Any], single: bool | None = None) -> Any:
        batch_size, pre, fwd, post = self._call_parameters(params)
        if single is None:
            single = self._is_single(inputs)
        if single:
            return next(self._stream(iter([inputs]), 1, pre, fwd, post))
        if isinstance(inputs, (list, tuple)):
            return list(self._stream(iter(inputs), batch_size, pre, fwd, post))
        if isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes, Mapping)):
            return self._stream(iter(inputs), batch_size, pre, fwd, post)
        raise InvalidInputError(
            f"the {self.task} pipeline cannot take {type(inputs).__name__} input; pass "
            f"{self._input_help()}"
        )

    def _input_help(self) -> str:
        return "a string, a list of strings, or an iterable (e.g. a generator) of strings"

    def _stream(self, items: Iterator[Any], batch_size: int, pre: dict, fwd: dict,
                post: dict) -> Iterator[Any]:
        window = 1 if batch_size == 1 else SORT_WINDOW * batch_size
        while True:
            group = list(itertools.islice(items, window))
            if not group:
                return
            features = [self.preprocess(item, **pre) for item in group]
            outputs = self._forward_features([f for fs in features for f in fs], batch_size, fwd)
            at = 0
            for fs in features:
                mine, at = outputs[at:at + len(fs)], at + len(fs)
                yield self.postprocess(mine if self.chunked else mine[0], **post)

    def _forward_features(self, features: list[dict[str, Any]], batch_size: int,
                          fwd: dict) -> list[dict[str, Any]]:
        """Run every feature through the model, ``batch_size`` at a time, shortest padding
        first; returns one dict per feature (its keys + the model outputs), in order."""
        names = [n for n in self.tokenizer.model_input_names if features and n in features[0]]
        lengths = [len(f["input_ids"]) for f in features]
        order = sorted(range(len(features)), key=lambda i: -lengths[i]) if batch_size > 1 \
            else list(range(len(features)))
        results: list[dict[str, Any] | None] = [None] * len(features)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = self._collate([features[i] for i in idx], names)
            with torch.inference_mode():
                out = self._forward(batch, **fwd)
            out = {k: _to_cpu(v) for k, v in out.items()}
            for row, i in enumerate(idx):
                mine = {k: self._unpad(k, v[row], lengths[i]) for k, v in out.items()}
                results[i] = {**features[i], **mine}
        return results  # type: ignore[return-value]

    def _collate(self, features: list[dict[str, Any]], names: list[str]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None and any(len(f["input_ids"]) != width for f in features):
            raise InvalidInputError(
                "batch_size > 1 needs padding but the tokenizer has no pad token; set one "
                "(tokenizer.pad_token = tokenizer.eos_token) or use batch_size=1"
            )
        batch = {}
        for name in names:
            rows = [f[name] for f in features]
            if all(isinstance(r, list) and len(r) == width for r in rows):  # nothing to pad
                batch[name] = torch.tensor(rows, dtype=torch.long).to(self.device, non_blocking=True)
                continue
            value = pad_id if name == "input_ids" else 0
            t = torch.full((len(features), width), value if value is not None else 0, dtype=torch.long)
            for row, f in enumerate(features):
                seq = torch.as_tensor(f[name], dtype=torch.long)
                if self.padding_side == "right":
                    t[row, : seq.numel()] = seq
                else:
                    t[row, width - seq.numel():] = seq
            batch[name] = t.to(self.device, non_blocking=True)
        return batch

    def _unpad(self, key: str, value: torch.Tensor, length: int) -> torch.Tensor:
        if key not in self.token_outputs:
            return value
        return value[:length] if self.padding_side == "right" else value[value.shape[0] - length:]

    # --- helpers for tasks -------------------------------------------------------------------
    @property
    def max_length(self) -> int | None:
        """The longest input (in tokens) the model takes: the tokenizer's ``model_max_length``
        when it sets one, else the config's ``max_position_embeddings``."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < _LARGE:
            return limit
        return getattr(getattr(self.model, "config", None), "max_position_embeddings", None)

    def _check_length(self, n_tokens: int, hint: str) -> None:
        limit = self.max_length
        if limit is not None and n_tokens > limit:
            raise InvalidInputError(
                f"an input of {n_tokens} tokens is longer than this model takes ({limit}); {hint}"
            )

    @property
    def dtype(self) -> torch.dtype:
        return _float_dtype(self.model)

    torch_dtype = dtype

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "config", None), "name_or_path", "") or "?"
        params = ", ".join(f"{k}={v!r}" for k, v in self._init_params.items())
        return (
            f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}"
            f"({name!r}), tokenizer={type(self.tokenizer).__name__}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, batch_size={self.batch_size}"
            f"{', ' + params if params else ''})"
        )


def _float_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        return value.float() if value.is_floating_point() and value.dtype != torch.float64 else value
    return value
