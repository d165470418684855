"""Trainer: parity with the reference Trainer, datasets, collators, callbacks, evaluation."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretrained.errors import InvalidInputError
from pretrained.models.bert import BertConfig, BertForSequenceClassification, BertForTokenClassification
from pretrained.training import (DataCollatorForLanguageModeling, DataCollatorForTokenClassification,
                                 DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback,
                                 TrainingArguments)

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "training"
sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from golden_training import N_EVAL, N_TRAIN, TRAIN_ARGS, make_data  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10x faster on one thread than on two contended ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tok:
    """The tokenizer attributes the collators use."""
    pad_token_id, mask_token_id, padding_side, all_special_ids = 0, 4, "right", [0, 1, 2, 3, 4]

    def __len__(self):
        return 128


def tiny_model(num_labels=3, cls=BertForSequenceClassification, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, num_labels=num_labels, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, **kw)
    return cls.from_config(cfg)


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), disable_tqdm=True, save_strategy="no",
                per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1)
    base.update(kw)
    return TrainingArguments(**base)


def step_losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def accuracy(p):
    return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}


def test_matches_reference_trainer(tmp_path):
    gold = json.loads((GOLD / "trainer.json").read_text())
    tensors = load_file(str(GOLD / "trainer.safetensors"))
    model = BertForSequenceClassification.from_pretrained(
        FIX / "models" / "bert-tiny-seqcls", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True, **TRAIN_ARGS),
                      train_dataset=make_data(N_TRAIN, 1), eval_dataset=make_data(N_EVAL, 2),
                      compute_metrics=accuracy)
    out = trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert out.global_step == gold["global_step"] == len(logs)
    # same data order, schedule, clipping, AdamW and weight-decay groups as the reference
    assert [h["learning_rate"] for h in logs] == pytest.approx(gold["learning_rate"], abs=1e-12)
    assert [h["loss"] for h in logs] == pytest.approx(gold["loss"], abs=1e-5)
    assert [h["grad_norm"] for h in logs] == pytest.approx(gold["grad_norm"], abs=1e-5)
    state = model.state_dict()
    diff = max(float((state[k[6:]] - v).abs().max()) for k, v in tensors.items() if k.startswith("param."))
    assert diff < 1e-4
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(gold["eval_loss"], abs=1e-5)
    assert metrics["eval_accuracy"] == gold["eval_accuracy"]
    pred = trainer.predict(make_data(N_EVAL, 2))
    assert np.abs(pred.predictions - tensors["predictions"].numpy()).max() < 1e-4
    assert pred.metrics["test_loss"] == pytest.approx(gold["test_loss"], abs=1e-5)


def test_gradient_accumulation_equals_bigger_batch(tmp_path):
    data = make_data(16, 3)
    runs = []
    for bs, ga in ((4, 1), (2, 2)):
        model = tiny_model()
        Trainer(model=model, args=args(tmp_path, per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
                                       num_train_epochs=1, max_grad_norm=1.0), train_dataset=data).train()
        runs.append(model.state_dict())
    assert max(float((runs[0][k] - runs[1][k]).abs().max()) for k in runs[0]) < 1e-5


class TorchDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {**self.rows[i], "text": "unused", "idx": i}


class FakeHFDataset:
    """The parts of datasets.Dataset the Trainer uses (recognised by its module name)."""

    def __init__(self, columns):
        self.columns = columns

    @property
    def column_names(self):
        return list(self.columns)

    def remove_columns(self, names):
        return FakeHFDataset({k: v for k, v in self.columns.items() if k not in names})

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


FakeHFDataset.__module__ = "datasets.arrow_dataset"


def test_dataset_kinds_give_the_same_run(tmp_path):
    rows = make_data(12, 4)
    hf = FakeHFDataset({"input_ids": [r["input_ids"] for r in rows], "label": [r["label"] for r in rows],
                        "sentence": ["x"] * 12, "idx": list(range(12))})
    curves = []
    for ds in (rows, TorchDataset(rows), hf):
        model = tiny_model()
        trainer = Trainer(model=model, args=args(tmp_path, max_steps=3), train_dataset=ds)
        trainer.train()
        curves.append(step_losses(trainer))
    assert curves[0] == curves[1] == curves[2] and len(curves[0]) == 3


def test_missing_label_column_is_a_clear_error(tmp_path):
    rows = [{"input_ids": [2, 5, 6]} for _ in range(4)]
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=1), train_dataset=rows)
    with pytest.raises(InvalidInputError, match=r"no label column: its columns are \['input_ids'\]"):
        trainer.train()


def test_columns_the_model_does_not_take(tmp_path):
    rows = [{"sentence": "raw text", "label": 1} for _ in range(4)]
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=1), train_dataset=rows)
    with pytest.raises(InvalidInputError, match=r"none of which the model takes as input.*tokenize"):
        trainer.train()


@pytest.mark.parametrize("bad, message", [
    ({"a": 1}, "must be a list of dicts"), ([], "is empty"), ("text", "must be a list of dicts")])
def test_bad_dataset_types(tmp_path, bad, message):
    with pytest.raises(InvalidInputError, match=message):
        Trainer(model=tiny_model(), args=args(tmp_path), train_dataset=bad)


def test_label_names_and_custom_loss(tmp_path):
    rows = [{"input_ids": [2, 5 + i, 6], "target": i % 3} for i in range(8)]
    seen = []

    def loss_fn(outputs, labels, num_items_in_batch=None):
        seen.append(labels.shape)
        return torch.nn.functional.cross_entropy(outputs.logits, labels)

    rows = [{"input_ids": r["input_ids"], "labels": r["target"]} for r in rows]
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=2), train_dataset=rows,
                      compute_loss_func=loss_fn)
    trainer.train()
    assert seen == [torch.Size([4]), torch.Size([4])]


def test_padding_collator_and_token_classification_eval(tmp_path):
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(10):
        n = 3 + i % 5
        ids = torch.randint(5, 128, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [x % 4 for x in ids]})
    model = tiny_model(num_labels=4, cls=BertForTokenClassification)
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=2, per_device_eval_batch_size=3),
                      train_dataset=rows, eval_dataset=rows, data_collator=DataCollatorForTokenClassification(Tok()))
    trainer.train()
    seen = {}

    def metrics(p):
        seen["shape"] = p.predictions.shape
        mask = p.label_ids != -100
        seen["n_tokens"] = int(mask.sum())
        return {"token_accuracy": float((p.predictions.argmax(-1) == p.label_ids)[mask].mean())}

    trainer.compute_metrics = metrics
    out = trainer.evaluate()
    assert seen["shape"] == (10, 7, 4)  # batches of different widths padded to the longest
    assert seen["n_tokens"] == sum(len(r["input_ids"]) for r in rows)
    assert 0 <= out["eval_token_accuracy"] <= 1 and out["eval_loss"] > 0


def test_collators():
    pad = DataCollatorWithPadding(Tok(), pad_to_multiple_of=4)
    b = pad([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}])
    assert b["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]] and b["labels"].tolist() == [1, 0]
    left = Tok()
    left.padding_side = "left"
    b = DataCollatorForTokenClassification(left)([{"input_ids": [5, 6], "labels": [1, 2]},
                                                  {"input_ids": [7], "labels": [3]}])
    assert b["input_ids"].tolist() == [[5, 6], [0, 7]] and b["labels"].tolist() == [[1, 2], [-100, 3]]
    causal = DataCollatorForLanguageModeling(Tok(), mlm=False)([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert causal["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]


def test_mlm_masking():
    torch.manual_seed(0)
    col = DataCollatorForLanguageModeling(Tok(), mlm_probability=0.3)
    rows = [{"input_ids": [2] + list(range(10, 60)) + [3]} for _ in range(40)]
    b = col(rows)
    labels, ids = b["labels"], b["input_ids"]
    masked = labels != -100
    assert 0.25 < masked[:, 1:-1].float().mean() < 0.35
    assert not masked[:, 0].any() and not masked[:, -1].any()  # special tokens never masked
    orig = torch.tensor(rows[0]["input_ids"]).expand_as(ids)
    assert torch.equal(labels[masked], orig[masked]) and torch.equal(ids[~masked], orig[~masked])
    frac_mask_token = (ids[masked] == 4).float().mean()
    assert 0.7 < frac_mask_token < 0.9
    with pytest.raises(InvalidInputError, match="mask token"):
        no_mask = Tok()
        no_mask.mask_token_id = None
        DataCollatorForLanguageModeling(no_mask)


def test_uneven_lengths_without_padding_collator(tmp_path):
    rows = [{"input_ids": [2] * (3 + i), "label": 0} for i in range(4)]
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=1), train_dataset=rows)
    with pytest.raises(InvalidInputError, match="DataCollatorWithPadding"):
        trainer.train()


def test_callbacks_and_early_stopping(tmp_path):
    events = []

    class Recorder(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            events.append("step")

        def on_epoch_end(self, args, state, control, **kw):
            events.append("epoch")

        def on_log(self, args, state, control, logs=None, **kw):
            events.append("log")

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            events.append(("eval", round(metrics["eval_loss"], 3)))

    data = make_data(8, 5)
    a = args(tmp_path, num_train_epochs=2, eval_strategy="epoch", logging_steps=100)
    Trainer(model=tiny_model(), args=a, train_dataset=data, eval_dataset=data, callbacks=[Recorder]).train()
    assert events.count("step") == 4 and events.count("epoch") == 2
    assert len([e for e in events if isinstance(e, tuple)]) == 2

    # Early stopping: a threshold no evaluation can beat stops after `patience` evaluations.
    a = args(tmp_path, num_train_epochs=10, eval_strategy="epoch", metric_for_best_model="loss")
    trainer = Trainer(model=tiny_model(), args=a, train_dataset=data, eval_dataset=data,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=2, early_stopping_threshold=10.0)])
    out = trainer.train()
    assert out.global_step == 3 * 2  # first evaluation sets the best, two more without progress


def test_bf16_on_cpu(tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=3, bf16=True), train_dataset=make_data(12, 6))
    trainer.train()
    assert all(np.isfinite(step_losses(trainer)))
    assert model.classifier.weight.dtype == torch.float32  # autocast: weights stay float32
    assert not torch.equal(before["classifier.weight"], model.classifier.weight)


def test_gradient_checkpointing_same_result(tmp_path):
    finals = []
    for gc in (False, True):
        model = tiny_model()
        Trainer(model=model, args=args(tmp_path, max_steps=3, gradient_checkpointing=gc),
                train_dataset=make_data(12, 6)).train()
        assert ("forward" in vars(model.bert.encoder.layer[1])) == gc  # each block wrapped
        finals.append(model.state_dict())
    assert max(float((finals[0][k] - finals[1][k]).abs().max()) for k in finals[0]) < 1e-6


def test_non_finite_loss_policy(tmp_path):
    class NaNAt2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))
            self.calls = 0

        def forward(self, x, labels=None):
            self.calls += 1
            loss = ((self.w * x).sum(-1) - labels).pow(2).mean()
            return {"loss": loss * float("nan") if self.calls == 2 else loss}

    rows = [{"x": [1.0, 2.0, 3.0], "labels": 1.0} for _ in range(8)]
    model = NaNAt2()
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=4, per_device_train_batch_size=2),
                      train_dataset=rows)
    trainer.train()
    assert trainer.state.num_skipped_steps == 1 and torch.isfinite(model.w).all()
    model = NaNAt2()
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=4, per_device_train_batch_size=2,
                                             nan_inf_policy="raise"), train_dataset=rows)
    with pytest.raises(InvalidInputError, match="non-finite loss or gradients at step 2"):
        trainer.train()


def test_save_model_round_trip(tmp_path):
    from pretrained import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(FIX / "tokenizers" / "bert_wordpiece")
    texts = ["the quick brown fox", "hello world", "a model", "training data set test"]
    rows = [{**tok(t), "label": i % 2} for i, t in enumerate(texts * 2)]
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_config(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2))
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=2), train_dataset=rows, processing_class=tok)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    again = BertForSequenceClassification.from_pretrained(tmp_path / "final")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "final")
    batch = tok2(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_load_best_model_at_end(tmp_path):
    data = make_data(8, 7)
    state = {}

    class Remember(TrainerCallback):
        def on_evaluate(self, args, st, control, metrics=None, model=None, **kw):
            state[st.global_step] = (metrics["eval_loss"], {k: v.clone() for k, v in model.state_dict().items()})

    a = args(tmp_path, num_train_epochs=3, eval_strategy="epoch", save_strategy="epoch",
             load_best_model_at_end=True, learning_rate=5e-3, save_total_limit=1)
    model = tiny_model()
    trainer = Trainer(model=model, args=a, train_dataset=data, eval_dataset=make_data(8, 8), callbacks=[Remember])
    trainer.train()
    best_step = min(state, key=lambda s: state[s][0])
    assert trainer.state.best_global_step == best_step
    assert all(torch.equal(v, state[best_step][1][k]) for k, v in model.state_dict().items())
    kept = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert f"checkpoint-{best_step}" in kept and "checkpoint-6" in kept and len(kept) <= 2


def test_without_a_progress_bar_each_log_is_printed(tmp_path, capsys):
    """disable_tqdm=True (output to a log file): the logs are printed as lines, as the reference's
    PrinterCallback does, so a long run shows its progress."""
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=3, logging_steps=1),
                      train_dataset=make_data(12, 9))
    trainer.train()
    lines = [line for line in capsys.readouterr().out.splitlines() if "'loss'" in line]
    assert len(lines) == 3 and "'epoch'" in lines[0]


def test_progress_bar_and_log_history(tmp_path, capsys):
    trainer = Trainer(model=tiny_model(), args=args(tmp_path, max_steps=2, disable_tqdm=False),
                      train_dataset=make_data(8, 9))
    trainer.train()
    err = capsys.readouterr().err
    assert "2/2" in err
    assert trainer.state.log_history[-1]["step"] == 2 and "train_loss" in trainer.state.log_history[-1]
