"""The evaluation/prediction loop of the Trainer: forward passes without gradients, the loss
averaged over examples, predictions and labels gathered as numpy arrays (rows of different
lengths padded with -100, or with the pad id for generated ids), then ``compute_metrics``.

In multi-process runs each rank evaluates a contiguous shard and the shards are gathered in rank
order, so the arrays are in dataset order and each example counts once.

Example::

    >>> import numpy as np
    >>> from pretrained.training.evaluation import concat_padded
    >>> concat_padded([np.ones((1, 2)), np.zeros((1, 3))]).tolist()
    [[1.0, 1.0, -100.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .distributed import gather_objects
from .utils import EvalPrediction, PredictionOutput

# Output fields that are not predictions.
_NOT_PREDICTIONS = ("loss", "hidden_states", "attentions", "past_key_values")


def concat_padded(arrays: list[np.ndarray], pad: float = -100) -> np.ndarray:
    """Concatenate along axis 0, padding axis 1 to the longest (token-level outputs)."""
    if len(arrays) == 1:
        return arrays[0]
    if arrays[0].ndim < 2 or len({a.shape[1:] for a in arrays}) == 1:
        return np.concatenate(arrays, axis=0)
    width = max(a.shape[1] for a in arrays)
    out = []
    for a in arrays:
        padded = np.full((a.shape[0], width, *a.shape[2:]), pad, dtype=a.dtype)
        padded[:, : a.shape[1]] = a
        out.append(padded)
    return np.concatenate(out, axis=0)


def _concat_nested(items: list[Any], pad: float = -100) -> Any:
    if not items:
        return None
    if isinstance(items[0], tuple):
        return tuple(_concat_nested([it[i] for it in items], pad) for i in range(len(items[0])))
    return concat_padded(items, pad)


def _to_numpy(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_to_numpy(t) for t in x)
    x = x.detach()
    if x.is_floating_point() and x.dtype != torch.float64:
        x = x.float()
    return x.cpu().numpy()


def predictions_of(outputs: Any, ignore_keys: list[str] | None) -> Any:
    """The prediction tensors of a model output: one tensor, or a tuple (e.g. start/end logits)."""
    skip = set(_NOT_PREDICTIONS) | set(ignore_keys or ())
    if isinstance(outputs, Mapping):
        values = [v for k, v in outputs.items() if k not in skip and v is not None]
    elif hasattr(outputs, "keys"):  # a ModelOutput dataclass
        values = [getattr(outputs, k) for k in outputs.keys() if k not in skip]
    elif isinstance(outputs, (tuple, list)):
        values = list(outputs)
    else:
        values = [outputs]
    values = [v for v in values if isinstance(v, torch.Tensor)]
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def evaluation_loop(trainer: Any, dataset: Any, prefix: str, ignore_keys: list[str] | None,
                    prediction_loss_only: bool) -> PredictionOutput:
    start = time.time()
    loader = trainer.get_eval_dataloader(dataset)
    model = trainer.model
    model.eval()
    loss_sum, n_loss, n_seen = 0.0, 0, 0
    preds, labels = [], []
    for batch in loader:
        loss, logits, labs = trainer.prediction_step(model, batch, prediction_loss_only, ignore_keys)
        size = _batch_size(batch)
        n_seen += size
        if loss is not None:
            loss_sum += float(loss) * size
            n_loss += size
        if logits is not None:
            if trainer.preprocess_logits_for_metrics is not None:
                logits = trainer.preprocess_logits_for_metrics(logits, labs)
            preds.append(_to_numpy(logits))
        if labs is not None:
            labels.append(_to_numpy(labs))
    gathered = gather_objects((loss_sum, n_loss, n_seen, preds, labels))
    loss_sum = sum(g[0] for g in gathered)
    n_loss = sum(g[1] for g in gathered)
    n_seen = sum(g[2] for g in gathered)
    # generated ids (Seq2SeqTrainer) are padded with the pad id, so they decode as they are
    all_preds = _concat_nested([p for g in gathered for p in g[3]],
                               getattr(trainer, "prediction_pad_id", -100))
    all_labels = _concat_nested([lab for g in gathered for lab in g[4]])
    metrics: dict[str, Any] = {}
    if trainer.compute_metrics is not None and all_preds is not None and all_labels is not None:
        computed = trainer.compute_metrics(EvalPrediction(predictions=all_preds, label_ids=all_labels))
        if not isinstance(computed, Mapping):
            raise InvalidInputError(f"compute_metrics must return a dict of metrics, got "
                                    f"{type(computed).__name__}")
        metrics.update(computed)
    metrics = {(k if k.startswith(f"{prefix}_") else f"{prefix}_{k}"): _plain(v) for k, v in metrics.items()}
    if n_loss:
        metrics[f"{prefix}_loss"] = loss_sum / n_loss
    runtime = time.time() - start
    metrics[f"{prefix}_runtime"] = round(runtime, 4)
    metrics[f"{prefix}_samples_per_second"] = round(n_seen / max(runtime, 1e-9), 3)
    metrics[f"{prefix}_steps_per_second"] = round(len(loader) / max(runtime, 1e-9), 3)
    return PredictionOutput(predictions=all_preds, label_ids=all_labels, metrics=metrics)


def _plain(v: Any) -> Any:
    if isinstance(v, (np.generic, torch.Tensor)) and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


def _batch_size(batch: Mapping[str, Any]) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 1


__all__ = ["evaluation_loop", "predictions_of", "concat_padded"]
