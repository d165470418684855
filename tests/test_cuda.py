"""On a CUDA GPU: loading with device_map / torch_dtype, the reference's greedy and beam-search
tokens from the goldens, logits equal to the CPU's, pipelines with device=0, a few training
steps with bf16 and LoRA. These run only where CUDA is available (the project's lent GPU
machine); the CPU suite covers the same code paths on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM, AutoModelForSequenceClassification, pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FIX = Path(__file__).parent / "fixtures"
MODELS = FIX / "models"
GEN = json.loads((FIX / "goldens" / "generation" / "generate.json").read_text())["models"]
DETERMINISTIC = ("greedy_single", "greedy_batch", "greedy_batch_no_cache", "greedy_eos_pad",
                 "greedy_two_eos", "beam3", "beam4_ret2", "repetition_penalty", "no_repeat_ngram",
                 "bad_words", "min_new_tokens")
CASES = [(m, c) for m in ("gpt2-tiny", "llama-gqa", "qwen3", "gpt_neox-parallel", "mistral-window")
         if m in GEN for c in GEN[m] if c["case"] in DETERMINISTIC]


@pytest.fixture(autouse=True)
def _exact_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products in float32, as on the CPU
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("device_map", ["cuda:0", "auto", {"": 0}])
def test_device_map_puts_every_weight_on_the_gpu(device_map):
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", device_map=device_map)
    devices = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    assert devices == {torch.device("cuda", 0)}
    ids = torch.tensor([[1, 5, 7, 9]])
    gpu = model(ids.cuda()).logits.cpu()
    cpu = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")(ids).logits
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_name,case", CASES, ids=[f"{m}-{c['case']}" for m, c in CASES])
def test_generate_on_gpu_gives_the_reference_tokens(model_name, case):
    model = AutoModelForCausalLM.from_pretrained(MODELS / model_name, device_map="cuda:0")
    ids = torch.tensor(case["input_ids"], device="cuda")
    mask = torch.tensor(case["attention_mask"], device="cuda")
    out = model.generate(ids, attention_mask=mask, **case["kwargs"])
    out = out.sequences if hasattr(out, "sequences") else out
    assert out.device.type == "cuda"
    assert out.cpu().tolist() == case["sequences"]


def test_static_cache_and_bfloat16_on_gpu():
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", device_map="cuda:0",
                                                 torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    ids = torch.tensor([[1, 5, 7, 9, 11]], device="cuda")
    dynamic = model.generate(ids, max_new_tokens=8, do_sample=False)
    static = model.generate(ids, max_new_tokens=8, do_sample=False, cache_implementation="static")
    assert static.tolist() == dynamic.tolist() and static.shape == (1, 13)


def test_sampling_on_gpu_is_reproducible_with_a_seed():
    model = AutoModelForCausalLM.from_pretrained(MODELS / "gpt2-tiny", device_map="cuda:0")
    ids = torch.tensor([[3, 4, 5]], device="cuda")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(model.generate(ids, max_new_tokens=12, do_sample=True, top_k=20, top_p=0.9,
                                   temperature=0.8).tolist())
    assert runs[0] == runs[1]


def test_text_classification_pipeline_on_gpu_equals_cpu():
    path = str(MODELS / "pipe-bert-sentiment")
    texts = ["I love it", "I hate it", "an ordinary sentence that goes on for a while"]
    gpu = pipeline("text-classification", model=path, device=0)
    assert gpu.device == torch.device("cuda", 0)
    cpu = pipeline("text-classification", model=path)
    for a, b in zip(gpu(texts, top_k=None, batch_size=2), cpu(texts, top_k=None)):
        assert [d["label"] for d in a] == [d["label"] for d in b]
        for x, y in zip(a, b):
            assert abs(x["score"] - y["score"]) < 1e-4


def test_text_generation_pipeline_on_gpu_equals_cpu():
    path = str(MODELS / "gpt2-tiny-chat")
    gen_gpu = pipeline("text-generation", model=path, device=0)
    gen_cpu = pipeline("text-generation", model=path)
    kw = dict(max_new_tokens=12, do_sample=False)
    assert gen_gpu("Hello there", **kw) == gen_cpu("Hello there", **kw)


def test_training_steps_on_gpu(tmp_path):
    from pretrained import Trainer, TrainingArguments
    from pretrained.peft import LoraConfig, get_peft_model

    model = AutoModelForSequenceClassification.from_pretrained(MODELS / "bert-tiny-seqcls")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                             task_type="SEQ_CLS"))
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(5, 90, (12,), generator=g).tolist(), "labels": i % 2}
            for i in range(32)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8,
                             learning_rate=5e-3, bf16=True, logging_steps=1, report_to="none",
                             save_strategy="no", seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    assert next(model.parameters()).device.type == "cuda"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
