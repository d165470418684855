"""Post-LayerNorm encoder layers in one C call (``rk.encoder_stack`` via
``backends.encoder.FusedLayerStack``), which BERT, RoBERTa, XLM-R, ELECTRA and DistilBERT use for
inference on float32 CPU input of up to 16 rows: the reference's numbers on the golden fixtures
(one sequence at a time, so each call fits), equal to the layers' own modules, padding masks, the
[CLS]-only last layer, weights changed or moved after the first call, and where it steps aside
(more rows, autograd, training, another activation, LoRA); bfloat16 against the reference's
bfloat16 goldens and the modules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import auto
from pretrained.backends import accelerate as _accelerate
from pretrained.backends import encoder as encoder_blocks
from pretrained.backends import build
from pretrained.backends import rows as rk
from pretrained.models.bert import BertConfig, BertForSequenceClassification, BertModel

pytestmark = pytest.mark.skipif(not build.available(),
                                reason="no C kernels on this machine: " + build.describe())

FIX = Path(__file__).parent / "fixtures"
META = {**json.loads((FIX / "goldens" / "models.json").read_text())["models"],
        **json.loads((FIX / "goldens" / "encoders" / "encoders.json").read_text())["models"]}
FAMILY = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")


def _config(name: str) -> dict:
    return json.loads((FIX / "models" / name / "config.json").read_text())


def _exact_gelu(name: str) -> bool:
    cfg = _config(name)
    return cfg.get("hidden_act", cfg.get("activation")) == "gelu"


NAMES = sorted(n for n in META if _config(n)["model_type"] in FAMILY and _exact_gelu(n))


def _golden(name: str) -> dict:
    path = FIX / "goldens" / "encoders" / f"{name}.safetensors"
    return load_file(str(path if path.exists() else FIX / "goldens" / f"{name}.safetensors"))


def _load(name: str):
    classes = auto.model_module(_config(name)["model_type"]).MODEL_CLASSES.values()
    cls = next(c for c in classes if c.__name__ == META[name]["class"])
    return cls.from_pretrained(FIX / "models" / name)


@pytest.fixture
def calls(monkeypatch):
    """One entry per forward that reached the kernel: whether it ran there."""
    seen = []

    def spy(*args, **kwargs):
        y = rk.encoder_stack(*args, **kwargs)
        seen.append(y is not None)
        return y

    monkeypatch.setattr(encoder_blocks, "encoder_stack", spy)
    return seen


def _modules_only(monkeypatch):
    monkeypatch.setattr(encoder_blocks, "encoder_stack", lambda *a, **k: None)


def test_fixtures_cover_the_family():
    assert {_config(n)["model_type"] for n in NAMES} == set(FAMILY)


@pytest.mark.parametrize("name", NAMES)
def test_reference_numbers_one_sequence_at_a_time(name, calls):
    """Each golden row alone (its padding and mask kept: 9 rows) against the reference's output
    for that row of the batch."""
    g = _golden(name)
    inputs = {k[6:]: v for k, v in g.items() if k.startswith("input.")}
    expected = {k[7:]: v for k, v in g.items() if k.startswith("output.")}
    model = _load(name)
    with torch.inference_mode():
        for i in range(inputs["input_ids"].shape[0]):
            out = model(**{k: v[i:i + 1] for k, v in inputs.items()})
            for key, want in expected.items():
                got = getattr(out, key)
                diff = (got[0] - want[i]).abs().max().item()
                assert diff <= 1e-4, (key, i, diff)
    assert calls and all(calls)


def _amx_widths(name: str) -> bool:
    cfg = _config(name)
    return all(cfg.get(k, 0) % 32 == 0 for k in ("hidden_size", "intermediate_size", "dim",
                                                  "hidden_dim"))


BF16_NAMES = [n for n in NAMES if _amx_widths(n) and any(k.startswith("bf16.") for k in _golden(n))]


def test_bfloat16_fixtures_cover_bert_and_distilbert_layers():
    assert {_config(n)["model_type"] for n in BF16_NAMES} == {"roberta", "distilbert"}


@pytest.mark.parametrize("name", BF16_NAMES)
def test_bfloat16_reference_numbers_one_sequence_at_a_time(name, calls):
    """bfloat16 (AMX linears; the rest rounded where torch's bfloat16 ops round) against the
    reference's bfloat16 outputs, with the bfloat16 parity test's tolerance (3% of the scale)."""
    if not build.bf16_ready():
        pytest.skip("no bfloat16 kernels on this machine: bfloat16 runs the modules")
    g = _golden(name)
    inputs = {k[6:]: v for k, v in g.items() if k.startswith("input.")}
    expected = {k[5:]: v for k, v in g.items() if k.startswith("bf16.")}
    model = _load(name).to(torch.bfloat16)
    scale = max(v.abs().max().item() for v in expected.values())
    with torch.inference_mode():
        for i in range(inputs["input_ids"].shape[0]):
            out = model(**{k: v[i:i + 1] for k, v in inputs.items()})
            for key, want in expected.items():
                diff = (getattr(out, key)[0].float() - want[i].float()).abs().max().item()
                assert diff <= 0.03 * scale, (key, i, diff)
    assert calls and all(calls)


@pytest.mark.parametrize("shape,hidden,heads", [((1, 16), 64, 4), ((2, 8), 128, 2),
                                                ((3, 5), 96, 3)])
def test_bfloat16_equals_the_modules_within_rounding(shape, hidden, heads, calls, monkeypatch):
    """Against the same layers as torch bfloat16 ops: the same answer but for an ulp where the
    order of a float32 sum differs before a rounding (then carried through the layers); both
    as far from the float32 model."""
    if not build.bf16_ready():
        pytest.skip("no bfloat16 kernels on this machine: bfloat16 runs the modules")
    model = _bert(hidden, heads, layers=2).to(torch.bfloat16)
    ids, mask = _inputs(shape)
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask).last_hidden_state.float()
        assert calls == [True]
        exact = model.float()(ids, attention_mask=mask).last_hidden_state
        model.to(torch.bfloat16)
        _modules_only(monkeypatch)
        plain = model(ids, attention_mask=mask).last_hidden_state.float()
    ulp = 2.0 ** -7 * exact.abs().clamp(min=1)
    assert ((fused - plain).abs() <= 4 * ulp).float().mean() >= 0.99
    assert (fused - exact).abs().max() <= 1.5 * (plain - exact).abs().max() + 1e-2


def _accelerated(model):
    """A model built from its class, with the backend's modules swapped in as from_pretrained does."""
    _accelerate(model)
    return model


def _inputs(shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids and a mask: with several sequences, the first right-padded, the second left."""
    ids = torch.randint(1, 120, shape)
    mask = torch.ones(shape, dtype=torch.long)
    if shape[0] > 1:
        mask[0, -2:] = 0
        mask[1, :1] = 0
    return ids, mask


def _bert(hidden=64, heads=4, layers=2, act="gelu", **kw) -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=2 * hidden, hidden_act=act, **kw)
    return _accelerated(BertModel(cfg).eval())


@pytest.mark.parametrize("shape,hidden,heads", [((1, 16), 64, 4), ((1, 1), 64, 4), ((2, 8), 48, 3),
                                                ((3, 5), 40, 5), ((1, 7), 36, 2)])
def test_equals_the_modules(shape, hidden, heads, calls, monkeypatch):
    """Against the same layers run as torch ops: widths with vector tails (36, 40, 48), head
    sizes 12-20, several sequences, padding (a left- and a right-padded row)."""
    model = _bert(hidden, heads)
    ids, mask = _inputs(shape)
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask)
        assert calls and all(calls)
        _modules_only(monkeypatch)
        plain = model(ids, attention_mask=mask)
    for key in ("last_hidden_state", "pooler_output"):
        diff = (getattr(fused, key) - getattr(plain, key)).abs().max().item()
        assert diff <= 1e-5, (key, diff)


def test_first_token_only_last_layer(calls, monkeypatch):
    """Sequence classification runs its last layer at [CLS] only: the kernel's first_only."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=128, num_labels=3)
    model = _accelerated(BertForSequenceClassification(cfg).eval())
    ids = torch.randint(1, 120, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask).logits
        assert calls == [True]
        _modules_only(monkeypatch)
        plain = model(ids, attention_mask=mask).logits
    assert (fused - plain).abs().max().item() <= 1e-5


def test_a_sequence_with_no_visible_token_matches_the_modules(monkeypatch):
    """An all-zero attention mask row: every key masked (SDPA's answer, whatever it is)."""
    model = _bert()
    ids = torch.randint(1, 120, (2, 6))
    mask = torch.ones_like(ids)
    mask[1] = 0
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask).last_hidden_state
        _modules_only(monkeypatch)
        plain = model(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(fused).all()
    assert (fused - plain).abs().max().item() <= 1e-5


def test_steps_aside_where_it_does_not_apply(calls):
    model = _bert()
    ids = torch.randint(1, 120, (1, 17))
    with torch.inference_mode():
        model(ids)                                   # 17 rows
    model(ids[:, :8])                                # autograd recording
    model.train()
    with torch.no_grad():
        model(ids[:, :8])                            # training
        model.eval()
        _bert(48, 4).to(torch.bfloat16)(ids[:, :8])  # bfloat16, hidden size not a multiple of 32
        tanh_gelu = _bert(act="gelu_new")
        for _ in range(2):                           # tanh GELU (the second call: cached "no")
            tanh_gelu(ids[:, :8])
    assert not any(calls)
    calls.clear()
    with torch.no_grad():
        model.float()(ids[:, :8])
    assert calls and all(calls)


def test_lora_wrapped_projections_run_the_modules_until_merged(calls):
    from pretrained.peft import LoraConfig, get_peft_model

    ids = torch.randint(1, 120, (1, 8))
    model = get_peft_model(_bert(), LoraConfig(r=2, target_modules=["query", "value"]))
    model.eval()
    with torch.no_grad():
        for lora in (m for n, m in model.named_modules() if n.endswith("lora_B")):
            lora.weight.normal_()                # a non-zero adapter
        wrapped = model(ids).last_hidden_state
        assert not any(calls)
        merged = model.merge_and_unload()
        again = merged(ids).last_hidden_state
    assert calls == [True]
    assert (again - wrapped).abs().max() <= 1e-5


def test_thread_count_does_not_change_the_result():
    model = _bert(128, 4)
    ids = torch.randint(1, 120, (1, 12))
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = model(ids).last_hidden_state
            torch.set_num_threads(2)
            two = model(ids).last_hidden_state
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def _plain(model, *args, **kw):
    """The model's output with every layer run as torch ops."""
    saved = encoder_blocks.encoder_stack
    encoder_blocks.encoder_stack = lambda *a, **k: None
    try:
        return model(*args, **kw).last_hidden_state
    finally:
        encoder_blocks.encoder_stack = saved


def test_weights_changed_after_the_first_call_are_used(calls):
    """In place, replaced by a new Parameter, moved by .to() and back, a module swapped: each
    call after such a change equals the modules' answer."""
    model = _bert()
    ids = torch.randint(1, 120, (1, 9))
    layer = model.encoder.layer[1]
    with torch.inference_mode():
        model(ids)
    with torch.no_grad():
        layer.output.dense.weight.mul_(2)                                          # in place
        first = model(ids).last_hidden_state
        assert (first - _plain(model, ids)).abs().max() <= 1e-5
        layer.intermediate.dense.weight = torch.nn.Parameter(torch.randn(128, 64))  # replaced
        second = model(ids).last_hidden_state
        assert (second - _plain(model, ids)).abs().max() <= 1e-5
        assert (second - first).abs().max() > 1e-2
        model.to(torch.float64).to(torch.float32)                                  # moved
        assert (model(ids).last_hidden_state - second).abs().max() <= 1e-6
        layer.attention.self.key = torch.nn.Linear(64, 64)                          # module swapped
        assert torch.equal(model(ids).last_hidden_state, _plain(model, ids))  # in training mode: modules
        layer.attention.self.key.eval()
        third = model(ids).last_hidden_state
        assert (third - _plain(model, ids)).abs().max() <= 1e-5
        assert (third - second).abs().max() > 1e-2
    assert len(calls) == 5 and all(calls)


def test_models_copy_and_pickle_with_a_plan_built(tmp_path):
    import copy
    import pickle

    model = _bert()
    ids = torch.randint(1, 120, (1, 6))
    with torch.inference_mode():
        want = model(ids).last_hidden_state
        twin = copy.deepcopy(model)
        del model
        assert torch.equal(twin(ids).last_hidden_state, want)
        back = pickle.loads(pickle.dumps(twin))
        assert torch.equal(back(ids).last_hidden_state, want)


def test_without_the_kernel_the_layers_run_as_modules(calls, monkeypatch):
    """No C library (no compiler, PRETRAINED_NO_KERNELS=1): the stack declines, same numbers."""
    model = _bert()
    ids = torch.randint(1, 120, (1, 10))
    with torch.inference_mode():
        fused = model(ids).last_hidden_state
        monkeypatch.setattr(build, "_lib", False)
        plain = model(ids).last_hidden_state
    assert calls == [True, False]
    assert (fused - plain).abs().max() <= 1e-5
