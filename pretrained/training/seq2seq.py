"""Training encoder-decoder models: :class:`Seq2SeqTrainingArguments` and :class:`Seq2SeqTrainer`.

With ``predict_with_generate=True``, ``evaluate()`` and ``predict()`` run ``model.generate`` on
each batch's inputs and hand the generated ids (not logits) to ``compute_metrics``, so a
translation or summary metric (BLEU, ROUGE) is computed on real outputs. Generation settings come
from the call (``evaluate(max_new_tokens=32, num_beams=4)``), else from the arguments
(``generation_max_length``, ``generation_num_beams``, ``generation_config``), else from the
model's own ``generation_config``.

The predictions are padded with the pad id to one width (every batch to ``max_length`` when it
is known, as the reference does, and across batches too), so ``tokenizer.batch_decode(preds,
skip_special_tokens=True)`` works as is; labels keep -100 where there was no label (replace it by
the pad id before decoding them).

Example::

    >>> from pretrained.training import Seq2SeqTrainingArguments
    >>> args = Seq2SeqTrainingArguments("out", predict_with_generate=True, generation_num_beams=4)
    >>> args.predict_with_generate, args.generation_num_beams, args.generation_max_length
    (True, 4, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import InvalidInputError
from .arguments import TrainingArguments, check_argument_names
from .collators import DataCollatorForSeq2Seq
from .distributed import unwrap
from .trainer import Trainer
from .utils import PredictionOutput

# Batch fields that are targets or teacher-forcing inputs, never inputs of generate().
_NOT_GENERATION_INPUTS = ("decoder_input_ids", "decoder_attention_mask")


@dataclass
class Seq2SeqTrainingArguments(TrainingArguments):
    """:class:`TrainingArguments` plus generation at evaluation time.

    ``predict_with_generate``: evaluate/predict with ``model.generate`` (metrics on generated
    ids). ``generation_max_length`` / ``generation_num_beams``: the defaults of those calls.
    ``generation_config``: a :class:`~pretrained.generation.GenerationConfig`, or a folder or
    file with a ``generation_config.json``, that replaces the model's own. ``sortish_sampler`` is
    accepted for scripts written for the reference, where it no longer changes ordinary datasets
    either; the order here is always the seeded shuffle.
    """

    sortish_sampler: bool = False
    predict_with_generate: bool = False
    generation_max_length: int | None = None
    generation_num_beams: int | None = None
    generation_config: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("generation_max_length", "generation_num_beams"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                          and value >= 1):
                raise InvalidInputError(f"Seq2SeqTrainingArguments.{name}={value!r}: expected "
                                        "None or an int >= 1")


check_argument_names(Seq2SeqTrainingArguments)


class Seq2SeqTrainer(Trainer):
    """:class:`Trainer` for encoder-decoder models, with generation at evaluation time when
    ``args.predict_with_generate`` (see the module docstring).

    Without a ``data_collator`` and with a tokenizer that pads, batches are made by
    :class:`DataCollatorForSeq2Seq` (inputs and labels padded separately, ``decoder_input_ids``
    from the model), since the plain padding collator cannot batch labels of other lengths.

    Example::

        >>> from pretrained.training import Seq2SeqTrainer, Seq2SeqTrainingArguments  # doctest: +SKIP
        >>> trainer = Seq2SeqTrainer(model=model, args=Seq2SeqTrainingArguments(
        ...     "out", predict_with_generate=True), train_dataset=train, eval_dataset=test,
        ...     processing_class=tokenizer, compute_metrics=bleu)        # doctest: +SKIP
        >>> trainer.evaluate(max_new_tokens=32, num_beams=4)["eval_bleu"]  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None,
                 data_collator: Callable | None = None, *rest: Any, **kwargs: Any) -> None:
        if args is None:
            args = Seq2SeqTrainingArguments()
        tokenizer = kwargs.get("processing_class", kwargs.get("tokenizer"))
        if data_collator is None and not rest and getattr(tokenizer, "pad_token_id", None) is not None \
                and model is not None:
            data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)
        super().__init__(model, args, data_collator, *rest, **kwargs)
        self._gen_kwargs: dict[str, Any] = {}
        config = getattr(args, "generation_config", None)
        if config is not None:
            self.model.generation_config = load_generation_config(config)

    # --- evaluation with generation ---------------------------------------------------------
    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval", **gen_kwargs: Any) -> dict[str, float]:
        """As :meth:`Trainer.evaluate`; ``gen_kwargs`` (``max_new_tokens``, ``max_length``,
        ``num_beams``, any ``generate()`` keyword) apply to this call's generation."""
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test", **gen_kwargs: Any) -> PredictionOutput:
        """As :meth:`Trainer.predict`; ``predictions`` are the generated ids when
        ``predict_with_generate``."""
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    def _generation_kwargs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The call's kwargs, completed from the arguments as the reference does: a length
        limit from ``generation_max_length`` only when the call sets none."""
        out = dict(given)
        if out.get("max_length") is None and out.get("max_new_tokens") is None:
            out["max_length"] = getattr(self.args, "generation_max_length", None)
        if out.get("num_beams") is None:
            out["num_beams"] = getattr(self.args, "generation_num_beams", None)
        return {k: v for k, v in out.items() if v is not None}  # None: the model's own default

    @property
    def prediction_pad_id(self) -> int:
        """Padding of generated ids across batches (read by the evaluation loop); -100 when
        predictions are logits."""
        if not getattr(self.args, "predict_with_generate", False) or self.args.prediction_loss_only:
            return -100
        return self._pad_id()

    def _pad_id(self) -> int:
        for owner in (self.processing_class, getattr(unwrap(self.model), "config", None)):
            for name in ("pad_token_id", "eos_token_id"):
                value = getattr(owner, name, None)
                if isinstance(value, (list, tuple)):
                    value = value[0] if value else None
                if value is not None:
                    return int(value)
        raise InvalidInputError("predict_with_generate pads generated ids to one width, but neither "
                                "the tokenizer nor the model config has a pad or eos token id; set "
                                "model.config.pad_token_id")

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        """(loss, generated ids, labels) with ``predict_with_generate``; else the Trainer's step."""
        if not getattr(self.args, "predict_with_generate", False) or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        base = unwrap(model)
        if not hasattr(base, "generate"):
            raise InvalidInputError(f"predict_with_generate=True, but {type(base).__name__} has no "
                                    "generate() method")
        skip = set(self.label_names) | set(_NOT_GENERATION_INPUTS)
        generation_inputs = {k: v for k, v in inputs.items() if k not in skip}
        with torch.no_grad(), self._autocast():
            generated = base.generate(**generation_inputs, **self._gen_kwargs)
        if not isinstance(generated, torch.Tensor):  # return_dict_in_generate=True
            generated = generated.sequences
        generated = self._pad_to(generated, self._target_width(base))
        loss, labels = None, None
        has_labels = bool(self.label_names) and all(inputs.get(k) is not None for k in self.label_names)
        if has_labels:
            labels = inputs[self.label_names[0]] if len(self.label_names) == 1 else \
                tuple(inputs[k] for k in self.label_names)
            with torch.no_grad(), self._autocast():
                loss = self.compute_loss(model, inputs).detach()
        return loss, generated, labels

    def _target_width(self, model: nn.Module) -> int | None:
        """The reference's width for generated ids: ``max_length``, or ``max_new_tokens`` + 1
        (the decoder start token) for an encoder-decoder model."""
        kw = self._gen_kwargs
        config = getattr(model, "generation_config", None)
        if kw.get("max_new_tokens") is not None:
            encdec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
            return kw["max_new_tokens"] + 1 if encdec else None
        if kw.get("max_length") is not None:
            return kw["max_length"]
        if config is not None and getattr(config, "max_new_tokens", None) is None:
            return getattr(config, "max_length", None)
        return None

    def _pad_to(self, ids: torch.Tensor, width: int | None) -> torch.Tensor:
        if width is None or ids.shape[-1] >= width:
            return ids
        out = ids.new_full((ids.shape[0], width), self._pad_id())
        out[:, : ids.shape[-1]] = ids
        return out


def load_generation_config(value: Any) -> Any:
    """A GenerationConfig from one, or from a folder/file holding ``generation_config.json``."""
    from ..generation.config import GenerationConfig

    if isinstance(value, GenerationConfig):
        return value
    if isinstance(value, dict):
        return GenerationConfig(**value)
    try:
        return GenerationConfig.from_pretrained(value)
    except (OSError, TypeError, InvalidInputError) as e:
        raise InvalidInputError(f"generation_config={value!r}: not a GenerationConfig, a dict, or "
                                f"a folder/file with generation_config.json ({e})") from None


__all__ = ["Seq2SeqTrainingArguments", "Seq2SeqTrainer", "load_generation_config"]
