"""QLoRA: prepare_model_for_kbit_training, LoRA over 4-bit and 8-bit linears trained with the
Trainer, the adapter saved in PEFT's format and loaded on the full-precision base."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForCausalLM, BitsAndBytesConfig
from pretrained.errors import UnsupportedOptionError
from pretrained.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model, prepare_model_for_kbit_training
from pretrained.quantization import Linear4bit, Linear8bit

sys.path.insert(0, str(Path(__file__).parent))
from test_training_trainer import one_thread  # noqa: E402,F401  (autouse fixture: one thread)

FLOAT = Path(__file__).parent / "fixtures" / "models" / "bnb-llama-float"
NF4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)


def rows(n: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 64, (8,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": ids})
    return out


def test_prepare_model_for_kbit_training():
    model = AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=NF4, torch_dtype=torch.bfloat16)
    assert model.model.norm.weight.dtype == torch.bfloat16
    model = prepare_model_for_kbit_training(model)
    assert model.is_gradient_checkpointing   # PEFT's default (tests/test_gradient_checkpointing.py)
    assert not any(p.requires_grad for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32, torch.uint8}   # packed codes stay
    out = model.get_input_embeddings()(torch.tensor([[3, 4]]))
    assert out.requires_grad   # gradients reach adapters under frozen layers
    with pytest.raises(UnsupportedOptionError, match="use_reentrant"):
        prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"reentrant": True})


@pytest.mark.parametrize("quant", [NF4, BitsAndBytesConfig(load_in_8bit=True)], ids=["nf4", "int8"])
def test_qlora_trains_saves_and_loads_on_the_float_base(quant, tmp_path):
    from pretrained.training import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=quant))
    kind = Linear4bit if quant.load_in_4bit else Linear8bit
    packed = {n: p.clone() for n, p in model.named_parameters()}
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    layers = [m for m in peft.modules() if isinstance(m, LoraLinear)]
    assert len(layers) == 7 and all(isinstance(m.base_layer, kind) for m in layers)   # not the LM head
    assert all(m.lora_A.weight.dtype == torch.float32 for m in layers)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=6, per_device_train_batch_size=4,
                             learning_rate=2e-2, disable_tqdm=True, logging_steps=1, save_strategy="no")
    trainer = Trainer(model=peft, args=args, train_dataset=rows())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # the quantized weights and every base parameter are untouched; the adapters moved
    assert all(torch.equal(p, packed[n.replace("base_model.model.", "").replace(".base_layer", "")])
               for n, p in peft.named_parameters() if ".lora_" not in n)
    assert all(m.lora_B.weight.abs().sum() > 0 for m in layers)

    peft.save_pretrained(tmp_path / "adapter")
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in saved and len(saved) == 14
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["target_modules"] == "all-linear"

    # on the full-precision base: the same adapter numbers, and the float model with the adapter
    # is near the quantized one with it (the base weights differ by their rounding only)
    base = AutoModelForCausalLM.from_pretrained(FLOAT)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    for name, t in saved.items():
        assert torch.equal(loaded.get_parameter(name), t)
    ids = torch.tensor([r["input_ids"] for r in rows(2)])
    peft.eval()
    with torch.no_grad():
        q_logits, f_logits = peft(ids).logits, loaded(ids).logits
        plain_logits = AutoModelForCausalLM.from_pretrained(FLOAT)(ids).logits
    assert (q_logits - f_logits).abs().max() < (f_logits - plain_logits).abs().max()


def test_merging_into_quantized_weights_is_refused():
    model = AutoModelForCausalLM.from_pretrained(FLOAT, load_in_8bit=True)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(UnsupportedOptionError, match="full-precision base"):
        peft.merge_and_unload()
