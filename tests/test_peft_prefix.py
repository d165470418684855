"""Prefix tuning: PEFT's file format both ways (goldens from scripts/golden_training.py), training
moves only the prefix, errors."""

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained.auto import AutoModelForCausalLM
from pretrained.errors import InvalidInputError
from pretrained.peft import PeftModel, PrefixTuningConfig, PrefixTuningModel, get_peft_model

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "training"
sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).parent))
from golden_training import fill_adapter  # noqa: E402
from test_training_trainer import one_thread  # noqa: E402,F401  (autouse fixture)

RECORD = json.loads((GOLD / "prefix.json").read_text())
TENSORS = load_file(str(GOLD / "peft-gpt2-prefix.safetensors"))
INPUTS = {k[6:]: v for k, v in TENSORS.items() if k.startswith("input.")}


def gpt2():
    return AutoModelForCausalLM.from_pretrained(FIX / "models" / "gpt2-tiny")


def test_prefix_saved_by_peft_loads_here():
    model = PeftModel.from_pretrained(gpt2(), FIX / "models" / "peft-gpt2-prefix")
    assert isinstance(model, PrefixTuningModel) and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        out = model(**INPUTS, labels=TENSORS["label.labels"])
    assert (out.logits - TENSORS["peft.logits"]).abs().max() < 1e-5
    assert float(out.loss) == pytest.approx(RECORD["loss"], abs=1e-5)


def test_prefix_saved_here_loads_in_peft(tmp_path):
    model = get_peft_model(gpt2(), PrefixTuningConfig(num_virtual_tokens=5))
    fill_adapter({"prompt_embeddings": model.prompt_encoder["default"].embedding.weight}, seed=12)
    model.eval()
    with torch.no_grad():
        logits = model(**INPUTS).logits
    assert (logits - TENSORS["ours_in_peft.logits"]).abs().max() < 1e-5
    model.save_pretrained(tmp_path)
    assert sorted(json.loads((tmp_path / "adapter_config.json").read_text())) == RECORD["peft_config_keys"]
    assert sorted(load_file(str(tmp_path / "adapter_model.safetensors"))) == RECORD["peft_keys"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.print_trainable_parameters()
    assert out.getvalue().strip() == RECORD["print_trainable_parameters"]


@pytest.mark.parametrize("projection", [False, True])
def test_training_moves_only_the_prefix(tmp_path, projection):
    from pretrained.training import Trainer, TrainingArguments

    model = get_peft_model(gpt2(), PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=projection))
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    table = model.prompt_encoder["default"].table().detach().clone()
    rows = [{"input_ids": list(range(5 + i, 12 + i)), "labels": list(range(5 + i, 12 + i))} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=1e-2, save_strategy="no", disable_tqdm=True, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert not torch.equal(table, model.prompt_encoder["default"].table())
    model.save_pretrained(tmp_path / "prefix")
    again = PeftModel.from_pretrained(gpt2(), tmp_path / "prefix")
    model.eval()
    with torch.no_grad():
        assert (again(**INPUTS).logits - model(**INPUTS).logits).abs().max() < 1e-5


def test_prefix_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="num_virtual_tokens=0"):
        PrefixTuningConfig(num_virtual_tokens=0)
    with pytest.raises(InvalidInputError, match="causal LMs"):
        PrefixTuningConfig(task_type="SEQ_CLS")
    with pytest.raises(InvalidInputError, match="token_dim=64 but the model needs 32"):
        get_peft_model(gpt2(), PrefixTuningConfig(num_virtual_tokens=2, token_dim=64))
