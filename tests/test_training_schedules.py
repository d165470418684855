"""Learning-rate schedules and weight-decay groups against the reference (goldens from
scripts/golden_training.py)."""

import json
from pathlib import Path

import pytest
import torch

from pretrained.errors import InvalidInputError
from pretrained.training import TrainingArguments, get_scheduler
from pretrained.training.schedules import create_optimizer, decay_parameter_names

GOLD = Path(__file__).parent / "fixtures" / "goldens" / "training"
MODELS = Path(__file__).parent / "fixtures" / "models"


@pytest.mark.parametrize("key", sorted(k for k in json.loads((GOLD / "schedules.json").read_text())
                                       if "/" in k))
def test_schedule_matches_reference(key):
    expected = json.loads((GOLD / "schedules.json").read_text())[key]
    name, warmup, total = key.split("/")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    kw = {"lr_end": 1e-3, "power": 2.0} if name == "polynomial" else {}
    sched = get_scheduler(name, opt, num_warmup_steps=int(warmup), num_training_steps=int(total),
                          scheduler_specific_kwargs=kw)
    got = []
    for _ in range(len(expected)):
        got.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert got == pytest.approx(expected, abs=1e-12)


def test_warmup_fraction_rounding_matches_reference():
    expected = json.loads((GOLD / "schedules.json").read_text())["warmup_fraction_0.15"]
    args = TrainingArguments(warmup_steps=0.15)
    assert {n: args.get_warmup_steps(int(n)) for n in expected} == expected


def test_scheduler_state_is_plain_numbers(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = get_scheduler("cosine", opt, num_warmup_steps=2, num_training_steps=10)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["base_lrs"] == [0.1]


def test_bad_scheduler_kwargs():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(InvalidInputError, match="num_cycles"):
        get_scheduler("linear", opt, 0, 10, scheduler_specific_kwargs={"num_cycles": 2})
    with pytest.raises(InvalidInputError, match="lr_end"):
        get_scheduler("polynomial", opt, 0, 10, scheduler_specific_kwargs={"lr_end": 1.0})


@pytest.mark.parametrize("name", ["bert-tiny-seqcls", "bert-tiny-mlm", "gpt2-tiny"])
def test_weight_decay_groups_match_reference(name):
    from pretrained.auto import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

    auto = {"bert-tiny-seqcls": AutoModelForSequenceClassification, "bert-tiny-mlm": AutoModelForMaskedLM,
            "gpt2-tiny": AutoModelForCausalLM}[name]
    model = auto.from_pretrained(MODELS / name)
    expected = json.loads((GOLD / "decay.json").read_text())[name]
    # Tied output weights are one parameter; the reference lists it under its own name too.
    assert set(decay_parameter_names(model)) == set(expected) - set(model.tied_weights)
    opt = create_optimizer(model, TrainingArguments(weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert not any("LayerNorm" in n or n.endswith("bias") for n in expected)
