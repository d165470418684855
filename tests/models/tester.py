"""The tests every architecture gets, driven by its fixtures; each ``test_<arch>.py`` in this folder
asks for them with ``globals().update(model_tests("<model_type>"))`` and adds only what is its
own. So thirty architectures are thirty small files, not thirty copies.

Per architecture:
- float32 parity with the reference on every golden fixture of that type (models.json,
  encoders/encoders.json, decoders/decoders.json: the reference's outputs on tiny checkpoints
  it saved; max abs diff <= 1e-4, padding positions included);
- the reference reads our ``save_pretrained`` (recorded by the golden scripts) and our own save
  loads back bit for bit;
- bfloat16: within bfloat16's rounding of float32, and of the reference's bfloat16 run where
  the golden has one;
- the backend seam: the swapped-in CPU modules give the plain modules' numbers (float32 1e-5)
  at 1 and 2 rows, and LoRA over ``target_modules="all-linear"`` trains a step, saves, reloads on
  a fresh base and merges, with the fast paths on; decoders: prefix tuning on the fast paths
  gives the plain modules' numbers.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import auto
from pretrained.backends import plain
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

FIX = Path(__file__).resolve().parent.parent / "fixtures"
GOLDENS = {   # index file -> folder of the goldens it lists
    FIX / "goldens" / "models.json": FIX / "goldens",
    FIX / "goldens" / "encoders" / "encoders.json": FIX / "goldens" / "encoders",
    FIX / "goldens" / "decoders" / "decoders.json": FIX / "goldens" / "decoders",
    FIX / "goldens" / "seq2seq" / "seq2seq.json": FIX / "goldens" / "seq2seq",   # seq2seq_tester.py
    FIX / "goldens" / "t5" / "t5.json": FIX / "goldens" / "t5",   # test_t5.py runs its own
    FIX / "goldens" / "whisper" / "whisper.json": FIX / "goldens" / "whisper",   # test_whisper.py runs its own
    FIX / "goldens" / "speech" / "speech.json": FIX / "goldens" / "speech",   # speech_tester.py
    FIX / "goldens" / "ast" / "ast.json": FIX / "goldens" / "ast",   # test_audio_spectrogram_transformer.py
    FIX / "goldens" / "vit" / "vit.json": FIX / "goldens" / "vit",   # test_vit.py, test_deit.py
    FIX / "goldens" / "convnext" / "convnext.json": FIX / "goldens" / "convnext",   # test_convnext.py, test_convnextv2.py
    FIX / "goldens" / "swin" / "swin.json": FIX / "goldens" / "swin",   # test_swin.py
    FIX / "goldens" / "segformer" / "segformer.json": FIX / "goldens" / "segformer",   # test_segformer.py
    FIX / "goldens" / "yolos" / "yolos.json": FIX / "goldens" / "yolos",   # test_yolos.py
    FIX / "goldens" / "detr" / "detr.json": FIX / "goldens" / "detr",   # test_detr.py
    FIX / "goldens" / "detr_segmentation" / "detr_segmentation.json": FIX / "goldens" / "detr_segmentation",   # test_detr.py
    FIX / "goldens" / "resnet" / "resnet.json": FIX / "goldens" / "resnet",   # test_resnet.py
    FIX / "goldens" / "mask2former" / "mask2former.json": FIX / "goldens" / "mask2former",   # test_mask2former.py
}
# outputs a plain forward on the golden's inputs gives (others need their own call: e.g.
# decoders' output.logits_pos is recorded with position_ids)
OUTPUTS = ("logits", "last_hidden_state", "pooler_output", "start_logits", "end_logits")
DECODERS = ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3")


@lru_cache(maxsize=None)
def fixtures() -> dict[str, dict]:
    """Every golden fixture: name -> {model_type, class, golden path, recorded round trip}."""
    found = {}
    for index, folder in GOLDENS.items():
        for name, meta in json.loads(index.read_text())["models"].items():
            if meta.get("decode_only") or name in found:
                continue
            config = json.loads((FIX / "models" / name / "config.json").read_text())
            found[name] = {"model_type": config["model_type"], "class": meta["class"],
                           "golden": folder / f"{name}.safetensors",
                           "roundtrip": meta.get("roundtrip_max_abs_diff")}
    return found


def names_for(model_type: str) -> list[str]:
    return sorted(n for n, f in fixtures().items() if f["model_type"] == model_type)


def load(name: str, **kw) -> torch.nn.Module:
    meta = fixtures()[name]
    module = auto.model_module(meta["model_type"])
    cls = next(c for c in module.MODEL_CLASSES.values() if c.__name__ == meta["class"])
    return cls.from_pretrained(FIX / "models" / name, **kw)


def golden(name: str) -> tuple[dict, dict, dict]:
    g = load_file(str(fixtures()[name]["golden"]))
    inputs = {k[6:]: v for k, v in g.items() if k.startswith("input.") and k != "input.position_ids"}
    outputs = {k[7:]: v for k, v in g.items() if k.startswith("output.") and k[7:] in OUTPUTS}
    bf16 = {k[5:]: v for k, v in g.items() if k.startswith("bf16.") and k[5:] in OUTPUTS}
    return inputs, outputs, bf16


def _max_diff(out, expected: dict) -> float:
    assert expected, "the golden records no outputs"
    worst = 0.0
    for key, want in expected.items():
        got = getattr(out, key)
        assert got.shape == want.shape, (key, tuple(got.shape), tuple(want.shape))
        worst = max(worst, (got.float() - want.float()).abs().max().item())
    return worst


def _example(model: torch.nn.Module, rows: int) -> dict:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, model.config.vocab_size, (rows, 6), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def _lora_fixture(model_type: str) -> str:
    """The fixture with a head that has a loss: a causal LM or a sequence classifier."""
    names = sorted(names_for(model_type), key=lambda n: "seqcls" not in n)  # not a regression head
    want = ("CausalLM", "LMHeadModel") if model_type in DECODERS else ("SequenceClassification",)
    return next(n for n in names if fixtures()[n]["class"].endswith(want))


def model_tests(model_type: str) -> dict:
    """The shared tests, parametrized over ``model_type``'s fixtures (see the module doc)."""
    names = names_for(model_type)
    assert names, f"no golden fixtures of type {model_type!r}"
    first = names[0]
    lora_name = _lora_fixture(model_type)

    @pytest.mark.parametrize("name", names)
    def test_float32_parity_with_the_reference(name):
        inputs, expected, _ = golden(name)
        model = load(name)
        assert type(model).__name__ == fixtures()[name]["class"]
        assert model.dtype == torch.float32 and not model.training
        with torch.no_grad():
            assert _max_diff(model(**inputs), expected) <= 1e-4

    recorded = [n for n in names if fixtures()[n]["roundtrip"] is not None]

    @pytest.mark.parametrize("name", recorded or [pytest.param(None, marks=pytest.mark.skip("none recorded"))])
    def test_the_reference_reads_our_save(name):
        assert fixtures()[name]["roundtrip"] <= 1e-4

    def test_our_save_loads_back_bit_for_bit(tmp_path):
        model = load(first)
        model.save_pretrained(tmp_path)
        back = type(model).from_pretrained(tmp_path)
        assert model.state_dict().keys() == back.state_dict().keys()
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())

    def test_bfloat16_within_its_rounding():
        inputs, expected, bf16 = golden(lora_name)
        model = load(lora_name, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        scale = max(v.abs().max().item() for v in expected.values())
        with torch.no_grad():
            out = model(**inputs)
        assert _max_diff(out, expected) <= 0.06 * scale + 0.02
        if bf16:
            assert _max_diff(out, bf16) <= 0.06 * scale + 0.02

    def test_fast_paths_give_the_plain_modules_numbers():
        model = load(lora_name)
        kinds = {type(m).__name__ for m in model.modules()}
        assert kinds & {"CpuLinear", "CpuConv1D"} and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        for rows in (1, 2, 1):   # the third call runs the sibling groups learnt in the first two
            batch = _example(model, rows)
            assert (_logits(model, batch) - _logits(reference, batch)).abs().max() <= 1e-5

    def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
        torch.manual_seed(0)
        model = load(lora_name)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        batch = _example(model, 2)
        labels = batch["input_ids"] if model_type in DECODERS else torch.tensor([1, 0])
        peft.train()
        peft(**batch, labels=labels).loss.backward()
        trainable = [p for p in peft.parameters() if p.requires_grad]
        assert trainable and all(p.grad is not None for p in trainable)
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn_like(p) * 0.05)   # a non-zero adapter: skipping it would show
        peft.eval()
        for rows in (1, 2):
            batch = _example(model, rows)
            got = _logits(peft, batch)
            reference = copy.deepcopy(peft)
            plain(reference)
            assert (got - _logits(reference, batch)).abs().max() <= 1e-5
        peft.save_pretrained(tmp_path / "adapter")
        again = PeftModel.from_pretrained(load(lora_name), tmp_path / "adapter")
        assert (_logits(again, batch) - got).abs().max() <= 1e-5
        merged = again.merge_and_unload()
        assert (_logits(merged, batch) - got).abs().max() <= 1e-4

    if model_type in DECODERS:
        def test_prefix_tuning_with_the_fast_paths_gives_the_plain_modules_numbers():
            from pretrained.peft import PrefixTuningConfig

            torch.manual_seed(0)
            model = load(lora_name)
            tuned = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3))
            with torch.no_grad():
                for p in tuned.parameters():
                    if p.requires_grad:
                        p.normal_()   # a prefix that changes the numbers
            tuned.eval()
            reference = copy.deepcopy(tuned)
            plain(reference)
            for rows in (1, 2):
                batch = _example(model, rows)
                assert (_logits(tuned, batch) - _logits(reference, batch)).abs().max() <= 1e-5

    return {k: v for k, v in locals().items() if k.startswith("test_")}
