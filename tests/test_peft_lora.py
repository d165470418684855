"""LoRA: PEFT file format both ways (goldens from scripts/golden_training.py, peft 0.21.2),
identity at init, merging, errors, training with the Trainer."""

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained.auto import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification
from pretrained.errors import InvalidInputError
from pretrained.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model
from pretrained.peft.lora import file_key_to_param

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "training"
MODELS = FIX / "models"
sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from golden_training import PEFT_CASES, fill_adapter  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_training_trainer import one_thread  # noqa: E402,F401  (autouse fixture: one thread)

RECORD = json.loads((GOLD / "peft.json").read_text())
AUTO = {"BertForSequenceClassification": AutoModelForSequenceClassification,
        "BertForTokenClassification": AutoModelForTokenClassification, "GPT2LMHeadModel": AutoModelForCausalLM,
        "LlamaForCausalLM": AutoModelForCausalLM}


def base(case):
    fixture, cls_name, _ = PEFT_CASES[case]
    return AUTO[cls_name].from_pretrained(MODELS / fixture)


def inputs(case):
    t = load_file(str(GOLD / f"{case}.safetensors"))
    return {k[6:]: v for k, v in t.items() if k.startswith("input.")}, t


@pytest.mark.parametrize("case", sorted(PEFT_CASES))
def test_adapter_saved_by_peft_loads_here(case):
    x, gold = inputs(case)
    model = PeftModel.from_pretrained(base(case), MODELS / case)
    with torch.no_grad():
        logits = model(**x).logits
    assert (logits - gold["peft.logits"]).abs().max() < 1e-5
    assert not any(p.requires_grad for p in model.parameters())  # inference unless is_trainable
    merged = model.merge_and_unload()
    assert not any(isinstance(m, LoraLinear) for m in merged.modules())
    with torch.no_grad():
        assert (merged(**x).logits - gold["peft.merged_logits"]).abs().max() < 1e-5


@pytest.mark.parametrize("case", sorted(PEFT_CASES))
def test_adapter_saved_here_loads_in_peft(case, tmp_path):
    """The golden script saved this same adapter with our code and loaded it with PEFT."""
    x, gold = inputs(case)
    rec = RECORD["cases"][case]
    model = get_peft_model(base(case), LoraConfig(**PEFT_CASES[case][2]))
    params = dict(model.named_parameters())
    named = {k: params["base_model.model." + file_key_to_param(model.get_base_model(), k[len("base_model.model."):])]
             for k in model.adapter_state_dict()}
    fill_adapter(named, seed=sum(map(ord, case)) + 1)
    model.eval()
    with torch.no_grad():
        ours = model(**x).logits
    assert (ours - gold["ours_in_peft.logits"]).abs().max() < 1e-5
    model.save_pretrained(tmp_path)
    assert sorted(load_file(str(tmp_path / "adapter_model.safetensors"))) == rec["peft_keys"]
    assert sorted(json.loads((tmp_path / "adapter_config.json").read_text())) == rec["peft_config_keys"]
    assert rec["our_keys_as_saved"] == rec["peft_keys"]


@pytest.mark.parametrize("case", sorted(PEFT_CASES))
def test_print_trainable_parameters_as_peft(case):
    model = get_peft_model(base(case), LoraConfig(**PEFT_CASES[case][2]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.print_trainable_parameters()
    assert out.getvalue().strip() == RECORD["cases"][case]["print_trainable_parameters"]


def test_identity_at_init_and_merge():
    x, _ = inputs("peft-gpt2-conv1d")
    plain = base("peft-gpt2-conv1d").eval()
    with torch.no_grad():
        want = plain(**x).logits
        model = get_peft_model(base("peft-gpt2-conv1d"), LoraConfig(r=4, target_modules=["c_attn", "c_proj"])).eval()
        assert torch.equal(model(**x).logits, want)  # B = 0
        for m in model.modules():
            if isinstance(m, LoraLinear):
                torch.nn.init.normal_(m.lora_B.weight, std=0.5)
        adapted = model(**x).logits
        assert (adapted - want).abs().max() > 1e-2
        model.merge_adapter()
        assert (model(**x).logits - adapted).abs().max() < 1e-4
        model.unmerge_adapter()
        assert (model(**x).logits - adapted).abs().max() < 1e-4
        restored = model.unload()
        assert (restored(**x).logits - want).abs().max() < 1e-5


def test_lora_linear_from_base_and_dtypes():
    lin = torch.nn.Linear(6, 5).to(torch.bfloat16)
    lora = LoraLinear.from_base(lin, r=2, lora_alpha=4, init_lora_weights=False)
    assert lora.lora_A.weight.dtype == torch.float32 and lora.scaling == 2.0
    y = lora(torch.randn(3, 6, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    with pytest.raises(InvalidInputError, match="nn.Linear, Conv1D or quantized linear"):
        LoraLinear.from_base(torch.nn.Embedding(4, 4))


def test_only_adapters_train():
    model = get_peft_model(base("peft-bert-seqcls"), LoraConfig(r=2, target_modules=r".*attention\.self\.(query|key)",
                                                                 task_type="SEQ_CLS"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n or ".modules_to_save." in n for n in names)
    assert any(".key.lora_A." in n for n in names) and not any(".value." in n for n in names)
    x, _ = inputs("peft-bert-seqcls")
    model(**x, labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(r=0), "r=0"), (dict(r=-2), "r=-2"), (dict(bias="some"), "bias='some'"),
    (dict(lora_dropout=1.0), "lora_dropout=1.0"), (dict(task_type="CLS"), "task_type='CLS'"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        LoraConfig(**kwargs)


def test_bad_targets():
    with pytest.raises(InvalidInputError, match=r"matches no layer.*\['c_attn', 'c_fc', 'c_proj', 'lm_head'\]"):
        get_peft_model(base("peft-gpt2-conv1d"), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(InvalidInputError, match="'transformer.h.0.ln_1' is a LayerNorm"):
        get_peft_model(base("peft-gpt2-conv1d"), LoraConfig(target_modules=["ln_1"]))


def test_adapter_for_another_base_is_refused(tmp_path):
    # bert adapter into gpt2: its targets do not exist there
    with pytest.raises(InvalidInputError, match="matches no layer"):
        PeftModel.from_pretrained(base("peft-gpt2-conv1d"), MODELS / "peft-bert-seqcls")
    # same targets, other sizes
    from pretrained.models.bert import BertConfig, BertForSequenceClassification

    other = BertForSequenceClassification.from_config(BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=2,
                                                                 num_attention_heads=2, intermediate_size=8, num_labels=3))
    with pytest.raises(InvalidInputError, match=r"has shape \(4, 32\) but this model's is \(4, 16\)"):
        PeftModel.from_pretrained(other, MODELS / "peft-bert-seqcls")


def test_unsupported_adapter_features_are_named(tmp_path):
    data = json.loads((MODELS / "peft-bert-seqcls" / "adapter_config.json").read_text())
    data["use_dora"] = True
    (tmp_path / "adapter_config.json").write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="use_dora=True"):
        LoraConfig.from_pretrained(tmp_path)
    data["use_dora"], data["r"] = False, 0
    (tmp_path / "adapter_config.json").write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="r=0"):
        LoraConfig.from_pretrained(tmp_path)


def test_lora_training_with_trainer_and_resume(tmp_path):
    from pretrained.training import Trainer, TrainerCallback, TrainingArguments

    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(5, 128, (8,), generator=g).tolist(), "label": i % 3} for i in range(12)]

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 4:
                raise KeyboardInterrupt

    def run(out, resume=None, crash=False):
        torch.manual_seed(0)
        model = get_peft_model(base("peft-bert-seqcls"), LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS",
                                                                     target_modules=["query", "value"]))
        frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
        args = TrainingArguments(output_dir=str(out), max_steps=6, per_device_train_batch_size=4,
                                 learning_rate=1e-2, save_steps=3, disable_tqdm=True, logging_steps=1)
        trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Crash()] if crash else None)
        if crash:
            with pytest.raises(KeyboardInterrupt):
                trainer.train()
        else:
            trainer.train(resume_from_checkpoint=resume)
        return model, frozen

    model, frozen = run(tmp_path / "a")
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    ckpt = tmp_path / "a" / "checkpoint-3"
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    run(tmp_path / "b", crash=True)
    resumed, _ = run(tmp_path / "b", resume=True)
    for (n, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n
