"""One loader over weight sources: a model folder (config.json + safetensors/.bin) and a GGUF
file give the same two methods, and every tensor passes one per-tensor step on its way in."""

from __future__ import annotations

from pathlib import Path

import torch

from pretrained.gguf import load_gguf
from pretrained.io.hub import resolve
from pretrained.io.loading import FolderWeights, cast_to, load_checkpoint_into
from pretrained.models.bert import BertConfig, BertModel

FIX = Path(__file__).parent / "fixtures" / "models"


def test_folder_and_gguf_sources_offer_the_same_interface():
    folder = FolderWeights(resolve(FIX / "bert-tiny"))
    gguf_path = next((FIX / "gguf-tiny").glob("*.gguf"))
    for source in (folder, load_gguf(gguf_path)):
        config = source.config_dict()
        assert isinstance(config, dict) and config["model_type"] in ("bert", "llama", "gpt2")
        ckpt = source.checkpoint()
        try:
            key = ckpt.keys()[0]
            assert tuple(ckpt.get(key).shape) == tuple(ckpt.shape(key))
            assert ckpt.first_float_dtype() in (torch.float32, torch.float16, torch.bfloat16)
        finally:
            ckpt.close()


def test_every_tensor_passes_the_per_tensor_step():
    """What a quantizing load will use: the step sees each tensor by the model's name and what it
    returns is what the model holds."""
    source = FolderWeights(resolve(FIX / "bert-tiny"))
    config = BertConfig.from_dict(source.config_dict())
    seen = {}
    cast = cast_to(torch.float32, torch.device("cpu"))

    def doubled(name, t):
        seen[name] = tuple(t.shape)
        t = cast(name, t)
        return t * 2 if t.is_floating_point() else t

    loaded = []
    for convert in (None, doubled):
        with torch.device("meta"):
            model = BertModel(config)
        ckpt = source.checkpoint()
        try:
            load_checkpoint_into(model, ckpt, dtype=torch.float32, device=torch.device("cpu"),
                                 prefix="bert", convert=convert)
        finally:
            ckpt.close()
        loaded.append(dict(model.named_parameters()))
    plain, twice = loaded
    assert set(seen) == set(plain)
    assert all(torch.equal(twice[k], plain[k] * 2) for k in plain)
