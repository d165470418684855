"""DataCollatorForSeq2Seq, Seq2SeqTrainingArguments and Seq2SeqTrainer.

The expected tensors are written by hand from the reference's rules (labels padded with -100 to
their own longest length, on the tokenizer's side; decoder inputs = labels shifted right behind
the start token, -100 read as padding). The trainer tests use a stand-in encoder-decoder that
keeps the model contract of ``pretrained.layers.seq2seq`` and whose ``generate`` is a known
function of its input (start token, the input's tokens, eos), so the predictions that reach
``compute_metrics`` can be written out exactly; the last tests run the real (tiny, random) T5 and
Marian: their decoder inputs from the collator, and a copy task learnt and generated back.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from pretrained.errors import InvalidInputError
from pretrained.layers.seq2seq import decoder_inputs, seq2seq_lm_loss, shift_tokens_right
from pretrained.outputs import Seq2SeqLMOutput
from pretrained.training import (DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                                 Trainer)

PAD, EOS, START = 0, 1, 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two contended ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tok:
    """The tokenizer attributes the collators and the trainer use."""

    pad_token_id, eos_token_id, padding_side = PAD, EOS, "right"


class LeftTok(Tok):
    padding_side = "left"


class Contract(nn.Module):
    """A tiny encoder-decoder that follows the contract (labels -> shifted decoder inputs,
    ``prepare_decoder_input_ids_from_labels``), without ``generate``."""

    def __init__(self, vocab: int = 16, dim: int = 16) -> None:
        super().__init__()
        self.config = SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=START,
                                      is_encoder_decoder=True)
        self.enc = nn.Embedding(vocab, dim)
        self.dec = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)
        self.calls: list[dict] = []

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, PAD, START)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, labels=None):
        dec = decoder_inputs(self.config, decoder_input_ids, labels)
        mask = attention_mask.unsqueeze(-1).float()
        context = (self.enc(input_ids) * mask).sum(1) / mask.sum(1)
        logits = self.out(self.dec(dec) + context[:, None])
        loss = seq2seq_lm_loss(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(loss=loss, logits=logits)


class StandIn(Contract):
    """:class:`Contract` with a ``generate`` that ignores the weights: it answers START + the
    input's unpadded tokens + EOS, cut at the length limit, each row padded with PAD to the
    batch's longest, as a real batched generate returns them."""

    def generate(self, input_ids, attention_mask=None, max_length=20, max_new_tokens=None, num_beams=1):
        self.calls.append({"max_length": max_length, "max_new_tokens": max_new_tokens,
                           "num_beams": num_beams, "batch": input_ids.shape[0]})
        limit = max_new_tokens + 1 if max_new_tokens is not None else max_length
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            rows.append(([START] + [t for t, m in zip(ids, mask) if m] + [EOS])[:limit])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


# --- the collator ---------------------------------------------------------------------------
FEATURES = [{"input_ids": [5, 6, 7], "labels": [8, 9, 1]},
            {"input_ids": [10], "labels": [11, 1]},
            {"input_ids": [12, 13], "labels": [14, 15, 2, 3, 1]}]


def test_collator_pads_inputs_and_labels_separately_right():
    batch = DataCollatorForSeq2Seq(Tok())(FEATURES)
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]  # no model: no decoder ids
    assert batch["input_ids"].tolist() == [[5, 6, 7], [10, 0, 0], [12, 13, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1, -100, -100], [11, 1, -100, -100, -100],
                                        [14, 15, 2, 3, 1]]
    assert batch["labels"].dtype == torch.long


def test_collator_left_padding_side_pads_labels_left_too():
    batch = DataCollatorForSeq2Seq(LeftTok(), label_pad_token_id=-1)(FEATURES)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 10], [0, 12, 13]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert batch["labels"].tolist() == [[-1, -1, 8, 9, 1], [-1, -1, -1, 11, 1], [14, 15, 2, 3, 1]]


def test_collator_adds_decoder_input_ids_from_the_model():
    batch = DataCollatorForSeq2Seq(Tok(), model=StandIn())(FEATURES)
    # labels shifted right behind START (0); the -100 moved in become PAD (0)
    assert batch["decoder_input_ids"].tolist() == [[0, 8, 9, 1, 0], [0, 11, 1, 0, 0],
                                                   [0, 14, 15, 2, 3]]
    assert sorted(batch) == ["attention_mask", "decoder_input_ids", "input_ids", "labels"]


def test_collator_pad_to_multiple_of_applies_to_labels():
    batch = DataCollatorForSeq2Seq(Tok(), pad_to_multiple_of=4)(FEATURES[:2])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [10, 0, 0, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1, -100], [11, 1, -100, -100]]


def test_collator_max_length_padding_and_no_padding():
    batch = DataCollatorForSeq2Seq(Tok(), padding="max_length", max_length=6)(FEATURES[:2])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0], [10, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1, -100, -100, -100], [11, 1, -100, -100, -100, -100]]
    same = [{"input_ids": [5, 6], "labels": [7, 1]}, {"input_ids": [8, 9], "labels": [2, 1]}]
    batch = DataCollatorForSeq2Seq(Tok(), padding=False)(same)
    assert batch["input_ids"].tolist() == [[5, 6], [8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 1]]
    assert batch["labels"].tolist() == [[7, 1], [2, 1]]
    with pytest.raises(InvalidInputError, match="different lengths"):
        DataCollatorForSeq2Seq(Tok(), padding=False)(FEATURES)
    with pytest.raises(InvalidInputError, match="needs max_length"):
        DataCollatorForSeq2Seq(Tok(), padding="max_length")


def test_collator_label_alias_tensors_and_errors():
    feats = [{"input_ids": torch.tensor([5, 6]), "label": torch.tensor([7])},
             {"input_ids": torch.tensor([8]), "label": torch.tensor([9, 1])}]
    batch = DataCollatorForSeq2Seq(Tok())(feats)
    assert batch["labels"].tolist() == [[7, -100], [9, 1]]
    unlabelled = DataCollatorForSeq2Seq(Tok(), model=StandIn())([{"input_ids": [5]}, {"input_ids": [6, 7]}])
    assert sorted(unlabelled) == ["attention_mask", "input_ids"]  # nothing to shift: no decoder ids
    with pytest.raises(InvalidInputError, match="some examples have labels"):
        DataCollatorForSeq2Seq(Tok())([{"input_ids": [5], "labels": [1]}, {"input_ids": [6]}])


# --- the arguments --------------------------------------------------------------------------
def test_seq2seq_arguments(tmp_path):
    a = Seq2SeqTrainingArguments(str(tmp_path), predict_with_generate=True, generation_max_length=9,
                                 generation_num_beams=2, learning_rate=1e-3)
    assert (a.predict_with_generate, a.generation_max_length, a.generation_num_beams) == (True, 9, 2)
    assert a.learning_rate == 1e-3 and '"predict_with_generate": true' in a.to_json_string()
    with pytest.raises(InvalidInputError, match="Seq2SeqTrainingArguments got unknown.*predict_with_generate"):
        Seq2SeqTrainingArguments(str(tmp_path), predict_with_generat=True)
    with pytest.raises(InvalidInputError, match="generation_num_beams=0"):
        Seq2SeqTrainingArguments(str(tmp_path), generation_num_beams=0)


# --- the trainer ----------------------------------------------------------------------------
EVAL = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7, 1]},
        {"input_ids": [8], "labels": [8, 1]},
        {"input_ids": [9, 10, 11, 12], "labels": [9, 10, 11, 12, 1]}]


def s2s_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), disable_tqdm=True, save_strategy="no",
                per_device_train_batch_size=4, per_device_eval_batch_size=2, learning_rate=1e-2,
                logging_steps=1, predict_with_generate=True)
    base.update(kw)
    return Seq2SeqTrainingArguments(**base)


def test_evaluate_hands_generated_ids_padded_with_pad_to_compute_metrics(tmp_path):
    seen = []

    def metrics(p):
        seen.append(p)
        return {"exact": float(np.mean([[t for t in row[1:] if t != PAD] == lab[lab != -100].tolist()
                                        for row, lab in zip(p.predictions, p.label_ids)]))}

    model = StandIn()
    trainer = Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, generation_num_beams=3),
                             eval_dataset=EVAL, processing_class=Tok(), compute_metrics=metrics)
    out = trainer.evaluate()
    # two batches (2 + 1 rows) of different widths, joined with PAD (not -100)
    assert seen[0].predictions.tolist() == [[0, 5, 6, 7, 1, 0], [0, 8, 1, 0, 0, 0],
                                            [0, 9, 10, 11, 12, 1]]
    assert seen[0].label_ids.tolist() == [[5, 6, 7, 1, -100], [8, 1, -100, -100, -100],
                                          [9, 10, 11, 12, 1]]
    assert out["eval_exact"] == 1.0 and out["eval_loss"] > 0
    # no length limit anywhere: the model's default applies; beams from the arguments
    assert [c["num_beams"] for c in model.calls] == [3, 3] and model.calls[0]["max_length"] == 20


def test_generation_kwargs_from_args_and_from_the_call(tmp_path):
    model = StandIn()
    trainer = Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, generation_max_length=4),
                             processing_class=Tok())
    pred = trainer.predict(EVAL)
    assert model.calls[-1] == {"max_length": 4, "max_new_tokens": None, "num_beams": 1, "batch": 1}
    # every batch padded to max_length (the reference's width), cut rows stay cut
    assert pred.predictions.tolist() == [[0, 5, 6, 7], [0, 8, 1, 0], [0, 9, 10, 11]]
    assert "test_loss" in pred.metrics
    model.calls.clear()
    pred = trainer.predict(EVAL, max_new_tokens=2, num_beams=2)  # the call wins over the args
    assert model.calls[0] == {"max_length": 20, "max_new_tokens": 2, "num_beams": 2, "batch": 2}
    assert pred.predictions.tolist() == [[0, 5, 6], [0, 8, 1], [0, 9, 10]]  # max_new_tokens + 1
    metrics = trainer.evaluate(EVAL, num_beams=5)
    assert model.calls[-1]["num_beams"] == 5 and model.calls[-1]["max_length"] == 4
    assert "eval_loss" in metrics


def test_without_predict_with_generate_predictions_are_logits(tmp_path):
    model = StandIn()
    trainer = Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, predict_with_generate=False),
                             processing_class=Tok())
    pred = trainer.predict(EVAL)
    assert pred.predictions.shape == (3, 5, 16) and not model.calls
    # the first batch's logits are 4 positions wide (its longest label), padded with -100
    assert pred.predictions[:2, 4].tolist() == np.full((2, 16), -100.0).tolist()
    assert (pred.predictions[2] != -100).all()


def test_seq2seq_trainer_trains_with_its_default_collator(tmp_path):
    torch.manual_seed(0)
    data = [{"input_ids": [5 + i % 7, 6 + i % 5], "labels": [5 + i % 7, EOS]} for i in range(32)]
    model = StandIn()
    trainer = Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, max_steps=40), train_dataset=data,
                             eval_dataset=data[:8], processing_class=Tok())
    assert isinstance(trainer.data_collator, DataCollatorForSeq2Seq)
    assert trainer.data_collator.model is model
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before * 0.5, (before, after)


def test_generation_config_argument_replaces_the_models(tmp_path):
    from pretrained.generation import GenerationConfig

    GenerationConfig(num_beams=4, max_length=7).save_pretrained(tmp_path / "gen")
    model = StandIn()
    Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, generation_config=str(tmp_path / "gen")))
    assert (model.generation_config.num_beams, model.generation_config.max_length) == (4, 7)
    with pytest.raises(InvalidInputError, match="generation_config="):
        Seq2SeqTrainer(model=StandIn(), args=s2s_args(tmp_path, generation_config=str(tmp_path / "no")))


def test_model_without_generate_is_a_clear_error(tmp_path):
    trainer = Seq2SeqTrainer(model=Contract(), args=s2s_args(tmp_path), processing_class=Tok())
    with pytest.raises(InvalidInputError, match="has no generate"):
        trainer.evaluate(EVAL)


def test_plain_trainer_is_unchanged_by_the_prediction_pad(tmp_path):
    trainer = Trainer(model=StandIn(), args=s2s_args(tmp_path),
                      data_collator=DataCollatorForSeq2Seq(Tok()))
    pred = trainer.predict(EVAL)  # the plain Trainer ignores predict_with_generate
    assert pred.predictions.ndim == 3


# --- the real encoder-decoders (tiny, random) -------------------------------------------------
def tiny_t5(seed=0):
    from pretrained.models.t5 import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    return T5ForConditionalGeneration.from_config(T5Config(
        vocab_size=16, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4, dropout_rate=0.0,
        relative_attention_num_buckets=8, relative_attention_max_distance=16))


def test_collator_with_real_t5_and_marian():
    from pretrained.models.marian import MarianConfig, MarianMTModel

    batch = DataCollatorForSeq2Seq(Tok(), model=tiny_t5())(FEATURES)
    # T5 starts decoding from its pad token (0)
    assert batch["decoder_input_ids"].tolist() == [[0, 8, 9, 1, 0], [0, 11, 1, 0, 0], [0, 14, 15, 2, 3]]
    marian = MarianMTModel.from_config(MarianConfig(
        vocab_size=20, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32,
        pad_token_id=19, decoder_start_token_id=19, eos_token_id=1))
    batch = DataCollatorForSeq2Seq(Tok(), model=marian)(FEATURES)
    # Marian starts from its pad token (19 here), and -100 shifted in becomes 19 too
    assert batch["decoder_input_ids"].tolist() == [[19, 8, 9, 1, 19], [19, 11, 1, 19, 19],
                                                   [19, 14, 15, 2, 3]]


def test_seq2seq_trainer_with_real_t5_trains_and_generates(tmp_path):
    data = [{"input_ids": [5 + i % 9, 1], "labels": [5 + i % 9, 1]} for i in range(36)]
    seen = []

    def exact(p):
        seen.append(p)
        hyps = [[t for t in row if t not in (PAD,)] for row in p.predictions]
        refs = [[t for t in row if t != -100] for row in p.label_ids]
        return {"exact": float(np.mean([h == r for h, r in zip(hyps, refs)]))}

    model = tiny_t5()
    trainer = Seq2SeqTrainer(model=model, args=s2s_args(tmp_path, max_steps=60, learning_rate=3e-2,
                                                        per_device_eval_batch_size=4,
                                                        generation_max_length=6),
                             train_dataset=data, eval_dataset=data[:9], processing_class=Tok(),
                             compute_metrics=exact)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate(num_beams=2)
    assert after["eval_loss"] < before["eval_loss"] / 3, (before, after)
    assert after["eval_exact"] == 1.0, seen[-1].predictions  # a copy task, learnt
    # each batch padded to generation_max_length with the pad id: one width, start token first
    assert seen[-1].predictions.shape == (9, 6) and (seen[-1].predictions[:, 0] == 0).all()
    assert seen[-1].predictions[0].tolist() == [0, 5, 1, 0, 0, 0]
    out = trainer.predict(data[:2], max_new_tokens=1)
    assert out.predictions.tolist() == [[0, 5], [0, 6]]  # max_new_tokens + 1 wide
