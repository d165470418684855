"""Gradient checkpointing (pretrained/checkpointing.py): the same gradients with and without it
on real model files (dropout included: its random numbers are replayed), with LoRA, QLoRA,
prefix tuning and the backend seam's swapped modules; fewer saved activations; the KV cache
dropped with a warning or refused; the Trainer's and prepare_model_for_kbit_training's switches."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrained import AutoModelForCausalLM, AutoModelForMaskedLM, BitsAndBytesConfig
from pretrained.backends import accelerate
from pretrained.backends.linear import CpuLinear
from pretrained.cache import DynamicCache
from pretrained.errors import UnsupportedOptionError
from pretrained.models.llama import LlamaConfig, LlamaForCausalLM
from pretrained.peft import LoraConfig, PrefixTuningConfig, get_peft_model, prepare_model_for_kbit_training
from pretrained.quantization import Linear4bit, Linear8bit

sys.path.insert(0, str(Path(__file__).parent))
from test_training_trainer import one_thread  # noqa: E402,F401  (autouse fixture: one thread)

MODELS = Path(__file__).parent / "fixtures" / "models"
NF4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
IDS = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(0))


def grads(model: nn.Module, ids: torch.Tensor = IDS, seed: int = 0, **kw) -> dict[str, torch.Tensor]:
    """Every parameter's gradient after one training-mode loss (dropout drawn from ``seed``)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    model(input_ids=ids, labels=ids, **kw).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(model: nn.Module, options: dict | None = None, tol: float = 1e-6) -> None:
    plain = grads(model)
    keys = set(model.state_dict())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    assert model.is_gradient_checkpointing and set(model.state_dict()) == keys   # names unchanged
    checked = grads(model)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert plain.keys() == checked.keys() and len(plain) > 0
    assert all(plain[k].abs().sum() > 0 for k in plain)   # the gradients are not trivially zero
    for k in plain:
        assert (plain[k] - checked[k]).abs().max() <= tol, k


def saved_bytes(model: nn.Module, ids: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass (outside checkpointed blocks,
    whose own saving torch's checkpoint takes over): a deterministic activation-memory count."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return total


@pytest.mark.parametrize("name,auto", [("llama-gqa", AutoModelForCausalLM), ("gpt2-tiny", AutoModelForCausalLM),
                                       ("bert-tiny-mlm", AutoModelForMaskedLM)])
def test_same_gradients_with_and_without(name, auto):
    model = auto.from_pretrained(MODELS / name)   # float32; gpt2 and bert with dropout 0.1
    assert_same_grads(model)
    assert_same_grads(model, {"use_reentrant": True})   # the reentrant variant too


def test_blocks_are_wrapped_per_instance_and_undone():
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    model.gradient_checkpointing_enable()
    layers = model.model.layers
    assert all("forward" in vars(layer) for layer in layers)
    assert not any("forward" in vars(m) for m in model.modules() if m not in set(layers))
    model.gradient_checkpointing_enable({"use_reentrant": False, "preserve_rng_state": False})  # again: rewrap
    model.gradient_checkpointing_disable()
    assert not any("forward" in vars(m) or "_checkpoint_inner" in vars(m) for m in model.modules())
    with pytest.raises(UnsupportedOptionError, match="use_reentrant"):
        model.gradient_checkpointing_enable({"reentrant": False})
    with pytest.raises(UnsupportedOptionError, match="no repeated blocks"):
        from pretrained.checkpointing import enable_gradient_checkpointing
        enable_gradient_checkpointing(nn.Sequential(nn.Linear(2, 2)))


def test_activation_memory_falls():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=256, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, 64, (2, 96), generator=torch.Generator().manual_seed(1))
    full = saved_bytes(model, ids)
    model.gradient_checkpointing_enable()
    checked = saved_bytes(model, ids)
    # six layers each keep ~a dozen (2, 96, 64..256) activations; checkpointed they keep none
    # inside (their inputs live in the checkpoint), what is left is the embeddings, norm and head
    assert full > 6 * 10 * 2 * 96 * 64 * 4
    assert checked < 0.25 * full, (checked, full)


def test_lora_and_backend_seam():
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear"))
    for n, p in peft.named_parameters():
        if "lora_B" in n:
            nn.init.normal_(p, std=0.1)   # gradients reach lora_A and the layers below
    assert_same_grads(peft)
    assert accelerate(model) > 0 and any(isinstance(m, CpuLinear) for m in model.modules())
    assert_same_grads(peft)


def test_prefix_tuning():
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(MODELS / "gpt2-tiny"),
                          PrefixTuningConfig(num_virtual_tokens=3))
    assert_same_grads(peft)


@pytest.mark.parametrize("quant", [NF4, BitsAndBytesConfig(load_in_8bit=True)], ids=["nf4", "int8"])
def test_qlora(quant):
    model = AutoModelForCausalLM.from_pretrained(MODELS / "bnb-llama-float", quantization_config=quant)
    model = prepare_model_for_kbit_training(model)   # PEFT's default: checkpointing on
    assert model.is_gradient_checkpointing
    kind = Linear4bit if quant.load_in_4bit else Linear8bit
    assert any(isinstance(m, kind) for m in model.model.layers[0].modules())
    model.gradient_checkpointing_disable()
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for n, p in peft.named_parameters():
        if "lora_B" in n:
            nn.init.normal_(p, std=0.1)
    assert_same_grads(peft)


def test_qlora_gradients_pass_the_quantized_layers_after_an_inference_call():
    """An eval-mode, no-grad forward before training leaves the 4-bit layers differentiable: every
    adapter gets a gradient (q/k/v/gate/up's reach them through o_proj's and down_proj's 4-bit
    weights). bitsandbytes 0.50's CPU path repacks the weights for its inference kernel on such a
    call and from then on passes no gradient through them (what the reference's QLoRA showed)."""
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(
        MODELS / "bnb-llama-float", quantization_config=q, torch_dtype=torch.bfloat16))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    peft.eval()
    with torch.no_grad():
        peft(input_ids=IDS)
    g = grads(peft)
    b = {n: t for n, t in g.items() if "lora_B" in n}
    assert len(b) == 7 and all(t.abs().sum() > 0 for t in b.values()), {n: float(t.norm()) for n, t in b.items()}


def test_an_empty_cache_is_dropped_a_filled_one_runs_unchecked():
    import pretrained.checkpointing as ck

    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    model.gradient_checkpointing_enable()
    model.train()
    out = model(input_ids=IDS, labels=IDS, use_cache=True)
    out.loss.backward()   # a recomputed block does not write the cache a second time
    assert out.past_key_values.get_seq_length() == 0
    assert any("use_cache=True is incompatible" in m for m in ck._warned)
    # past tokens in the cache: the result is the plain model's
    model.eval()
    with torch.no_grad():
        past = model(input_ids=IDS[:, :5], use_cache=True).past_key_values
    assert isinstance(past, DynamicCache) and past.get_seq_length() == 5
    model.train()
    checked = model(input_ids=IDS[:, 5:], past_key_values=past).logits
    assert any("holding tokens" in m for m in ck._warned)
    model.eval()
    with torch.no_grad():
        plain = model(input_ids=IDS).logits[:, 5:]
    assert (checked - plain).abs().max() < 1e-5


def test_trainer_and_kbit_switches(tmp_path):
    from pretrained.training import Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(MODELS / "bnb-llama-float", quantization_config=NF4)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    assert not model.is_gradient_checkpointing
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    rows = [{"input_ids": r.tolist(), "labels": r.tolist()} for r in IDS.repeat(4, 1)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                             learning_rate=2e-2, disable_tqdm=True, logging_steps=1, save_strategy="no",
                             gradient_checkpointing=True,
                             gradient_checkpointing_kwargs={"use_reentrant": True})
    trainer = Trainer(model=peft, args=args, train_dataset=rows)
    assert peft.is_gradient_checkpointing
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_fused_encoder_still_runs_for_inference(monkeypatch):
    from pretrained.backends import build, encoder

    if not build.available():
        pytest.skip("the C kernels are off here (PRETRAINED_NO_KERNELS=1 or no compiler)")

    model = AutoModelForMaskedLM.from_pretrained(MODELS / "bert-tiny-mlm")
    accelerate(model)
    model.gradient_checkpointing_enable()   # before the fused stack's first plan
    model.eval()
    calls = []
    original = encoder.encoder_stack
    monkeypatch.setattr(encoder, "encoder_stack", lambda *a, **k: calls.append(1) or original(*a, **k))
    with torch.no_grad():
        model(input_ids=IDS[:1])
    assert calls == [1]
