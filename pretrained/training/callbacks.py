"""Trainer state, control flags and callbacks.

A callback subclasses :class:`TrainerCallback` and overrides the events it cares about
(``on_train_begin``, ``on_epoch_begin``, ``on_step_begin``, ``on_step_end``, ``on_epoch_end``,
``on_evaluate``, ``on_predict``, ``on_save``, ``on_log``, ``on_train_end``). Each event receives
``(args, state, control)`` plus keyword context (``model``, ``optimizer``, ``lr_scheduler``,
``metrics``, ``logs``) and may set flags on ``control`` (``should_training_stop``, ...).

Example::

    >>> from pretrained.training.callbacks import TrainerCallback
    >>> class PrintLoss(TrainerCallback):
    ...     def on_log(self, args, state, control, logs=None, **kwargs):
    ...         if logs and "loss" in logs:
    ...             print(state.global_step, logs["loss"])
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError, InvalidInputError


@dataclass
class TrainerState:
    """What a run has done so far; saved as ``trainer_state.json`` in every checkpoint."""

    epoch: float | None = None
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    num_skipped_steps: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)

    def save_to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_json(cls, path: str) -> "TrainerState":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read the trainer state {path!r} ({e}); the checkpoint "
                                  "is damaged: resume from another checkpoint") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def compute_steps(self, args: Any, max_steps: int) -> None:
        """Resolve ``logging_steps``/``eval_steps``/``save_steps`` given as fractions."""
        for name in ("logging", "eval", "save"):
            value = getattr(args, f"{name}_steps")
            if value is not None:
                steps = math.ceil(max_steps * value) if value < 1 else int(value)
                setattr(self, f"{name}_steps", steps)


@dataclass
class TrainerControl:
    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def reset_step(self) -> None:
        self.should_save = self.should_evaluate = self.should_log = False


class TrainerCallback:
    """Base class; every event does nothing."""

    def on_init_end(self, args, state, control, **kwargs): pass
    def on_train_begin(self, args, state, control, **kwargs): pass
    def on_train_end(self, args, state, control, **kwargs): pass
    def on_epoch_begin(self, args, state, control, **kwargs): pass
    def on_epoch_end(self, args, state, control, **kwargs): pass
    def on_step_begin(self, args, state, control, **kwargs): pass
    def on_substep_end(self, args, state, control, **kwargs): pass
    def on_step_end(self, args, state, control, **kwargs): pass
    def on_evaluate(self, args, state, control, **kwargs): pass
    def on_predict(self, args, state, control, **kwargs): pass
    def on_save(self, args, state, control, **kwargs): pass
    def on_log(self, args, state, control, **kwargs): pass


class CallbackHandler:
    """Calls every callback for an event; a callback returning a TrainerControl replaces it."""

    def __init__(self, callbacks: list[Any]) -> None:
        self.callbacks: list[TrainerCallback] = []
        for cb in callbacks:
            self.add_callback(cb)

    def add_callback(self, callback: Any) -> None:
        cb = callback() if isinstance(callback, type) else callback
        if not isinstance(cb, TrainerCallback):
            raise InvalidInputError(f"callback {cb!r} is not a TrainerCallback (subclass "
                                    "pretrained.training.TrainerCallback)")
        self.callbacks.append(cb)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks = [cb for cb in self.callbacks
                          if cb is not callback and type(cb) is not callback]

    def call(self, event: str, args, state, control, **kwargs) -> TrainerControl:
        for cb in self.callbacks:
            result = getattr(cb, event)(args, state, control, **kwargs)
            if result is not None:
                control = result
        return control


class DefaultFlowCallback(TrainerCallback):
    """Decides when to log, evaluate, save and stop, from the strategies in the arguments."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and state.global_step % state.logging_steps == 0:
            control.should_log = True
        if args.eval_strategy == "steps" and state.global_step % state.eval_steps == 0:
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.global_step % state.save_steps == 0:
            control.should_save = True
        if state.global_step >= state.max_steps:
            control.should_training_stop = True
            if args.eval_strategy == "steps" and state.global_step % state.eval_steps != 0:
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch":
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


class ProgressCallback(TrainerCallback):
    """A tqdm bar over the optimizer steps (main process only); logs are written above it."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            self.bar.write(str({k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PrinterCallback(TrainerCallback):
    """Without a progress bar (``disable_tqdm=True``, as when output goes to a log file): each log
    printed as a line on the main process, flushed, so a long run shows progress in its log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            print({k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}, flush=True)


class EarlyStoppingCallback(TrainerCallback):
    """Stop when ``metric_for_best_model`` has not improved by more than
    ``early_stopping_threshold`` for ``early_stopping_patience`` evaluations in a row."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0) -> None:
        if not isinstance(early_stopping_patience, int) or early_stopping_patience < 1:
            raise InvalidInputError(f"early_stopping_patience={early_stopping_patience!r}: "
                                    "expected an int >= 1")
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None:
            raise InvalidInputError("EarlyStoppingCallback needs TrainingArguments."
                                    "metric_for_best_model (e.g. 'loss' or 'accuracy')")
        if args.eval_strategy == "no":
            raise InvalidInputError("EarlyStoppingCallback needs evaluations: set eval_strategy")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        key = name if name.startswith("eval_") else f"eval_{name}"
        if not metrics or key not in metrics:
            raise InvalidInputError(f"EarlyStoppingCallback: metric {key!r} is not among the "
                                    f"evaluation metrics {sorted(metrics or {})}")
        value = metrics[key]
        best = state.best_metric
        better = best is None or (value - best > self.early_stopping_threshold if args.greater_is_better
                                  else best - value > self.early_stopping_threshold)
        self.early_stopping_patience_counter = 0 if better else self.early_stopping_patience_counter + 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True
        return control

    def state(self) -> dict[str, Any]:
        return {"early_stopping_patience_counter": self.early_stopping_patience_counter}

    def load_state(self, data: dict[str, Any]) -> None:
        self.early_stopping_patience_counter = int(data.get("early_stopping_patience_counter", 0))


class TensorBoardCallback(TrainerCallback):
    """Writes the logs to ``args.logging_dir`` (needs the tensorboard package)."""

    def __init__(self) -> None:
        self.writer = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=args.logging_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is not None:
            for k, v in (logs or {}).items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k if "/" in k else f"train/{k}", v, state.global_step)
            self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


__all__ = ["TrainerState", "TrainerControl", "TrainerCallback", "CallbackHandler",
           "DefaultFlowCallback", "ProgressCallback", "PrinterCallback", "EarlyStoppingCallback",
           "TensorBoardCallback"]
