"""The helpers of examples/train_translator.py and examples/train_summarizer.py (cheap parts:
the trained tokenizer loads with AutoTokenizer, tokenized pairs, decoding, the wall-clock
schedule, the lead-sentence baseline and ROUGE-L). The trainings themselves are examples run by
hand (their figures are in benchmarks/RESULTS.md)."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import seq2seq_common as common  # noqa: E402

TEXTS = ["Lightweight Qt5 plain-text editor", "éditeur de texte simple, léger et en Qt5",
         "chess game for kids", "jeu d'échecs pour les enfants", "documentation for libfoo"] * 30


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return common.train_tokenizer(TEXTS, 120, tmp_path_factory.mktemp("tok"), max_length=64)


def test_trained_tokenizer_loads_with_auto_tokenizer_and_round_trips(tok, tmp_path):
    from pretrained import AutoTokenizer

    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    ids = tok("jeu d'échecs pour les enfants")["input_ids"]
    assert ids[-1] == 1 and 0 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "jeu d'échecs pour les enfants"
    tok.save_pretrained(str(tmp_path))
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again("chess game")["input_ids"] == tok("chess game")["input_ids"]


def test_encode_pairs_truncates_keeping_eos_and_decode_reads_minus_100(tok):
    rows = common.encode_pairs(tok, ["chess game for kids"], ["jeu d'échecs pour les enfants"], 3, 64)
    assert len(rows[0]["input_ids"]) == 3 and rows[0]["input_ids"][-1] == 1
    assert rows[0]["attention_mask"] == [1, 1, 1]
    labels = rows[0]["labels"] + [-100, -100]
    assert common.decode(tok, [labels]) == ["jeu d'échecs pour les enfants"]


def test_wall_clock_cosine_warms_up_by_step_and_decays_by_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(common.time, "time", lambda: now[0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = common.WallClockCosine(opt, warmup_steps=4, minutes=1)
    lrs = []
    for t in (0, 0, 0, 30, 60, 90):  # seconds since the first step, per step
        now[0] = 1000.0 + t
        opt.step()
        sched.step()
        lrs.append(round(sched.get_last_lr()[0], 3))
    # steps 1-3 warm up (2/4, 3/4, 4/4); at half the time cos gives 0.5; at the end and after, 0
    assert lrs == [0.5, 0.75, 1.0, 0.5, 0.0, 0.0]


def test_time_budget_stops_training(monkeypatch):
    from types import SimpleNamespace

    now = [0.0]
    monkeypatch.setattr(common.time, "time", lambda: now[0])
    budget = common.TimeBudget(minutes=1)
    control, state = SimpleNamespace(should_training_stop=False), SimpleNamespace(global_step=7)
    budget.on_train_begin(None, state, control)
    now[0] = 59
    budget.on_step_end(None, state, control)
    assert not control.should_training_stop
    now[0] = 61
    budget.on_step_end(None, state, control)
    assert control.should_training_stop and budget.stopped_at == 7


def test_lead_sentence_and_rouge_l():
    pytest.importorskip("rouge_score")
    import train_summarizer as ts

    doc = "Foo is a tool. It does v1.2 things, e.g. this.\nSecond paragraph."
    assert ts.lead_sentence(doc) == "Foo is a tool."
    assert ts.lead_sentence("No final stop here\nnext") == "No final stop here"
    assert ts.rouge_l(["a small text editor"], ["a small text editor"]) == pytest.approx(100.0)
    assert ts.rouge_l(["chess game"], ["text editor"]) == 0.0
