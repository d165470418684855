"""The encoders' inference fast paths: opt-in pre-packed linear weights (backends.CpuLinear,
set_weight_packing) and the [CLS]-only last layer of BERT's sequence classifier. Each must give the reference's numbers (goldens) and follow weight changes."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pretrained
from pretrained import auto
from pretrained import layers
from pretrained.backends import build
from pretrained.backends import packed, set_weight_packing
from pretrained.backends.linear import CpuLinear
from pretrained.backends.packed import PackedWeights
from pretrained.models.bert import BertConfig, BertForSequenceClassification, BertModel

FIX = Path(__file__).parent / "fixtures"
BERT = {n: m for n, m in json.loads((FIX / "goldens" / "models.json").read_text())["models"].items()
        if m["arch"] == "bert"}
ENCODERS = {n: m for n, m in json.loads((FIX / "goldens" / "encoders" / "encoders.json").read_text())[
    "models"].items() if m["arch"] in ("roberta", "xlm-roberta", "electra", "deberta-v2")}
FIELDS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")
needs_packing = pytest.mark.skipif(not packed.packing_available(),
                                   reason="oneDNN weight packing is not available in this torch build")


DEFAULT_MIN_WEIGHT = packed.PACKED_MIN_WEIGHT


@pytest.fixture(autouse=True)
def pack_small_weights(monkeypatch):
    """The fixtures' weights are tiny: pack them anyway (production packs large ones only); and
    their inputs are a few rows, which the rows kernel would take: switch it off here, so these
    tests exercise the packed and plain paths (tests/test_rows.py covers the kernel)."""
    monkeypatch.setattr(packed, "PACKED_MIN_WEIGHT", 0)
    monkeypatch.setattr(build, "_lib", False)


def golden(name: str) -> tuple[dict, dict]:
    path = FIX / "goldens" / (f"{name}.safetensors" if name in BERT else f"encoders/{name}.safetensors")
    g = load_file(str(path))
    pick = lambda p: {k[len(p):]: v for k, v in g.items() if k.startswith(p)}  # noqa: E731
    return pick("input."), pick("output.")


def tiny_bert(cls=BertModel, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, **kw)
    return cls.from_config(cfg).eval()


def ids(b: int = 2, t: int = 7) -> dict:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, t - 2:] = 0
    return {"input_ids": torch.randint(1, 99, (b, t), generator=g), "attention_mask": mask}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@needs_packing
@pytest.mark.parametrize("name", sorted(BERT) + sorted(ENCODERS))
def test_packed_forward_matches_reference_goldens(name):
    inputs, expected = golden(name)
    meta = BERT.get(name) or ENCODERS[name]
    folder = FIX / "models" / name
    model = next(c for c in auto.model_module(meta["arch"]).MODEL_CLASSES.values()
                 if c.__name__ == meta["class"]).from_pretrained(folder)
    assert set_weight_packing(model) > 0
    with torch.inference_mode():
        out = model(**inputs)
    assert any(isinstance(v, PackedWeights) for m in model.modules() for v in vars(m).values())
    for key, want in expected.items():
        assert max_diff(getattr(out, key), want) <= 1e-4, key


@needs_packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_equals_plain(dtype):
    model = tiny_bert().to(dtype)
    with torch.no_grad():
        plain = model(**ids())
        set_weight_packing(model)
        packed = model(**ids())
    attn = model.encoder.layer[0].attention.self
    assert isinstance(attn.query.__dict__.get("_packed"), PackedWeights)
    tol = 1e-5 if dtype == torch.float32 else 0.02
    assert max_diff(packed.last_hidden_state, plain.last_hidden_state) <= tol
    assert max_diff(packed.pooler_output, plain.pooler_output) <= tol


@needs_packing
def test_packed_weights_follow_in_place_writes_dtype_changes_and_reloads(tmp_path):
    model = tiny_bert()
    set_weight_packing(model)
    x = ids()
    with torch.inference_mode():
        model(**x)
    with torch.no_grad():  # in place: the version counter moves
        for p in model.parameters():
            p.mul_(1.5)
    for step in ("in place", "bfloat16", "float32", "load_state_dict"):
        if step == "bfloat16":
            model.to(torch.bfloat16)
        elif step == "float32":
            model.to(torch.float32)
        elif step == "load_state_dict":
            other = tiny_bert()
            with torch.no_grad():
                other.embeddings.word_embeddings.weight.add_(0.1)
                other.encoder.layer[1].intermediate.dense.weight.mul_(-1)
            model.load_state_dict(other.state_dict())
        with torch.inference_mode():
            got = model(**x)  # through the caches built before this step
        plain = copy.deepcopy(model)
        set_weight_packing(plain, False)
        with torch.no_grad():
            want = plain(**x)
        # bfloat16: an ulp or two apart (fused GELU); stale weights are off by ~1
        tol = 1e-5 if model.dtype == torch.float32 else 0.01 * want.last_hidden_state.abs().max().item()
        assert max_diff(got.last_hidden_state, want.last_hidden_state) <= tol, step


@needs_packing
def test_float32_above_the_row_limit_keeps_the_plain_path(monkeypatch):
    monkeypatch.setattr(packed, "PACKED_FP32_MAX_ROWS", 4)
    model = tiny_bert()
    set_weight_packing(model)
    with torch.no_grad():
        model(**ids(2, 7))  # 14 rows > 4: plain path in the layers (the pooler has 2 rows)
    assert not any(isinstance(v, PackedWeights) for m in model.encoder.modules() for v in vars(m).values())
    assert isinstance(model.pooler.dense.__dict__.get("_packed"), PackedWeights)
    with torch.no_grad():
        model(**ids(1, 3))
    assert isinstance(model.encoder.layer[0].attention.self.query.__dict__.get("_packed"), PackedWeights)


@needs_packing
def test_small_weights_and_float32_single_rows_keep_the_plain_path(monkeypatch):
    monkeypatch.setattr(packed, "PACKED_MIN_WEIGHT", DEFAULT_MIN_WEIGHT)
    model = tiny_bert()  # 32 x 32 weights: below the size where packing pays
    set_weight_packing(model)
    with torch.no_grad():
        model(**ids())
    assert not any(isinstance(v, PackedWeights) for m in model.modules() for v in vars(m).values())
    lin = CpuLinear(512, 512)
    set_weight_packing(lin)
    with torch.no_grad():
        one = lin(torch.randn(1, 512))  # float32 matrix-vector: MKL's own kernel is faster
        assert "_packed" not in lin.__dict__
        many = lin(torch.randn(4, 512))
        assert "_packed" in lin.__dict__
        lin.to(torch.bfloat16)(torch.randn(1, 512, dtype=torch.bfloat16))
    assert lin.__dict__["_packed"].weight.dtype == torch.bfloat16
    assert one.shape == (1, 512) and many.shape == (4, 512)


def test_autograd_uses_the_plain_weights_and_trains():
    model = tiny_bert(BertForSequenceClassification, num_labels=2).train()
    set_weight_packing(model)
    out = model(**ids(), labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert not any(isinstance(v, PackedWeights) for m in model.modules() for v in vars(m).values())


@needs_packing
def test_lora_wrapped_projection_keeps_its_adapter():
    from pretrained.peft import LoraConfig, get_peft_model

    model = tiny_bert(BertForSequenceClassification, num_labels=2)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a non-zero adapter, so skipping it would show
    peft.eval()
    with torch.no_grad():
        want = peft(**ids()).logits
        set_weight_packing(peft)
        got = peft(**ids()).logits
    assert max_diff(got, want) <= 1e-5
    attn = model.bert.encoder.layer[0].attention.self
    assert isinstance(attn.query.base_layer.__dict__.get("_packed"), PackedWeights)  # packed base


@needs_packing
def test_turning_packing_off_frees_copies_and_models_copy_without_them():
    model = tiny_bert()
    n = set_weight_packing(model)
    assert n == sum(1 for m in model.modules() if hasattr(type(m), "packing"))
    with torch.inference_mode():
        want = model(**ids()).last_hidden_state
    clone = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    for m in (clone, restored):
        assert all(v.weight is None for mod in m.modules() for v in vars(mod).values()
                   if isinstance(v, PackedWeights))
        with torch.inference_mode():
            assert max_diff(m(**ids()).last_hidden_state, want) == 0.0
    set_weight_packing(model, False)
    assert not any(isinstance(v, PackedWeights) for m in model.modules() for v in vars(m).values())
    assert not any(getattr(m, "packing", False) for m in model.modules())


def test_state_dict_keys_are_the_checkpoint_keys():
    model = tiny_bert()
    set_weight_packing(model)
    with torch.inference_mode():
        model(**ids())
    keys = set(model.state_dict())
    assert "encoder.layer.0.attention.self.query.weight" in keys
    assert not any("packed" in k or "qkv" in k for k in keys)
    assert isinstance(model.encoder.layer[0].attention.self.query, torch.nn.Linear)


def test_first_token_only_equals_the_full_pass():
    model = tiny_bert()
    with torch.no_grad():
        full = model(**ids())
        first = model(**ids(), first_token_only=True)
        kept = model(**ids(), first_token_only=True, output_hidden_states=True)
    assert first.last_hidden_state.shape == (2, 1, 32)
    assert max_diff(first.last_hidden_state[:, 0], full.last_hidden_state[:, 0]) <= 1e-6
    assert max_diff(first.pooler_output, full.pooler_output) <= 1e-6
    assert kept.last_hidden_state.shape == full.last_hidden_state.shape  # hidden states: full pass


def test_sequence_classifier_runs_the_last_layer_for_cls_only_in_eval():
    model = tiny_bert(BertForSequenceClassification, num_labels=3)
    seen = []
    model.bert.encoder.layer[-1].output.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        logits = model(**ids()).logits
        full = model(**ids(), output_hidden_states=True)
    assert seen == [(2, 1, 32), (2, 7, 32)]
    assert max_diff(logits, full.logits) <= 1e-6
    model.train()
    torch.manual_seed(0)
    model(**ids())
    assert seen[-1] == (2, 7, 32)  # training: the full pass, as the reference draws its dropout


def test_pipeline_packs_weights_only_when_asked():
    from pipeline_goldens import model_path

    pipe = pretrained.pipeline("text-classification", model=model_path("pipe-bert-sentiment"))
    flags = [m.packing for m in pipe.model.modules() if isinstance(m, CpuLinear)]
    assert flags and not any(flags)  # lean by default: no second copy of the weights
    pipe = pretrained.pipeline("text-classification", model=model_path("pipe-bert-sentiment"),
                               pack_weights=True)
    flags = [m.packing for m in pipe.model.modules() if isinstance(m, CpuLinear)]
    assert flags and all(flags)


@needs_packing
def test_fused_projection_with_a_missing_bias():
    g = torch.Generator().manual_seed(0)
    ws = tuple(torch.randn(24, 16, generator=g) for _ in range(3))
    bs = (torch.randn(24, generator=g), None, torch.randn(24, generator=g))
    x = torch.randn(3, 5, 16, generator=g)
    with torch.no_grad():
        got = packed.packed_linear(x, PackedWeights(), ws, bs)
        want = torch.cat([torch.nn.functional.linear(x, w, b) for w, b in zip(ws, bs)], -1)
        assert max_diff(got, want) <= 1e-5
        no_bias = packed.packed_linear(x, PackedWeights(), ws[:1], (None,))
        assert max_diff(no_bias, x @ ws[0].T) <= 1e-5


@needs_packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_loaded_inside_inference_mode_runs_packed(dtype, tmp_path):
    # inference tensors keep no version counter: the packed cache's key must not read it
    # ("Inference tensors do not track version counter")
    tiny_bert().save_pretrained(tmp_path)
    with torch.no_grad():
        outside = BertModel.from_pretrained(tmp_path, torch_dtype=dtype)
        set_weight_packing(outside, False)
        want = outside(**ids()).last_hidden_state
    with torch.inference_mode():
        model = BertModel.from_pretrained(tmp_path, torch_dtype=dtype)
        assert model.encoder.layer[0].attention.self.query.weight.is_inference()
        assert set_weight_packing(model) > 0
        first = model(**ids()).last_hidden_state
        again = model(**ids()).last_hidden_state   # the cache built by the first call, kept
    attn = model.encoder.layer[0].attention.self
    assert isinstance(attn.query.__dict__.get("_packed"), PackedWeights)
    tol = 1e-5 if dtype == torch.float32 else 0.02
    assert max_diff(first, want) <= tol and torch.equal(again, first)
    # a plain module whose weights were made in inference mode, packed outside it
    with torch.inference_mode():
        inf = tiny_bert()
    set_weight_packing(inf)
    with torch.no_grad():
        assert max_diff(inf(**ids()).last_hidden_state, tiny_bert()(**ids()).last_hidden_state) <= 1e-5
