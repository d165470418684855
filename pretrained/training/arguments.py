"""TrainingArguments: every knob of :class:`~pretrained.training.Trainer`, validated up front.

The names are the reference's, including the older ones users learnt (``evaluation_strategy``,
``warmup_ratio``) which keep working here. Contradictory settings fail at construction with an
:class:`~pretrained.errors.InvalidInputError` that names the arguments and the fix, instead of
minutes into a run.

Example::

    >>> from pretrained.training import TrainingArguments
    >>> args = TrainingArguments(output_dir="out", evaluation_strategy="epoch",
    ...                          save_strategy="epoch", load_best_model_at_end=True)
    >>> args.eval_strategy, args.metric_for_best_model, args.greater_is_better
    ('epoch', 'loss', False)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError

STRATEGIES = ("no", "steps", "epoch")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")
NAN_POLICIES = ("skip", "raise")


@dataclass
class TrainingArguments:
    """Arguments of a training run (see the module docstring for an example).

    Step counts given as a float in (0, 1) (``logging_steps``, ``eval_steps``, ``save_steps``,
    ``warmup_steps``) are a fraction of the total number of optimizer steps, as in the reference.
    ``nan_inf_policy`` ("skip" or "raise") says what a non-finite loss does: skip the optimizer
    step (gradients dropped, counted in ``state.num_skipped_steps``) or stop with an error; the
    parameters never become NaN either way.
    """

    output_dir: str = "trainer_output"
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    eval_strategy: str = "no"
    evaluation_strategy: str | None = None  # the older name of eval_strategy
    prediction_loss_only: bool = False
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    warmup_ratio: float = 0.0
    warmup_steps: float = 0
    optim: str = "adamw_torch_fused"
    logging_dir: str | None = None
    logging_strategy: str = "steps"
    logging_first_step: bool = False
    logging_steps: float = 500
    logging_nan_inf_filter: bool = True
    nan_inf_policy: str = "skip"
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_only_model: bool = False
    seed: int = 42
    data_seed: int | None = None
    bf16: bool = False
    fp16: bool = False
    use_cpu: bool = False
    eval_steps: float | None = None
    eval_on_start: bool = False
    dataloader_num_workers: int = 0
    dataloader_drop_last: bool = False
    dataloader_pin_memory: bool = True
    run_name: str | None = None
    disable_tqdm: bool = False
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    ignore_data_skip: bool = False
    report_to: str | list[str] | None = "none"
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: dict | None = None   # torch.utils.checkpoint's keywords
    ddp_backend: str | None = None
    ddp_timeout: int = 1800

    def __post_init__(self) -> None:
        self._merge_old_names()
        self._check_values()
        self._check_strategies()
        self._check_precision()
        self.report_to = _resolve_report_to(self.report_to)
        if self.logging_dir is None:
            self.logging_dir = os.path.join(self.output_dir, "runs")
        if self.run_name is None:
            self.run_name = self.output_dir

    # --- validation -------------------------------------------------------------------------
    def _merge_old_names(self) -> None:
        old = self.evaluation_strategy
        if old is not None:
            if self.eval_strategy not in ("no", old):
                raise InvalidInputError(
                    f"evaluation_strategy={old!r} and eval_strategy={self.eval_strategy!r} "
                    "disagree; they are the same setting (evaluation_strategy is the older "
                    "name): pass only one"
                )
            self.eval_strategy = old
        self.evaluation_strategy = self.eval_strategy
        for name in ("eval_strategy", "save_strategy", "logging_strategy", "lr_scheduler_type",
                     "optim"):
            value = getattr(self, name)
            if hasattr(value, "value"):  # an enum from user code
                setattr(self, name, value.value)

    def _check_values(self) -> None:
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name,
                     getattr(self, name), "an int >= 1")
        for name in ("learning_rate", "weight_decay", "max_grad_norm", "warmup_steps"):
            _require(_is_number(getattr(self, name)) and getattr(self, name) >= 0, name,
                     getattr(self, name), "a number >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            _require(_is_number(getattr(self, name)) and 0 <= getattr(self, name) < 1, name,
                     getattr(self, name), "a number in [0, 1)")
        _require(_is_number(self.adam_epsilon) and self.adam_epsilon > 0, "adam_epsilon",
                 self.adam_epsilon, "a number > 0")
        _require(_is_number(self.warmup_ratio) and 0 <= self.warmup_ratio <= 1, "warmup_ratio",
                 self.warmup_ratio, "a number in [0, 1]")
        if self.warmup_ratio > 0 and self.warmup_steps > 0:
            raise InvalidInputError(
                f"warmup_ratio={self.warmup_ratio} and warmup_steps={self.warmup_steps} both set "
                "the warmup length; pass only one"
            )
        _require(isinstance(self.max_steps, int) and (self.max_steps > 0 or self.max_steps == -1),
                 "max_steps", self.max_steps, "an int > 0, or -1 to use num_train_epochs")
        if self.max_steps == -1:
            _require(_is_number(self.num_train_epochs) and self.num_train_epochs > 0,
                     "num_train_epochs", self.num_train_epochs, "a number > 0 (or set max_steps)")
        _require(self.lr_scheduler_type in SCHEDULERS, "lr_scheduler_type",
                 self.lr_scheduler_type, f"one of {SCHEDULERS}")
        _require(self.optim in OPTIMIZERS, "optim", self.optim, f"one of {OPTIMIZERS}")
        _require(self.nan_inf_policy in NAN_POLICIES, "nan_inf_policy", self.nan_inf_policy,
                 f"one of {NAN_POLICIES}")
        _require(self.save_total_limit is None or (isinstance(self.save_total_limit, int)
                                                   and self.save_total_limit >= 1),
                 "save_total_limit", self.save_total_limit, "None or an int >= 1")
        _require(isinstance(self.dataloader_num_workers, int) and self.dataloader_num_workers >= 0,
                 "dataloader_num_workers", self.dataloader_num_workers, "an int >= 0")
        _require(isinstance(self.seed, int), "seed", self.seed, "an int")
        _require(self.label_names is None or (isinstance(self.label_names, (list, tuple)) and all(
            isinstance(n, str) for n in self.label_names)), "label_names", self.label_names,
            "None or a list of column names")
        _require(self.ddp_backend in (None, "gloo", "nccl"), "ddp_backend", self.ddp_backend,
                 "None (gloo on CPU, nccl on GPU), 'gloo' or 'nccl'")

    def _check_strategies(self) -> None:
        for name in ("eval_strategy", "logging_strategy"):
            _require(getattr(self, name) in STRATEGIES, name, getattr(self, name),
                     f"one of {STRATEGIES}")
        _require(self.save_strategy in (*STRATEGIES, "best"), "save_strategy", self.save_strategy,
                 f"one of {(*STRATEGIES, 'best')}")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            self.eval_steps = self.logging_steps  # as the reference
        for name, strategy in (("logging_steps", self.logging_strategy),
                               ("save_steps", self.save_strategy),
                               ("eval_steps", self.eval_strategy)):
            value = getattr(self, name)
            if strategy == "steps":
                _require(_is_number(value) and value > 0 and (value < 1 or float(value).is_integer()),
                         name, value, "an int > 0 or a fraction in (0, 1) when the strategy "
                         "is 'steps'")
        if self.save_strategy == "best" and self.eval_strategy == "no":
            raise InvalidInputError("save_strategy='best' saves when an evaluation finds a better "
                                    "model, but eval_strategy='no'; set eval_strategy")
        if self.load_best_model_at_end:
            if self.eval_strategy == "no":
                raise InvalidInputError(
                    "load_best_model_at_end=True needs evaluations to pick the best model, but "
                    "eval_strategy='no'; set eval_strategy='epoch' or 'steps'")
            if self.save_strategy not in (self.eval_strategy, "best"):
                raise InvalidInputError(
                    f"load_best_model_at_end=True needs a checkpoint at every evaluation, but "
                    f"eval_strategy={self.eval_strategy!r} and save_strategy="
                    f"{self.save_strategy!r} differ; use the same strategy for both")
            if self.eval_strategy == "steps" and self.save_strategy == "steps":
                both_ratios = self.eval_steps < 1 and self.save_steps < 1
                if (self.eval_steps < 1) != (self.save_steps < 1) or (
                        not both_ratios and self.save_steps % self.eval_steps != 0) or (
                        both_ratios and not math.isclose(self.save_steps / self.eval_steps,
                                                         round(self.save_steps / self.eval_steps))):
                    raise InvalidInputError(
                        f"load_best_model_at_end=True needs save_steps ({self.save_steps}) to be "
                        f"a multiple of eval_steps ({self.eval_steps}), so every save follows "
                        "an evaluation")
        if self.metric_for_best_model is None and (self.load_best_model_at_end
                                                   or self.save_strategy == "best"):
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = self.metric_for_best_model not in ("loss", "eval_loss")

    def _check_precision(self) -> None:
        if self.fp16 and self.bf16:
            raise InvalidInputError("fp16=True and bf16=True: choose one mixed precision")
        if self.fp16 and self.device.type != "cuda":
            raise InvalidInputError(
                f"fp16=True needs a CUDA GPU, but training runs on {self.device.type}; use "
                "bf16=True (supported on CPU) or full precision")
        if self.bf16 and self.device.type == "cuda":
            import torch

            if not torch.cuda.is_bf16_supported():
                raise InvalidInputError("bf16=True: this GPU does not support bfloat16; use fp16")

    # --- derived values ---------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def process_index(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def local_process_index(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def should_save(self) -> bool:
        """Only the main process writes files."""
        return self.process_index == 0

    @property
    def device(self) -> Any:
        import torch

        if self.use_cpu or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_process_index if self.world_size > 1 else 0)

    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """Warmup length in optimizer steps (the reference's rounding: ceil of the ratio)."""
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        ratio = self.warmup_steps if self.warmup_steps > 0 else self.warmup_ratio
        return math.ceil(num_training_steps * ratio)

    # --- printing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    def __str__(self) -> str:
        body = ",\n".join(f"  {k}={v!r}" for k, v in sorted(self.to_dict().items()))
        return f"{type(self).__name__}(\n{body}\n)"

    __repr__ = __str__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, name: str, value: Any, what: str) -> None:
    if not ok:
        raise InvalidInputError(f"TrainingArguments.{name}={value!r}: expected {what}")


def _resolve_report_to(value: Any) -> list[str]:
    names = [] if value in (None, "none") else [value] if isinstance(value, str) else list(value)
    names = [n for n in names if n != "none"]
    if "all" in names:
        names = ["tensorboard"] if _has_tensorboard() else []
    for n in names:
        if n != "tensorboard":
            raise InvalidInputError(f"report_to={value!r}: {n!r} is not supported; use 'none' "
                                    "or 'tensorboard'")
        if not _has_tensorboard():
            raise MissingDependencyError("report_to='tensorboard' needs the tensorboard package: "
                                         "pip install tensorboard (or use report_to='none')")
    return names


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def check_argument_names(cls: type) -> type:
    """Give a TrainingArguments dataclass (or a subclass, which gets its own generated
    ``__init__``) the clear error naming a misspelt argument, with the closest known name."""
    dataclass_init = cls.__init__
    names: list[str] = []

    @functools.wraps(dataclass_init)  # help() and inspect.signature show the real fields
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if not names:  # computed once, on first use: the fields of this very class
            names.extend(f.name for f in dataclasses.fields(cls))
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            hints = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
            said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                             for k, h in hints.items())
            raise InvalidInputError(f"{cls.__name__} got unknown argument(s) {said}")
        dataclass_init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


check_argument_names(TrainingArguments)

__all__ = ["TrainingArguments", "STRATEGIES", "SCHEDULERS", "check_argument_names"]
