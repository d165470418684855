"""device_map / max_memory / offload_folder (issue 13): the planner on fake GPUs (pure, nothing
allocated), execution with CPU and disk blocks on the tiny fixtures (logits and generate()
exactly the plain model's, disk weights memory-mapped and not resident), hf_device_map, the
pipeline, quantization, and every refusal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrained import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, pipeline
from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.placement import (block_names, infer_device_map, parse_max_memory, parse_size,
                                  plan_blocks)

MODELS = Path(__file__).parent / "fixtures" / "models"
F32 = 4


@pytest.fixture(autouse=True)
def _inference():
    """Disk weights do not require grad, so outside no_grad the CPU kernels' inference paths
    would run for them only; compare both models on the same paths."""
    with torch.no_grad():
        yield


# --- the planner (pure) -------------------------------------------------------------------------
class Toy(nn.Module):
    """embed (640 bytes), 8 layers (1088 bytes each), head (272 bytes): 9616 bytes in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 16)
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(8))
        self.head = nn.Linear(16, 4)


E, L, H = 10 * 16 * F32, (16 * 16 + 16) * F32, (16 * 4 + 4) * F32
BIG = 10**9


def toy() -> Toy:
    with torch.device("meta"):
        return Toy()


def layers(devs: list) -> dict:
    return {f"layers.{i}": d for i, d in enumerate(devs)}


def test_sizes_of_the_toy_are_what_the_planner_is_checked_against():
    m = Toy()
    assert (E, L, H) == (sum(p.numel() * F32 for p in m.embed.parameters()),
                         sum(p.numel() * F32 for p in m.layers[0].parameters()),
                         sum(p.numel() * F32 for p in m.head.parameters()))
    assert block_names(m) == ["embed", *(f"layers.{i}" for i in range(8)), "head"]


def test_sequential_fills_each_device_in_turn_then_disk():
    # first pass: GPU 0 embed + 3 layers, GPU 1 3 layers, cpu 2 layers, the head on disk; blocks
    # are offloaded, so GPU 0 keeps room for the largest of them (a layer) and holds 2 layers
    got = infer_device_map(toy(), {0: E + 2 * L + L, 1: 3 * L, "cpu": 2 * L})
    assert got == {"embed": 0, **layers([0, 0, 1, 1, 1, "cpu", "cpu", "disk"]), "head": "disk"}
    got = infer_device_map(toy(), {0: E + 2 * L, 1: 3 * L, "cpu": 2 * L})   # no room kept: 1 layer
    assert got == {"embed": 0, **layers([0, 1, 1, 1, "cpu", "cpu", "disk", "disk"]), "head": "disk"}


def test_everything_on_one_device_is_one_entry():
    assert infer_device_map(toy(), {0: BIG, 1: BIG}, "sequential") == {"": 0}
    assert infer_device_map(toy(), {"cpu": BIG}, "auto") == {"": "cpu"}
    assert infer_device_map(toy(), {"cpu": 0}) == {"": "disk"}


def test_balanced_spreads_evenly_over_the_gpus():
    # an equal share is ceil(9616 / 2) = 4808 plus one layer of slack: embed + 4 layers each side
    want = {"embed": 0, **layers([0, 0, 0, 0, 1, 1, 1, 1]), "head": 1}
    assert infer_device_map(toy(), {0: BIG, 1: BIG, "cpu": BIG}, "balanced") == want
    assert infer_device_map(toy(), {0: BIG, 1: BIG, "cpu": BIG}, "auto") == want
    assert infer_device_map(toy(), {0: BIG, 1: BIG}, "sequential") == {"": 0}


def test_balanced_low_0_leaves_the_first_gpu_what_does_not_fit_elsewhere():
    want = {"embed": 1, **layers([1, 1, 1, 1, 2, 2, 2, 2]), "head": 2}
    assert infer_device_map(toy(), {0: BIG, 1: BIG, 2: BIG}, "balanced_low_0") == want
    # one GPU: as sequential
    assert infer_device_map(toy(), {0: BIG}, "balanced_low_0") == {"": 0}


def test_blocks_are_sized_for_the_dtype_asked():
    assert infer_device_map(toy(), {"cpu": (E + 8 * L + H) // 2}, dtype=torch.bfloat16) == {"": "cpu"}
    assert infer_device_map(toy(), {"cpu": (E + 8 * L + H) // 2}, dtype=torch.float32) != {"": "cpu"}


def _meta_llama(name: str):
    from pretrained.models.llama import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_dict(json.loads((MODELS / name / "config.json").read_text()))
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.tie_weights()
    return model


def test_tied_embeddings_and_head_land_on_one_device():
    model = _meta_llama("llama-mha-tied")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    e = model.model.embed_tokens.weight.numel() * F32
    lay = sum(t.numel() * F32 for t in (*model.model.layers[0].parameters(), *model.model.layers[0].buffers()))
    norm = model.model.norm.weight.numel() * F32
    assert lay > norm
    # first pass: embed + 2 layers on GPU 0, norm and rotary to the CPU; room kept for the norm
    # (the largest offloaded block) leaves GPU 0 one layer; the head follows its tied embeddings
    got = infer_device_map(model, {0: e + 2 * lay + 10, "cpu": BIG})
    assert got == {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cpu",
                   "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": 0}
    untied = _meta_llama("llama-gqa")
    got = infer_device_map(untied, {0: e + 2 * lay + 10, "cpu": BIG})
    assert got["lm_head"] == "cpu"


def test_block_names_follow_the_checkpoints_layout():
    model = _meta_llama("llama-gqa")
    assert block_names(model) == ["model.embed_tokens", "model.layers.0", "model.layers.1",
                                  "model.norm", "model.rotary_emb", "lm_head"]
    gpt2 = AutoModelForCausalLM.from_pretrained(MODELS / "gpt2-tiny")
    assert block_names(gpt2) == ["transformer.wte", "transformer.wpe", "transformer.drop",
                                 "transformer.h.0", "transformer.h.1", "transformer.ln_f", "lm_head"]
    bert = AutoModelForMaskedLM.from_pretrained(MODELS / "bert-tiny-mlm")
    assert block_names(bert) == ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "cls"]


def test_sizes_and_max_memory_parse():
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("200MB") == 200 * 10**6
    assert parse_size("1.5GB") == 1_500_000_000 and parse_size(7) == 7 and parse_size("10kb") == 10_000
    assert parse_max_memory({0: "1GiB", "cuda:1": 5, "cpu": "2MB", "disk": "1TB"}) == \
        {0: 2**30, 1: 5, "cpu": 2 * 10**6, "disk": 10**12}
    for bad in ({0: "lots"}, {0: -1}, {"toaster": 1}, {}, "1GB"):
        with pytest.raises(InvalidInputError, match="max_memory"):
            parse_max_memory(bad)
    with pytest.raises(InvalidInputError, match="device_map='fastest'.*sequential"):
        plan_blocks([], {"cpu": 1}, "fastest")


# --- execution: CPU and disk on the fixtures ---------------------------------------------------
def _resident_kib(tensors: list[torch.Tensor]) -> int:
    """Rss (KiB) of the memory mappings of this process that hold ``tensors``."""
    ptrs = {t.data_ptr() for t in tensors}
    total, keep = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                lo, hi = int(m.group(1), 16), int(m.group(2), 16)
                keep = any(lo <= p < hi for p in ptrs)
            elif keep and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def _mapped_from(t: torch.Tensor, path: Path) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= t.data_ptr() < hi:
                return line.rstrip().endswith(str(path))
    return False


IDS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])
LLAMA_SPLIT = {"model.embed_tokens": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu",
               "model.norm": "disk", "model.rotary_emb": "cpu", "lm_head": "cpu"}


@pytest.mark.parametrize("name,device_map", [
    ("llama-mha-tied", LLAMA_SPLIT),
    ("llama-gqa", {"model": "disk", "lm_head": "cpu"}),
    ("llama-gqa", {"": "disk"}),
    ("gpt2-tiny", {"transformer.wte": "cpu", "transformer.wpe": "disk", "transformer.h.0": "disk",
                   "transformer.h.1": "cpu", "transformer.drop": "cpu", "transformer.ln_f": "disk",
                   "lm_head": "cpu"}),
])
def test_disk_blocks_give_the_plain_models_logits_and_generation(name, device_map):
    plain = AutoModelForCausalLM.from_pretrained(MODELS / name)
    placed = AutoModelForCausalLM.from_pretrained(MODELS / name, device_map=device_map)
    assert placed.hf_device_map == device_map
    assert torch.equal(placed(IDS).logits, plain(IDS).logits)
    kw = dict(max_new_tokens=8, do_sample=False)
    assert torch.equal(placed.generate(IDS, **kw), plain.generate(IDS, **kw))
    assert torch.equal(placed.generate(IDS[:1], num_beams=3, **kw), plain.generate(IDS[:1], num_beams=3, **kw))


def test_disk_weights_are_mapped_from_the_checkpoint_and_not_resident():
    path = (MODELS / "llama-mha-tied" / "model.safetensors").resolve()
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-mha-tied", device_map=LLAMA_SPLIT)
    disk = [*model.model.layers[0].parameters(), model.model.norm.weight]
    ram = [*model.model.layers[1].parameters()]
    assert all(_mapped_from(t, path) for t in disk)
    assert not any(t.requires_grad for t in disk)   # memory-mapped weights are read-only
    assert _resident_kib(ram) > 0       # (the measure sees what is resident)
    assert _resident_kib(disk) == 0
    model(IDS)
    assert _resident_kib(disk) == 0     # read for the forward, dropped after
    model.generate(IDS, max_new_tokens=4, do_sample=False)
    assert _resident_kib(disk) == 0


def test_auto_under_max_memory_offloads_what_the_cpu_cannot_hold():
    plain = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    e = plain.model.embed_tokens.weight.numel() * F32
    lay = sum(t.numel() * F32 for t in plain.model.layers[0].parameters())
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", device_map="auto",
                                                 max_memory={"cpu": e + lay + 100})
    # in order: once a block goes to disk, so does every block after it
    assert model.hf_device_map == {"model.embed_tokens": "cpu", "model.layers.0": "cpu",
                                   "model.layers.1": "disk", "model.norm": "disk",
                                   "model.rotary_emb": "disk", "lm_head": "disk"}
    assert torch.equal(model(IDS).logits, plain(IDS).logits)
    for strategy in ("auto", "balanced", "balanced_low_0", "sequential", "cpu"):
        m = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", device_map=strategy)
        assert m.hf_device_map == {"": "cpu"} and m.device.type == "cpu"
    assert not hasattr(AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa"), "hf_device_map")


def test_encoder_with_disk_layers_matches():
    from pretrained.backends import plain as plain_kernels

    # (hooks make the fused whole-encoder C call step aside: both models on PyTorch's kernels)
    plain = AutoModelForMaskedLM.from_pretrained(MODELS / "bert-tiny-mlm")
    plain_kernels(plain)
    dm = {"bert.embeddings": "disk", "bert.encoder.layer.0": "cpu", "bert.encoder.layer.1": "disk", "cls": "cpu"}
    with pytest.raises(InvalidInputError, match="tied tensor"):   # cls's decoder is the word embeddings
        AutoModelForMaskedLM.from_pretrained(MODELS / "bert-tiny-mlm", device_map=dm)
    dm["cls"] = "disk"
    placed = AutoModelForMaskedLM.from_pretrained(MODELS / "bert-tiny-mlm", device_map=dm)
    plain_kernels(placed)
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    assert torch.equal(placed(ids).logits, plain(ids).logits)
    base = AutoModel.from_pretrained(MODELS / "bert-tiny", device_map={"": "cpu", "encoder.layer.1": "disk"})
    assert base.hf_device_map == {"": "cpu", "encoder.layer.1": "disk"}
    ref = AutoModel.from_pretrained(MODELS / "bert-tiny")
    plain_kernels(base), plain_kernels(ref)
    assert torch.equal(base(ids).last_hidden_state, ref(ids).last_hidden_state)


def test_offload_folder_keeps_converted_copies(tmp_path):
    plain = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", torch_dtype=torch.bfloat16)
    dm = {"model": "cpu", "model.layers.1": "disk", "lm_head": "disk"}
    with pytest.raises(InvalidInputError, match="not stored as bfloat16.*offload_folder"):
        AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", torch_dtype=torch.bfloat16, device_map=dm)
    off = tmp_path / "off"
    placed = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", torch_dtype=torch.bfloat16,
                                                  device_map=dm, offload_folder=off)
    index = json.loads((off / "index.json").read_text())
    assert index["lm_head.weight"] == {"dtype": "bfloat16", "shape": [128, 32]}
    assert "model.layers.1.mlp.up_proj.weight" in index and "model.layers.0.mlp.up_proj.weight" not in index
    assert _mapped_from(placed.lm_head.weight, (off / "lm_head.weight.dat").resolve())
    assert placed.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(placed(IDS).logits, plain(IDS).logits)


def test_pickle_checkpoints_need_an_offload_folder(tmp_path):
    src = tmp_path / "bin"
    AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa").save_pretrained(src, safe_serialization=False)
    dm = {"model": "cpu", "model.layers.0": "disk", "lm_head": "cpu"}
    with pytest.raises(InvalidInputError, match="not in safetensors files.*offload_folder"):
        AutoModelForCausalLM.from_pretrained(src, device_map=dm)
    placed = AutoModelForCausalLM.from_pretrained(src, device_map=dm, offload_folder=tmp_path / "off")
    assert torch.equal(placed(IDS).logits, AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")(IDS).logits)


def test_torch_dtype_auto_reads_the_saved_dtype(tmp_path):
    AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", torch_dtype=torch.bfloat16).save_pretrained(tmp_path)
    assert AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype="auto").dtype == torch.bfloat16
    # stored as asked: disk blocks map the saved file itself, no folder needed
    m = AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype="auto", device_map={"": "disk"})
    assert _mapped_from(m.model.layers[0].mlp.up_proj.weight, (tmp_path / "model.safetensors").resolve())


def test_quantized_loading_composes_on_one_device_and_refuses_disk():
    m = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", load_in_8bit=True, device_map="auto")
    assert m.hf_device_map == {"": "cpu"}
    assert type(m.model.layers[0].mlp.up_proj).__name__.endswith("Linear8bit")
    with pytest.raises(UnsupportedOptionError, match="offloading to disk is not supported for a .*quantized"):
        AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", load_in_8bit=True,
                                             device_map={"model": "cpu", "lm_head": "disk"})


def test_pipeline_takes_device_map_and_max_memory():
    chat = MODELS / "gpt2-tiny-chat"
    plain = pipeline("text-generation", model=chat)
    dm = {"transformer": "cpu", "transformer.h.1": "disk", "lm_head": "cpu"}
    placed = pipeline("text-generation", model=chat, device_map=dm)
    assert placed.model.hf_device_map == dm and str(placed.device) == "cpu"
    kw = dict(max_new_tokens=6, do_sample=False)
    assert placed("hello there", **kw) == plain("hello there", **kw)
    auto = pipeline("text-generation", model=chat, device_map="auto", model_kwargs={"max_memory": {"cpu": 20000}})
    assert "disk" in auto.model.hf_device_map.values()
    assert auto("hello there", **kw) == plain("hello there", **kw)


# --- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,says", [
    (dict(device_map={"model": "cpu"}), InvalidInputError, r"does not place 1 module.*'lm_head'"),
    (dict(device_map={"model.layers": "cpu", "lm_head": "cpu"}), InvalidInputError,
     r"does not place 2 module.*'model.embed_tokens', 'model.norm'"),
    (dict(device_map={"model.layer.0": "cpu", "": "cpu"}), InvalidInputError, "did you mean 'model.layers.0'"),
    (dict(device_map={"lm_head.weight": "cpu", "": "cpu"}), InvalidInputError, "is a parameter.*'lm_head'"),
    (dict(device_map={"": "cuda:3"}), InvalidInputError, "GPU 3, but this machine has"),
    (dict(device_map="cuda:3"), InvalidInputError, "GPU 3"),
    (dict(device_map={"": "toaster"}), InvalidInputError, "not a device"),
    (dict(device_map="fastest"), InvalidInputError, "not a device"),
    (dict(device_map={}), InvalidInputError, "places nothing"),
    (dict(max_memory={"cpu": "1GB"}), InvalidInputError, "with a device_map"),
    (dict(offload_folder="x"), InvalidInputError, "with a device_map"),
    (dict(device_map="cpu", max_memory={"cpu": "1GB"}), InvalidInputError, "nothing to decide"),
    (dict(device_map="auto", max_memory={5: "1GB"}), InvalidInputError, "GPU 5"),
    (dict(device_map="auto", max_memory={"cpu": "lots"}), InvalidInputError, "max_memory"),
    (dict(device_map="auto", offload_state_dict="yes"), InvalidInputError, "offload_state_dict"),
])
def test_what_cannot_be_placed_is_refused(kwargs, error, says):
    if not torch.cuda.is_available() or torch.cuda.device_count() <= 3:
        with pytest.raises(error, match=says):
            AutoModelForCausalLM.from_pretrained(MODELS / "llama-mha-tied", **kwargs)


def test_tied_weights_split_across_devices_are_refused():
    with pytest.raises(InvalidInputError, match="one tied tensor; put both modules on the same device"):
        AutoModelForCausalLM.from_pretrained(MODELS / "llama-mha-tied",
                                             device_map={"model": "cpu", "lm_head": "disk"})


def test_gguf_blocks_are_not_spread():
    gguf = MODELS / "gguf-tiny"
    files = sorted(p.name for p in gguf.glob("*.gguf"))
    if not files:
        pytest.skip("no GGUF fixture")
    with pytest.raises(UnsupportedOptionError, match="GGUF"):
        AutoModelForCausalLM.from_pretrained(gguf, gguf_file=files[0], device_map={"": "disk"})


def test_a_model_larger_than_memory_loads_with_disk_blocks(monkeypatch):
    import pretrained.modeling as modeling
    from pretrained.errors import ConfigError

    plain = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    monkeypatch.setattr(modeling, "_available_memory", lambda: 20_000)   # a machine of 20 kB
    with pytest.raises(ConfigError, match="memory is available"):
        AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa")
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", device_map="auto",
                                                 max_memory={"cpu": 20_000})
    assert "disk" in model.hf_device_map.values()
    assert torch.equal(model(IDS).logits, plain(IDS).logits)


def test_a_model_with_disk_blocks_saves_whole(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-mha-tied", device_map=LLAMA_SPLIT)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(again(IDS).logits, AutoModelForCausalLM.from_pretrained(MODELS / "llama-mha-tied")(IDS).logits)


def test_offloaded_weights_are_copied_for_the_forward_and_put_back():
    """The path a GPU main device takes for "cpu" and "disk" blocks, on a device that only
    records shapes (meta): weights copied there for the forward, the originals back after."""
    from pretrained.offload import _PlacedModule, move_to

    lin = nn.Linear(4, 3)
    original = lin.weight
    seen = []
    lin.register_forward_pre_hook(lambda m, a: seen.append((m.weight.device.type, m.weight is original)))
    placed = _PlacedModule([(lin, "_parameters", "weight"), (lin, "_parameters", "bias")],
                           torch.device("meta"), True, [], chain=True)
    lin.register_forward_pre_hook(placed.pre, with_kwargs=True, prepend=True)
    lin.register_forward_hook(placed.post, with_kwargs=True)
    out = lin(torch.ones(2, 4))
    assert out.device.type == "meta" and seen == [("meta", False)]
    assert lin.weight is original and lin.weight.device.type == "cpu"
    # outputs (tuples, dicts, output dataclasses) follow; a cache object is left as it is
    from pretrained.outputs import CausalLMOutput

    cache = object()
    moved = move_to(CausalLMOutput(logits=torch.ones(1), past_key_values=cache), torch.device("meta"))
    assert moved.logits.device.type == "meta" and moved.past_key_values is cache
    assert move_to({"a": (torch.ones(1), 3)}, torch.device("meta"))["a"][0].device.type == "meta"
