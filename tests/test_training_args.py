"""TrainingArguments: defaults, the older argument names, validation with clear errors."""

import pytest

from pretrained.errors import InvalidInputError, MissingDependencyError
from pretrained.training import TrainingArguments


def test_defaults_and_printable(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path))
    assert (args.learning_rate, args.per_device_train_batch_size, args.lr_scheduler_type) == (5e-5, 8, "linear")
    assert args.eval_strategy == "no" and args.save_strategy == "steps"
    assert args.logging_dir == str(tmp_path / "runs")
    text = str(args)
    assert text.startswith("TrainingArguments(\n") and "learning_rate=5e-05" in text
    assert '"seed": 42' in args.to_json_string()


def test_older_names_still_work():
    args = TrainingArguments(evaluation_strategy="epoch", save_strategy="epoch", warmup_ratio=0.1)
    assert args.eval_strategy == "epoch" and args.evaluation_strategy == "epoch"
    assert args.get_warmup_steps(25) == 3  # ceil(2.5), as the reference


def test_old_and_new_name_disagree():
    with pytest.raises(InvalidInputError, match="evaluation_strategy='epoch' and eval_strategy='steps'"):
        TrainingArguments(evaluation_strategy="epoch", eval_strategy="steps")


def test_eval_steps_default_to_logging_steps():
    assert TrainingArguments(eval_strategy="steps", logging_steps=7).eval_steps == 7


@pytest.mark.parametrize("kwargs, message", [
    (dict(load_best_model_at_end=True), "eval_strategy='no'"),
    (dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="steps"),
     "eval_strategy='epoch' and save_strategy='steps' differ"),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_steps=5),
     r"save_steps \(5\) to be a multiple of eval_steps \(3\)"),
    (dict(warmup_ratio=0.1, warmup_steps=5), "pass only one"),
    (dict(fp16=True, bf16=True), "choose one"),
    (dict(per_device_train_batch_size=0), "per_device_train_batch_size=0"),
    (dict(gradient_accumulation_steps=1.5), "gradient_accumulation_steps=1.5"),
    (dict(learning_rate=-1.0), "learning_rate=-1.0"),
    (dict(lr_scheduler_type="cosine_restarts"), "lr_scheduler_type='cosine_restarts'"),
    (dict(eval_strategy="sometimes"), "eval_strategy='sometimes'"),
    (dict(warmup_ratio=1.5), "warmup_ratio=1.5"),
    (dict(adam_beta1=1.0), "adam_beta1=1.0"),
    (dict(save_total_limit=0), "save_total_limit=0"),
    (dict(max_steps=0), "max_steps=0"),
    (dict(num_train_epochs=0), "num_train_epochs=0"),
    (dict(logging_steps=0), "logging_steps=0"),
    (dict(save_strategy="best"), "save_strategy='best'"),
    (dict(report_to="wandb"), "'wandb' is not supported"),
    (dict(nan_inf_policy="ignore"), "nan_inf_policy='ignore'"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        TrainingArguments(**kwargs)


def test_misspelt_argument_suggests_the_name():
    with pytest.raises(InvalidInputError, match="'learning_rat' \\(did you mean 'learning_rate'\\?\\)"):
        TrainingArguments(learning_rat=1e-3)


def test_fp16_needs_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error is for CPU-only machines")
    with pytest.raises(InvalidInputError, match="fp16=True needs a CUDA GPU.*bf16=True"):
        TrainingArguments(fp16=True)
    assert TrainingArguments(bf16=True).bf16  # bf16 is fine on CPU


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    import pretrained.training.arguments as mod

    monkeypatch.setattr(mod, "_has_tensorboard", lambda: False)
    with pytest.raises(MissingDependencyError, match="pip install tensorboard"):
        TrainingArguments(report_to="tensorboard")
    assert TrainingArguments(report_to="all").report_to == []


def test_best_model_defaults():
    args = TrainingArguments(eval_strategy="steps", eval_steps=5, save_steps=10, load_best_model_at_end=True)
    assert (args.metric_for_best_model, args.greater_is_better) == ("loss", False)
    args = TrainingArguments(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                             metric_for_best_model="accuracy")
    assert args.greater_is_better is True
