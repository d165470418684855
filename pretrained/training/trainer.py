"""Trainer: the training loop, evaluation, prediction and checkpoints for any model that returns
a loss (this library's models, a LoRA model from :mod:`pretrained.peft`, or a plain nn.Module).

Example::

    >>> import torch
    >>> from pretrained.models.bert import BertConfig, BertForSequenceClassification
    >>> from pretrained.training import Trainer, TrainingArguments
    >>> model = BertForSequenceClassification.from_config(BertConfig(
    ...     vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=32, num_labels=2))
    >>> data = [{"input_ids": [2, i % 40 + 5, 3], "label": i % 2} for i in range(8)]
    >>> args = TrainingArguments(output_dir="/tmp/doc-trainer", max_steps=2, save_strategy="no",
    ...                          disable_tqdm=True, per_device_train_batch_size=4)
    >>> Trainer(model=model, args=args, train_dataset=data).train().global_step  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    2
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import CheckpointError, InvalidInputError
from . import checkpoint as ckpt_io
from .arguments import TrainingArguments
from .callbacks import (CallbackHandler, DefaultFlowCallback, PrinterCallback, ProgressCallback,
                        TensorBoardCallback, TrainerCallback, TrainerControl, TrainerState)
from .collators import DataCollatorWithPadding, default_data_collator
from .data import (EpochSampler, FilteringCollator, LABEL_ALIASES, ShardSampler, check_dataset,
                   columns_of, forward_columns, prepare_dataset)
from .distributed import (barrier, init_distributed, is_distributed, mean_across_ranks,
                          rank, unwrap, world_size, wrap_ddp)
from .evaluation import evaluation_loop, predictions_of
from .schedules import create_optimizer, get_scheduler
from .utils import PredictionOutput, TrainOutput, enable_gradient_checkpointing, set_seed

logger = logging.getLogger("pretrained")


class Trainer:
    """Train, evaluate and predict with ``model`` (see the module docstring for an example).

    ``processing_class`` (or the older ``tokenizer``) pads batches when no ``data_collator`` is
    given, and is saved with the model. ``compute_metrics(EvalPrediction) -> dict`` adds metrics
    to ``evaluate()``. ``optimizers=(optimizer, scheduler)`` replaces the default AdamW + schedule.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        model_init: Callable[[], nn.Module] | None = None,
        compute_metrics: Callable | None = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        preprocess_logits_for_metrics: Callable | None = None,
        compute_loss_func: Callable | None = None,
        tokenizer: Any = None,
    ) -> None:
        if args is None:
            args = TrainingArguments()
        if not isinstance(args, TrainingArguments):
            raise InvalidInputError(f"args must be a TrainingArguments, got {type(args).__name__}")
        self.args = args
        set_seed(args.seed)
        if model is None:
            if model_init is None:
                raise InvalidInputError("Trainer needs a model (or model_init)")
            model = model_init()
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch nn.Module, got {type(model).__name__}")
        self.device = args.device
        init_distributed(self.device, args.ddp_backend, args.ddp_timeout)
        self.model = model.to(self.device)
        self.model_wrapped: nn.Module = self.model
        self.processing_class = processing_class if processing_class is not None else tokenizer
        if data_collator is None:
            pads = getattr(self.processing_class, "pad_token_id", None) is not None
            data_collator = DataCollatorWithPadding(self.processing_class) if pads else default_data_collator
        self.data_collator = data_collator
        self.train_dataset = check_dataset(train_dataset, "train_dataset")
        self.eval_dataset = check_dataset(eval_dataset, "eval_dataset")
        self.compute_metrics = compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.compute_loss_func = compute_loss_func
        self.optimizer, self.lr_scheduler = optimizers
        self._own_optimizer, self._own_scheduler = optimizers[0] is None, optimizers[1] is None
        self.scaler = None
        base = _base_model(self.model)
        self._forward_columns = forward_columns(base)
        self.label_names = list(args.label_names) if args.label_names is not None else _default_labels(base)
        self.state = TrainerState(is_local_process_zero=args.local_process_index == 0,
                                  is_world_process_zero=rank() == 0)
        self.control = TrainerControl()
        defaults: list[Any] = [DefaultFlowCallback()]
        if "tensorboard" in args.report_to:
            defaults.append(TensorBoardCallback())
        defaults.append(PrinterCallback() if args.disable_tqdm else ProgressCallback())
        self.callback_handler = CallbackHandler(defaults + list(callbacks or []))
        if args.gradient_checkpointing:
            # the model's own method when it has one (a PeftModel reaches its base's), which also
            # makes the embeddings' output require gradients; else any module's blocks
            enable = getattr(self.model, "gradient_checkpointing_enable", None)
            if enable is not None:
                enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
            else:
                enable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs)
        self._event("on_init_end")

    # --- callbacks --------------------------------------------------------------------------
    def add_callback(self, callback: TrainerCallback | type) -> None:
        self.callback_handler.add_callback(callback)

    def remove_callback(self, callback: TrainerCallback | type) -> None:
        self.callback_handler.remove_callback(callback)

    def _event(self, name: str, **kwargs: Any) -> None:
        self.control = self.callback_handler.call(
            name, self.args, self.state, self.control, model=self.model, optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler, processing_class=self.processing_class, **kwargs)

    def is_world_process_zero(self) -> bool:
        return rank() == 0

    # --- data -------------------------------------------------------------------------------
    def _loader(self, dataset: Any, what: str, batch_size: int, sampler: Any) -> DataLoader:
        keep = None if self._forward_columns is None else self._forward_columns + self.label_names
        dataset, column_filter = prepare_dataset(dataset, keep, self.label_names, what,
                                                 self.args.remove_unused_columns)
        collate = self.data_collator if column_filter is None else FilteringCollator(column_filter, self.data_collator)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=self.args.dataloader_num_workers,
                          drop_last=self.args.dataloader_drop_last and sampler.__class__ is EpochSampler,
                          pin_memory=self.args.dataloader_pin_memory and self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.args.seed))

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise InvalidInputError("Trainer.train() needs a train_dataset")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        sampler = EpochSampler(len(self.train_dataset), seed, rank=rank(), world_size=world_size())
        loader = self._loader(self.train_dataset, "train_dataset", self.args.per_device_train_batch_size, sampler)
        self._check_labels(self.train_dataset)
        return loader

    def get_eval_dataloader(self, dataset: Any) -> DataLoader:
        sampler = ShardSampler(len(dataset), rank(), world_size())
        return self._loader(dataset, "eval_dataset", self.args.per_device_eval_batch_size, sampler)

    def _check_labels(self, dataset: Any) -> None:
        """Fail before training when no example has a label the model can take."""
        if self.compute_loss_func is not None or hasattr(self.data_collator, "mlm"):
            return  # the loss function or the LM collator provides the targets
        columns = columns_of(dataset)
        names = set(self.label_names) | set(LABEL_ALIASES)
        if columns and self.label_names and not names & set(columns):
            raise InvalidInputError(
                f"train_dataset has no label column: its columns are {columns}, and the model "
                f"needs {self.label_names} (also accepted: 'label', 'label_ids'). Add the labels, "
                "set TrainingArguments.label_names, or use a data collator that makes them")

    # --- training ---------------------------------------------------------------------------
    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        """AdamW with the reference's weight-decay groups and the schedule of the arguments
        (made afresh for every train() call unless given to the Trainer)."""
        if self._own_optimizer:
            self.optimizer = None
        if self._own_scheduler:
            self.lr_scheduler = None
        if self.optimizer is None:
            self.optimizer = create_optimizer(self.model, self.args)
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type, self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)

    def train(self, resume_from_checkpoint: str | bool | None = None, resume_model_only: bool = False) -> TrainOutput:
        """Train; ``resume_from_checkpoint`` is a checkpoint folder, or True/"latest" for the
        newest one in ``output_dir``. The resumed run continues exactly where the saved one was
        (same data order, RNG, optimizer and schedule). ``resume_model_only=True`` loads only the
        weights (for a checkpoint whose optimizer or RNG files are damaged) and starts afresh."""
        args = self.args
        if args.should_save:
            removed = ckpt_io.remove_temp_checkpoints(args.output_dir)
            if removed:
                logger.warning("removed unfinished checkpoints %s left by an interrupted save", removed)
        barrier()
        folder = self._resolve_checkpoint(resume_from_checkpoint)
        loader = self.get_train_dataloader()
        sampler: EpochSampler = loader.sampler
        steps_in_epoch = len(loader)
        ga = args.gradient_accumulation_steps
        updates_per_epoch = max(math.ceil(steps_in_epoch / ga), 1)
        if args.max_steps > 0:
            max_steps, num_epochs = args.max_steps, math.ceil(args.max_steps / updates_per_epoch)
        else:
            max_steps = math.ceil(args.num_train_epochs * updates_per_epoch)
            num_epochs = math.ceil(args.num_train_epochs)
        total_batch = args.per_device_train_batch_size * ga * world_size()

        self.state = TrainerState(is_local_process_zero=args.local_process_index == 0,
                                  is_world_process_zero=rank() == 0)
        epochs_trained, skip_batches, rng = 0, 0, None
        self.model.train()
        self.create_optimizer_and_scheduler(max_steps)
        if args.fp16:
            self.scaler = torch.amp.GradScaler("cuda")
        if folder is not None:
            rng = self._load_checkpoint(folder, resume_model_only, total_batch)
            if not resume_model_only:
                epochs_trained = self.state.global_step // updates_per_epoch
                if not args.ignore_data_skip:
                    skip_batches = (self.state.global_step % updates_per_epoch) * ga
        state = self.state
        state.max_steps, state.num_train_epochs, state.train_batch_size = max_steps, num_epochs, total_batch
        state.compute_steps(args, max_steps)
        model = wrap_ddp(self.model, self.device) if is_distributed() else self.model
        self.model_wrapped = model
        self.model.train()

        start = time.time()
        first_step = state.global_step
        self._tr_loss = torch.zeros((), device=self.device)
        self._total_loss = 0.0
        self._last_logged = state.global_step
        self.control = TrainerControl()
        self._event("on_train_begin")
        if args.eval_on_start:
            self.evaluate()
        for epoch in range(epochs_trained, num_epochs):
            skip = skip_batches if epoch == epochs_trained else 0
            sampler.set_epoch(epoch, skip * args.per_device_train_batch_size)
            loader.generator.manual_seed(args.seed + epoch)  # worker seeds, not the global RNG
            it = iter(loader)
            if rng is not None:  # restore exactly where the saved run was, before any draw
                ckpt_io.set_rng_state(*rng)
                rng = None
            self.control.should_epoch_stop = False
            self._event("on_epoch_begin")
            self._run_epoch(model, it, epoch, skip, steps_in_epoch, updates_per_epoch)
            if self.control.should_training_stop:
                break
        return self._finish_training(start, first_step, max_steps)

    def _run_epoch(self, model: nn.Module, it: Any, epoch: int, skip: int, steps_in_epoch: int,
                   updates_per_epoch: int) -> None:
        ga = self.args.gradient_accumulation_steps
        remainder = steps_in_epoch % ga or ga
        step, grad_norm, lr = skip - 1, None, None
        for update in range(skip // ga, updates_per_epoch):
            n = ga if update != updates_per_epoch - 1 else remainder
            batches = [b for _, b in zip(range(n), it)]  # range first: never over-draw
            for i, batch in enumerate(batches):
                step += 1
                if step % ga == 0:
                    self.control.reset_step()
                    self._event("on_step_begin")
                last = i == len(batches) - 1
                sync = contextlib.nullcontext() if last or model is self.model else model.no_sync()
                with sync:
                    loss = self.training_step(model, batch, len(batches))
                if self.args.logging_nan_inf_filter and not torch.isfinite(loss):
                    # log the running average instead of a NaN
                    self._tr_loss += self._tr_loss / (1 + self.state.global_step - self._last_logged)
                else:
                    self._tr_loss += loss
                if not last:
                    self._event("on_substep_end")
                    continue
                lr = self.lr_scheduler.get_last_lr()[0]
                grad_norm = self._optimizer_step()
                self.state.global_step += 1
                self.state.epoch = epoch + (step + 1) / steps_in_epoch
                self._event("on_step_end")
                self._maybe_log_save_evaluate(grad_norm, lr)
            if self.control.should_epoch_stop or self.control.should_training_stop:
                break
        self._event("on_epoch_end")
        self._maybe_log_save_evaluate(grad_norm, lr)

    def _autocast(self) -> Any:
        if self.args.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.args.fp16:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _prepare_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def training_step(self, model: nn.Module, inputs: dict[str, Any], accumulation: int = 1) -> torch.Tensor:
        """Forward and backward on one micro-batch; returns the (scaled) detached loss."""
        model.train()
        with self._autocast():
            loss = self.compute_loss(model, self._prepare_inputs(inputs))
        loss = loss / accumulation
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return loss.detach()

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False) -> Any:
        """The model's loss (or ``compute_loss_func(outputs, labels)``)."""
        labels = None
        if self.compute_loss_func is not None:
            inputs = dict(inputs)
            labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=None)
        elif isinstance(outputs, dict):
            loss = outputs.get("loss")
        elif isinstance(outputs, (tuple, list)):
            loss = outputs[0] if outputs and isinstance(outputs[0], torch.Tensor) and outputs[0].dim() == 0 else None
        else:
            loss = getattr(outputs, "loss", None)
        if loss is None:
            raise InvalidInputError(
                f"the model returned no loss for a batch with keys {sorted(inputs)}; training and "
                f"evaluation with a loss need labels ({self.label_names} or 'label'): add a label "
                "column, set label_names, or pass compute_loss_func")
        return (loss, outputs) if return_outputs else loss

    def _optimizer_step(self) -> float | None:
        args = self.args
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if args.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        else:
            norm = _total_norm(params)
        finite = bool(torch.isfinite(norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.lr_scheduler.step()
        elif finite:
            self.optimizer.step()
            self.lr_scheduler.step()
        elif args.nan_inf_policy == "raise":
            raise InvalidInputError(
                f"non-finite loss or gradients at step {self.state.global_step + 1}; lower the "
                "learning rate, check the data, or set nan_inf_policy='skip'")
        else:
            self.state.num_skipped_steps += 1
            logger.warning("step %d: non-finite gradients, optimizer step skipped (%d so far)",
                           self.state.global_step + 1, self.state.num_skipped_steps)
        self.model.zero_grad(set_to_none=True)
        return float(norm)

    def _maybe_log_save_evaluate(self, grad_norm: float | None, lr: float | None) -> None:
        if self.control.should_log and self.state.global_step > self._last_logged:
            tr_loss = float(mean_across_ranks(self._tr_loss))
            self._tr_loss.zero_()
            logs = {"loss": tr_loss / (self.state.global_step - self._last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm
            logs["learning_rate"] = lr if lr is not None else self.lr_scheduler.get_last_lr()[0]
            self._total_loss += tr_loss
            self._last_logged = self.state.global_step
            self.log(logs)
        if self.control.should_evaluate:
            metrics = self.evaluate()
            new_best = self._update_best(metrics)
            if self.args.save_strategy == "best":
                self.control.should_save = new_best
        if self.control.should_save:
            self._save_checkpoint()
            self.control.should_save = False
            self._event("on_save")

    def _update_best(self, metrics: dict[str, float]) -> bool:
        name = self.args.metric_for_best_model
        if name is None:
            return False
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise InvalidInputError(f"metric_for_best_model={name!r}: {key!r} is not among the "
                                    f"evaluation metrics {sorted(metrics)}")
        value, best = metrics[key], self.state.best_metric
        if best is None or (value > best if self.args.greater_is_better else value < best):
            self.state.best_metric = value
            self.state.best_global_step = self.state.global_step
            return True
        return False

    def _finish_training(self, start: float, first_step: int, max_steps: int) -> TrainOutput:
        self._total_loss += float(mean_across_ranks(self._tr_loss))
        steps = self.state.global_step - first_step
        runtime = time.time() - start
        metrics = {"train_runtime": round(runtime, 4),
                   "train_samples_per_second": round(steps * self.state.train_batch_size / max(runtime, 1e-9), 3),
                   "train_steps_per_second": round(steps / max(runtime, 1e-9), 3),
                   "total_flos": 0.0, "train_loss": self._total_loss / max(steps, 0.001)}
        self.log(metrics)
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best is not None:
            if not os.path.isdir(best):
                raise CheckpointError(f"the best checkpoint {best!r} no longer exists")
            ckpt_io.load_model_weights(self.model, best)
            logger.info("loaded the best model from %s (%s=%s)", best,
                        self.args.metric_for_best_model, self.state.best_metric)
        self._event("on_train_end")
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)

    def log(self, logs: dict[str, float]) -> None:
        if self.state.epoch is not None:
            logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control.should_log = False
        self._event("on_log", logs=logs)

    # --- checkpoints ------------------------------------------------------------------------
    def _resolve_checkpoint(self, value: str | bool | None) -> Path | None:
        if value is None or value is False:
            return None
        if value is True or value == "latest":
            found = ckpt_io.latest_checkpoint(self.args.output_dir)
            if found is None:
                raise CheckpointError(f"resume_from_checkpoint={value!r}: no checkpoint-* folder in "
                                      f"output_dir {self.args.output_dir!r}")
            return found
        if not os.path.isdir(value):
            raise CheckpointError(f"resume_from_checkpoint={value!r} is not a folder")
        return Path(value)

    def _save_checkpoint(self) -> None:
        ckpt_io.save_checkpoint(self)

    def _load_checkpoint(self, folder: Path, model_only: bool, total_batch: int) -> tuple | None:
        return ckpt_io.restore_checkpoint(self, folder, model_only, total_batch)

    def save_model(self, output_dir: str | None = None) -> None:
        """Save the model (and the processing class) for ``from_pretrained``; main process only."""
        out = Path(output_dir or self.args.output_dir)
        if self.args.should_save:
            out.mkdir(parents=True, exist_ok=True)
            ckpt_io.save_model_weights(self.model, out)
            if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
                self.processing_class.save_pretrained(str(out))
            (out / ckpt_io.ARGS_NAME).write_text(self.args.to_json_string())
        barrier()

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = check_dataset(eval_dataset, "eval_dataset") if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise InvalidInputError("evaluate() needs an eval_dataset (here or in Trainer(...))")
        out = evaluation_loop(self, dataset, metric_key_prefix, ignore_keys, self.args.prediction_loss_only)
        metrics = dict(out.metrics)
        self.log(metrics)
        self.control.should_evaluate = False
        self._event("on_evaluate", metrics=metrics)
        return metrics

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        dataset = check_dataset(test_dataset, "test_dataset")
        out = evaluation_loop(self, dataset, metric_key_prefix, ignore_keys, False)
        self._event("on_predict", metrics=out.metrics)
        return out

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        """(loss, predictions, labels) for one batch, without gradients."""
        inputs = self._prepare_inputs(inputs)
        has_labels = bool(self.label_names) and all(inputs.get(k) is not None for k in self.label_names)
        labels = None
        if has_labels:
            found = tuple(inputs[k] for k in self.label_names)
            labels = found[0] if len(found) == 1 else found
        with torch.no_grad(), self._autocast():
            if has_labels or self.compute_loss_func is not None and "labels" in inputs:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach()
            else:
                loss, outputs = None, model(**inputs)
        if prediction_loss_only:
            return loss, None, None
        return loss, predictions_of(outputs, ignore_keys), labels


def _total_norm(params: list[torch.Tensor]) -> torch.Tensor:
    if not params:
        return torch.zeros(())
    grads = [p.grad for p in params]
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _base_model(model: nn.Module) -> nn.Module:
    model = unwrap(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _default_labels(model: nn.Module) -> list[str]:
    if "QuestionAnswering" in type(model).__name__:
        return ["start_positions", "end_positions"]
    cols = forward_columns(model)
    return ["labels"] if cols is None or "labels" in cols else []


__all__ = ["Trainer"]
