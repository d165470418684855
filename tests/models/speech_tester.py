"""The tests every speech encoder gets (Wav2Vec2, HuBERT), on the fixtures and goldens
scripts/golden_speech_encoders.py recorded from the reference (tests/fixtures/goldens/speech/).

tester.py's shared tests feed token ids; these feed audio (``input_values`` and a sample-level
``attention_mask`` with padded rows). Per architecture, asked for with
``globals().update(speech_model_tests("<model_type>"))``:
- float32 parity with the reference on every fixture (<= 1e-4, padded frames included): bare
  models' ``last_hidden_state``, ``extract_features``, every ``hidden_states`` entry and the
  output under given ``mask_time_indices``; heads' ``logits``; the CTC / classification losses;
- the reference reads our ``save_pretrained`` (recorded) and our save loads back bit for bit,
  with the positional convolution under the names the reference 5.x writes;
- bfloat16 within its rounding of float32 and of the reference's bfloat16 run;
- the backend seam (swapped-in CPU modules against the plain ones, 1e-5), LoRA all-linear (a
  step, save, reload, merge), copies / pickling / a dtype round trip, and torch.compile.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tester import FIX, fixtures, load, names_for

from pretrained.backends import plain
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

SPEECH = FIX / "goldens" / "speech"


@lru_cache(maxsize=None)
def meta(name: str) -> dict:
    return json.loads((SPEECH / "speech.json").read_text())["models"][name]


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(SPEECH / f"{name}.safetensors"))


def inputs_of(g: dict) -> dict[str, torch.Tensor]:
    return {"input_values": g["input.input_values"], "attention_mask": g["input.attention_mask"]}


def main_output(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def example(rows: int, samples: int = 900) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rows)
    mask = torch.ones(rows, samples, dtype=torch.long)
    mask[1:, samples - 200:] = 0
    return {"input_values": torch.randn(rows, samples, generator=g) * mask, "attention_mask": mask}


def run(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return main_output(model(**batch))


def speech_model_tests(model_type: str) -> dict:
    names = names_for(model_type)
    assert names, f"no golden fixtures of type {model_type!r}"
    heads = {n: meta(n)["head"] for n in names}
    bare = [n for n in names if heads[n] == "model"]
    lossy = [n for n in names if meta(n)["losses"]]
    classifier = next(n for n in names if heads[n] == "seqcls")

    @pytest.mark.parametrize("name", names)
    def test_float32_parity_with_the_reference(name):
        g = golden(name)
        model = load(name)
        assert type(model).__name__ == fixtures()[name]["class"]
        assert model.dtype == torch.float32 and not model.training
        wanted = {k[7:]: v for k, v in g.items() if k.startswith("output.")}
        states = sorted(k for k in wanted if k.startswith("hidden."))
        with torch.no_grad():
            out = model(**inputs_of(g), output_hidden_states=bool(states))
        for key, want in wanted.items():
            got = out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)
            assert got.shape == want.shape, (key, got.shape, want.shape)
            assert (got - want).abs().max() <= 1e-4, key
        if states:
            assert len(out.hidden_states) == len(states)
        if "masked.last_hidden_state" in g:
            with torch.no_grad():
                masked = model(**inputs_of(g), mask_time_indices=g["masked.mask_time_indices"])
            assert (masked.last_hidden_state - g["masked.last_hidden_state"]).abs().max() <= 1e-4
            assert (masked.last_hidden_state - g["output.last_hidden_state"]).abs().max() > 1e-2

    @pytest.mark.parametrize("name", lossy or [pytest.param(None, marks=pytest.mark.skip("no losses"))])
    def test_losses_match_the_reference(name):
        g = golden(name)
        for case, spec in meta(name)["losses"].items():
            model = load(name, **spec["config"])
            with torch.no_grad():
                loss = model(**inputs_of(g), labels=g[f"case.{case}.labels"]).loss
            want = spec["loss"]
            if math.isinf(want):
                assert math.isinf(loss.item()), case
            else:
                assert abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (case, loss.item(), want)

    @pytest.mark.parametrize("name", names)
    def test_the_reference_reads_our_save(name):
        assert meta(name)["roundtrip_max_abs_diff"] <= 1e-4
        assert any(k.endswith("parametrizations.weight.original0") for k in meta(name)["roundtrip_keys"]) \
            or "bn" in name   # a batch-normed positional convolution has no weight norm

    def test_our_save_loads_back_bit_for_bit(tmp_path):
        model = load(names[0])
        model.save_pretrained(tmp_path)
        saved = load_file(str(tmp_path / "model.safetensors"))
        assert not [k for k in saved if k.endswith((".weight_g", ".weight_v"))]
        back = type(model).from_pretrained(tmp_path)
        assert model.state_dict().keys() == back.state_dict().keys()
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())

    @pytest.mark.parametrize("name", bare)
    def test_bfloat16_within_its_rounding(name):
        g = golden(name)
        model = load(name, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        with torch.no_grad():
            got = model(**inputs_of(g)).last_hidden_state.float()
        want = g["output.last_hidden_state"]
        scale = want.abs().max().item()
        tolerance = 0.06 * scale + 0.02
        assert (got - want).abs().max() <= tolerance
        ref_bf16 = g["bf16.last_hidden_state"]
        if (ref_bf16 - want).abs().max() <= tolerance:   # the reference's run is sound: near it too
            assert (got - ref_bf16).abs().max() <= tolerance
        else:   # PyTorch's bfloat16 CPU convolution bug (8 channels a group, kernel 16) hits it
            assert "tiny" in name

    def test_fast_paths_give_the_plain_modules_numbers():
        model = load(classifier)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "CpuLinear" in kinds and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        for rows in (1, 2, 1):
            batch = example(rows)
            assert (run(model, batch) - run(reference, batch)).abs().max() <= 1e-5

    def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
        torch.manual_seed(0)
        model = load(classifier)
        model.config.layerdrop = 0.0   # every layer runs, so every adapter gets a gradient
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        peft.train()
        peft(**example(2), labels=torch.tensor([1, 0])).loss.backward()
        trainable = [p for p in peft.parameters() if p.requires_grad]
        assert trainable and all(p.grad is not None for p in trainable)
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn_like(p) * 0.05)
        peft.eval()
        for rows in (1, 2):
            batch = example(rows)
            got = run(peft, batch)
            reference = copy.deepcopy(peft)
            plain(reference)
            assert (got - run(reference, batch)).abs().max() <= 1e-5
        peft.save_pretrained(tmp_path / "adapter")
        again = PeftModel.from_pretrained(load(classifier), tmp_path / "adapter")
        assert (run(again, batch) - got).abs().max() <= 1e-5
        merged = again.merge_and_unload()
        assert (run(merged, batch) - got).abs().max() <= 1e-4

    def test_copies_pickling_and_a_dtype_round_trip():
        model = load(classifier)
        batch = example(2)
        want = run(model, batch)
        for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert (run(twin, batch) - want).abs().max() <= 1e-6
        model.to(torch.bfloat16).to(torch.float32)   # weights rounded to bfloat16 once
        assert model.dtype == torch.float32
        assert (run(model, batch) - want).abs().max() <= 1e-2 * want.abs().max() + 1e-2

    def test_torch_compile_gives_the_same_outputs():
        torch._dynamo.reset()
        model = load(classifier)
        batch = example(2)
        want = run(model, batch)
        assert (run(torch.compile(model), batch) - want).abs().max() <= 1e-5

    return {k: v for k, v in locals().items() if k.startswith("test_")}


__all__ = ["speech_model_tests", "golden", "inputs_of", "meta", "example", "run", "Path"]
