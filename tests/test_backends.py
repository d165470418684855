"""The backend seam (pretrained.backends): model files are plain math, from_pretrained swaps in the
CPU modules, and the swaps compose with .to(), autograd, autocast, copies and torch.compile,
giving the plain modules' numbers. Per architecture (fast paths against the plain modules, LoRA
over all-linear targets): tests/models/tester.py."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pretrained import auto
from pretrained.backends import accelerate, build, plain
from pretrained.backends import linear as fast_linear
from pretrained.backends.encoder import FusedLayerStack
from pretrained.backends.linear import CpuLinear

FIX = Path(__file__).parent / "fixtures" / "models"
PKG = Path(__file__).parent.parent / "pretrained"
needs_kernel = pytest.mark.skipif(not build.available(), reason="no C kernels here: " + build.describe())

# one checkpoint per architecture, with a head that has a loss
ARCHS = {
    "bert": ("bert-tiny-seqcls", "sequence-classification"),
    "distilbert": ("distilbert-mini-seqcls", "sequence-classification"),
    "roberta": ("roberta-mini-seqcls", "sequence-classification"),
    "xlm-roberta": ("xlm-roberta-mini-seqcls", "sequence-classification"),
    "electra": ("electra-mini-seqcls", "sequence-classification"),
    "deberta-v2": ("deberta-v2-mini-seqcls", "sequence-classification"),
    "gpt2": ("gpt2-tiny", "causal-lm"),
    "gpt_neox": ("gpt_neox-parallel", "causal-lm"),
    "llama": ("llama-gqa", "causal-lm"),
    "mistral": ("mistral-window", "causal-lm"),
    "qwen2": ("qwen2-tied", "causal-lm"),
    "qwen3": ("qwen3", "causal-lm"),
}


def load(arch: str) -> nn.Module:
    name, head = ARCHS[arch]
    cls = auto.model_module(arch).MODEL_CLASSES[head]
    return cls.from_pretrained(FIX / name)


def inputs(model: nn.Module, rows: int = 1, length: int = 6) -> dict:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, model.config.vocab_size, (rows, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def logits_of(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_model_files_are_plain_math():
    """No model file names a kernel, packing, a fused call or a string-named post-op (a convolution's
    kernel_size is its math, not a kernel)."""
    banned = re.compile(r"Packed|packing|rows_|fused|(?<!conv_)kernel(?!_size)|linear_then|post_ln|backends|Cpu")
    for path in sorted((PKG / "models").glob("*.py")):
        hits = [line for line in path.read_text().splitlines() if banned.search(line)]
        assert not hits, (path.name, hits)


@needs_kernel
def test_siblings_on_the_same_input_run_as_one_call(monkeypatch):
    """q/k/v and gate/up are found by watching the calls; o_proj and down_proj stay alone."""
    model = load("llama")
    calls = []
    real = fast_linear.rows_linear_many
    monkeypatch.setattr(fast_linear, "rows_linear_many",
                        lambda x, ws, bs: calls.append(len(ws)) or real(x, ws, bs))
    batch = inputs(model)
    want = logits_of(copy.deepcopy(model), batch)
    for _ in range(3):
        got = logits_of(model, batch)
        assert (got - want).abs().max() <= 1e-5
    layer = model.model.layers[0]
    sizes = {name: len(vars(m)["_group"].members) if "_group" in vars(m) else 0
             for name, m in layer.named_modules() if isinstance(m, CpuLinear)}
    assert sizes == {"self_attn.q_proj": 3, "self_attn.k_proj": 3, "self_attn.v_proj": 3,
                     "self_attn.o_proj": 0, "mlp.gate_proj": 2, "mlp.up_proj": 2, "mlp.down_proj": 0}
    assert calls.count(3) >= 2 * model.config.num_hidden_layers and 2 in calls


@needs_kernel
def test_a_group_hands_out_each_slice_once_and_only_for_its_input():
    parent = nn.Module()
    parent.a, parent.b = nn.Linear(16, 8), nn.Linear(16, 4)
    accelerate(parent)
    x, other = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        for _ in range(2):
            parent.a(x), parent.b(x)
        group = vars(parent.a)["_group"]
        assert group.members == [parent.a, parent.b]
        ya = parent.a(x)
        yb = parent.b(other)   # another input: computed alone, not the slice of x
        torch.testing.assert_close(yb, F.linear(other, parent.b.weight, parent.b.bias))
        ya.mul_(0)              # written in place by the caller: the sibling's slice is untouched
        torch.testing.assert_close(parent.b(x), F.linear(x, parent.b.weight, parent.b.bias))
        parent.a(x)
        parent.b.weight.mul_(2)  # weights changed between the calls: not the stale slice
        torch.testing.assert_close(parent.b(x), F.linear(x, parent.b.weight, parent.b.bias))
        for _ in range(10):      # a sibling that keeps missing dissolves the group
            parent.a(x), parent.b(other)
        assert "_group" not in vars(parent.a)


def test_autograd_and_training_take_f_linear():
    lin = nn.Linear(64, 32)
    accelerate(nn.Sequential(lin))
    x = torch.randn(4, 64, requires_grad=True)
    lin(x).sum().backward()
    torch.testing.assert_close(x.grad, lin.weight.sum(0).expand(4, 64))
    assert lin.weight.grad is not None


def test_autocast_keeps_nn_linear_dtype():
    """Under torch.autocast("cpu") a CpuLinear computes as nn.Linear does, with packing or not."""
    from pretrained.backends import set_weight_packing

    ref = nn.Linear(64, 32)
    lin = copy.deepcopy(ref)
    accelerate(nn.Sequential(lin))
    for rows in (1, 4, 40):
        x = torch.randn(rows, 64)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            got, want = lin(x), ref(x)
            set_weight_packing(lin, True)
            packed = lin(x)
            set_weight_packing(lin, False)
        assert got.dtype == want.dtype == packed.dtype == torch.bfloat16
        assert torch.equal(got, want) and torch.equal(packed, want)


@pytest.mark.parametrize("arch", ["bert", "llama", "gpt2"])
def test_swapped_models_copy_pickle_and_move(arch):
    model = load(arch)
    batch = inputs(model)
    want = logits_of(model, batch)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (logits_of(twin, batch) - want).abs().max() <= 1e-6
    model.to(torch.bfloat16).to(torch.float32)
    assert (logits_of(model, batch) - want).abs().max() <= 3e-2   # bfloat16's rounding, once


@needs_kernel
def test_encoder_stack_notices_a_changed_layer_norm_eps():
    """A value the plan cached (LayerNorm eps) changed after the first call is used."""
    model = load("bert")
    assert isinstance(model.bert.encoder, FusedLayerStack)
    batch = inputs(model)
    logits_of(model, batch)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 0.5
    reference = copy.deepcopy(model)
    plain(reference)
    assert (logits_of(model, batch) - logits_of(reference, batch)).abs().max() <= 1e-5


@needs_kernel
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_torch_compile_keeps_the_kernels_in_the_graph(arch):
    """torch.compile over an encoder and a decoder with the fast paths on: the same outputs, and
    the captured graphs hold the pretrained::rows_linear custom op, with no graph break in the
    backend (the models' own input checks read values, which breaks graphs before any layer)."""
    torch._dynamo.reset()
    model = load(arch)
    batch = inputs(model)
    want = logits_of(model, batch)
    with torch.no_grad():
        seen = torch._dynamo.explain(model)(**batch)
    ops = {str(n.target) for g in seen.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert any("pretrained.rows_linear" in op for op in ops), ops
    where = [str(r.user_stack) for r in seen.break_reasons]
    assert not any("backends" in w for w in where), where
    got = logits_of(torch.compile(model), batch)
    assert (got - want).abs().max() <= 1e-5


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_kernel_equals_the_module(dtype):
    """One C call per norm: within a float32 ulp of the module's six ops (the sum of squares in
    another order), bfloat16 rounded where the module's two bfloat16 ops round."""
    from pretrained.backends.norms import CpuRMSNorm
    from pretrained.layers import RMSNorm

    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(200, eps=0.25)   # large enough that a dropped eps would show
    with torch.no_grad():
        norm.weight.copy_(torch.randn(200, generator=g))
    norm = norm.to(dtype)
    fast = copy.deepcopy(norm)
    accelerate(nn.Sequential(fast))
    assert type(fast) is CpuRMSNorm
    for shape in ((1, 1, 200), (3, 5, 200), (64, 200)):
        x = (torch.randn(shape, generator=g) * 3).to(dtype)
        with torch.no_grad():
            want, got = norm(x), fast(x)
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, rtol=2e-7, atol=1e-6)
        else:
            assert (got != want).float().mean() <= 0.01
            assert ((got.float() - want.float()).abs() <= 2 ** -7 * want.float().abs() + 1e-6).all()
    x = torch.randn(65, 200).to(dtype)      # more rows than the kernel takes: the module's ops
    with torch.no_grad():
        assert torch.equal(fast(x), norm(x))
    x = torch.randn(2, 200).to(dtype).requires_grad_()
    fast(x).sum().backward()                # autograd: the module's ops, gradients flow
    assert x.grad is not None and fast.weight.grad is not None


def test_watching_calls_keeps_no_model_alive():
    """The record of the last call holds its linear and input weakly: a deleted model is freed."""
    import gc
    import weakref

    model = load("llama")
    with torch.no_grad():
        model(**inputs(model))
    gone = [weakref.ref(m) for m in model.modules() if isinstance(m, CpuLinear)]
    del model
    gc.collect()
    assert all(ref() is None for ref in gone)


@needs_kernel
@pytest.mark.parametrize("name", ["t5-v1_1-tiny", "marian-tiny-lm", "bart-tiny-lm"])
def test_encoder_decoders_compose_with_copies_moves_and_torch_compile(name):
    """The fast paths on an encoder-decoder: copies, pickling, a dtype round trip and
    torch.compile give the same logits, and the compiled graphs hold the rows kernel."""
    from pretrained import AutoModelForSeq2SeqLM

    torch._dynamo.reset()
    model = AutoModelForSeq2SeqLM.from_pretrained(FIX / name)
    assert "CpuLinear" in {type(m).__name__ for m in model.modules()}
    batch = inputs(model)
    batch["decoder_input_ids"] = batch["input_ids"][:, :3]
    want = logits_of(model, batch)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (logits_of(twin, batch) - want).abs().max() <= 1e-6
    with torch.no_grad():
        seen = torch._dynamo.explain(model)(**batch)
    ops = {str(n.target) for g in seen.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert any("pretrained.rows_linear" in op for op in ops), ops
    assert (logits_of(torch.compile(model), batch) - want).abs().max() <= 1e-5
    model.to(torch.bfloat16).to(torch.float32)   # weights rounded to bfloat16 once
    assert (logits_of(model, batch) - want).abs().max() <= 1e-2 * want.abs().max() + 1e-2
