"""The tests every image model gets (ViT, DeiT, ConvNeXt, ConvNeXt V2), over one golden folder
written by its scripts/golden_<family>.py: the round trip (the reference reads our save: recorded),
our own save loading back bit for bit under the reference's names, bfloat16 within its rounding of
float32 and of the reference's bfloat16 run, the backend seam against the plain modules, LoRA
all-linear (trains, saves, reloads, merges, on the fast paths) and torch.compile.

A family's test file asks for them with ``image_model_tests(...)`` and adds what is its own."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tester import FIX, fixtures
from tester import load as _load

from pretrained.backends import plain
from pretrained.peft import LoraConfig, PeftModel, get_peft_model


class Goldens:
    """One family's golden folder: ``<family>.json`` (per fixture: losses, round trip) and a
    ``<fixture>.safetensors`` of inputs and the reference's outputs per fixture."""

    def __init__(self, family: str) -> None:
        self.folder: Path = FIX / "goldens" / family
        self.family = family

    @lru_cache(maxsize=None)
    def index(self) -> dict:
        return json.loads((self.folder / f"{self.family}.json").read_text())

    def meta(self, name: str) -> dict:
        return self.index()["models"][name]

    def golden(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / f"{name}.safetensors"))


def recorded(g: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in g.items() if k.startswith(prefix)}


def example(rows: int, seed: int = 0, channels: int = 3, size=(32, 32)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rows + seed)
    return {"pixel_values": torch.randn(rows, channels, *size, generator=g)}


def run(model, batch: dict, **kw) -> torch.Tensor:
    """The logits of a classifier, else the last hidden state."""
    with torch.no_grad():
        out = model(**batch, **kw)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def image_model_tests(goldens: Goldens, names: list[str], classifier: str, min_trainable: int,
                      labels=None, load_fn=None, folder_fn=None) -> dict:
    """``classifier``: a fixture with a head (32 x 32 pixels, 3 channels, labels 0-2);
    ``min_trainable``: the LoRA tensors all-linear must give it at least (2 per linear);
    ``labels``: the labels of a 2-image batch for its loss (default: classes 1 and 0);
    ``load_fn(name, **kw)`` / ``folder_fn(name)``: for fixtures whose checkpoint is made at test
    time (default: tester's ``load`` and tests/fixtures/models/<name>)."""
    labels = torch.tensor([1, 0]) if labels is None else labels
    custom = load_fn is not None
    load = load_fn or _load
    folder_fn = folder_fn or (lambda name: FIX / "models" / name)

    @pytest.mark.parametrize("name", names)
    def test_the_reference_reads_our_save(name):
        assert goldens.meta(name)["roundtrip_max_abs_diff"] <= 1e-4
        if not custom:   # tester's registry lists the fixtures it can load itself
            assert fixtures()[name]["roundtrip"] == goldens.meta(name)["roundtrip_max_abs_diff"]

    @pytest.mark.parametrize("name", names)
    def test_our_save_loads_back_bit_for_bit_under_the_reference_names(name, tmp_path):
        model = load(name)
        model.save_pretrained(tmp_path)
        saved = load_file(str(tmp_path / "model.safetensors"))
        assert sorted(saved) == sorted(load_file(str(folder_fn(name) / "model.safetensors")))
        back = type(model).from_pretrained(tmp_path)
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
        assert back.config.id2label == model.config.id2label

    @pytest.mark.parametrize("name", names)
    def test_bfloat16_within_its_rounding(name):
        g = goldens.golden(name)
        model = load(name, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        with torch.no_grad():
            out = model(pixel_values=g["input.pixel_values"])   # float32 pixels: cast by the model
        ref = recorded(g, "bf16.")
        assert ref
        for key, ref_bf16 in ref.items():
            want = g[f"output.{key}"]
            got = getattr(out, key).float()
            tolerance = 0.06 * want.abs().max().item() + 0.02
            assert (got - want).abs().max() <= tolerance, key
            assert (got - ref_bf16).abs().max() <= tolerance, key

    def test_fast_paths_give_the_plain_modules_numbers():
        model = load(classifier)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "CpuLinear" in kinds and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        assert "Linear" in {type(m).__name__ for m in reference.modules()}
        for rows in (1, 2, 1):   # the third call runs the sibling groups learnt in the first two
            batch = example(rows)
            assert (run(model, batch) - run(reference, batch)).abs().max() <= 1e-5

    def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
        torch.manual_seed(0)
        model = load(classifier)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        stats = {k: v.clone() for k, v in peft.named_buffers()}
        peft.train()
        peft(**example(2), labels=labels).loss.backward()
        with torch.no_grad():   # batch norms (ResNet) learnt running statistics the adapter does not carry
            for k, v in peft.named_buffers():
                v.copy_(stats[k])
        trainable = [p for p in peft.parameters() if p.requires_grad]
        assert len(trainable) >= min_trainable and all(p.grad is not None for p in trainable)
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn_like(p) * 0.05)   # a non-zero adapter: skipping it would show
        peft.eval()
        base = run(load(classifier), example(2))
        for rows in (1, 2):
            batch = example(rows)
            got = run(peft, batch)
            reference = copy.deepcopy(peft)
            plain(reference)
            assert (got - run(reference, batch)).abs().max() <= 1e-5
        assert (got - base).abs().max() > 1e-3
        peft.save_pretrained(tmp_path / "adapter")
        again = PeftModel.from_pretrained(load(classifier), tmp_path / "adapter")
        assert (run(again, batch) - got).abs().max() <= 1e-5
        merged = again.merge_and_unload()
        assert (run(merged, batch) - got).abs().max() <= 1e-4

    def test_torch_compile_gives_the_same_outputs():
        torch._dynamo.reset()
        model = load(classifier)
        batch = example(2)
        want = run(model, batch)
        assert (run(torch.compile(model), batch) - want).abs().max() <= 1e-5

    return {k: v for k, v in locals().items() if k.startswith("test_")}
