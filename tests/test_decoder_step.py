"""A Llama-family decode step in one C call (``backends.decoder.FusedDecoderLayers`` over
``decoder.c``): against the same layers run as modules (the plain ``DecoderLayers`` class on the
same model), on every Llama-family fixture (llama with GQA / MHA / biases / head_dim, mistral's
window, qwen2's q/k/v biases, qwen3's q/k norms), batches with left padding, the KV cache it
writes, a GGUF-packed fixture, greedy tokens, each instruction-set variant; and where it steps
aside (prefill, grad, hooks, training, hidden states, LoRA, no kernels); a static cache;
bfloat16 models against their modules. Expected values are the modules' (plain torch math), never the kernel's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM
from pretrained.backends import build
from pretrained.backends import decoder as dec
from pretrained.cache import DynamicCache, StaticCache
from pretrained.layers.decoder_stack import DecoderLayers

pytestmark = pytest.mark.skipif(not build.available(),
                                reason="no C kernels on this machine: " + build.describe())

FIX = Path(__file__).parent / "fixtures" / "models"
FAMILY = ["llama-gqa", "llama-mha-tied", "llama-bias-headdim", "llama-llama3", "mistral-window",
          "qwen2-tied", "qwen2-window", "qwen3"]


@pytest.fixture
def calls(monkeypatch):
    """One entry per decode step that reached the C call (probes excluded): whether it ran."""
    seen = []
    real = dec._step

    def spy(plan, specs, n_layers, *args):
        y = real(plan, specs, n_layers, *args)
        if specs is plan.specs:
            seen.append(y is not None)
        return y

    monkeypatch.setattr(dec, "_step", spy)
    return seen


def _padded(vocab: int, b: int = 3, t: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for i in range(1, b):
        mask[i, : min(i, t - 1)] = 0   # left padding of 1, 2, ... tokens
    return ids, mask


def _decode(model, ids, mask, steps: int, fused: bool):
    """Prefill (the modules), then ``steps`` greedy one-token steps; (logits per step, cache)."""
    model.model.layers.__class__ = dec.FusedDecoderLayers if fused else DecoderLayers
    out, logits = None, []
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        cache = out.past_key_values
        for _ in range(steps):
            nxt = out.logits[:, -1:].argmax(-1)
            mask = torch.cat((mask, torch.ones_like(nxt)), 1)
            out = model(nxt, attention_mask=mask, past_key_values=cache)
            logits.append(out.logits)
    model.model.layers.__class__ = dec.FusedDecoderLayers
    return logits, cache


def _close(got, want, tol=1e-5) -> bool:
    return bool((got - want).abs().max() <= tol * (1.0 + want.abs().max()))


@pytest.mark.parametrize("name", FAMILY)
def test_fused_steps_equal_the_modules_with_left_padding(name, calls):
    model = AutoModelForCausalLM.from_pretrained(FIX / name).eval()
    assert type(model.model.layers) is dec.FusedDecoderLayers
    ids, mask = _padded(model.config.vocab_size)
    got, cache = _decode(model, ids, mask, 5, fused=True)
    # qwen2-window: its first layer's window (4 keys) is in effect and the second's is not: the
    # layers' masks differ, the modules run; mistral's one window for all layers is the mask
    assert calls == ([] if name == "qwen2-window" else [True] * 5)
    want, ref_cache = _decode(model, ids, mask, 5, fused=False)
    for a, b in zip(got, want):
        assert _close(a, b)
    assert cache.get_seq_length() == ref_cache.get_seq_length() == ids.shape[1] + 5
    for i in range(len(cache)):
        for a, b in zip(cache.layer(i), ref_cache.layer(i)):
            assert _close(a, b)


@pytest.mark.parametrize("name", ["llama-gqa", "qwen3"])
def test_greedy_tokens_equal_the_modules(name):
    model = AutoModelForCausalLM.from_pretrained(FIX / name).eval()
    ids, mask = _padded(model.config.vocab_size, b=2, seed=1)
    kw = {"max_new_tokens": 10, "do_sample": False, "attention_mask": mask}
    fused = model.generate(ids, **kw)
    model.model.layers.__class__ = DecoderLayers
    assert torch.equal(fused, model.generate(ids, **kw))


def test_sixteen_sequences_and_a_grown_cache(calls):
    """16 rows, and more steps than the cache's first capacity (64): its storage grows, the
    layers follow the new tensors."""
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa").eval()
    ids, mask = _padded(model.config.vocab_size, b=16, t=60)
    got, _ = _decode(model, ids, mask, 8, fused=True)
    want, _ = _decode(model, ids, mask, 8, fused=False)
    assert calls == [True] * 8
    for a, b in zip(got, want):
        assert _close(a, b)


def test_beam_reorder_and_crop_keep_the_cache_valid(calls):
    model = AutoModelForCausalLM.from_pretrained(FIX / "qwen2-tied").eval()
    ids, mask = _padded(model.config.vocab_size, b=2)
    for fused in (True, False):
        model.model.layers.__class__ = dec.FusedDecoderLayers if fused else DecoderLayers
        with torch.no_grad():
            cache = model(ids, attention_mask=mask).past_key_values
            step = torch.tensor([[5], [7]])
            m = torch.cat((mask, torch.ones(2, 1, dtype=torch.long)), 1)
            model(step, attention_mask=m, past_key_values=cache)
            cache.reorder(torch.tensor([1, 1]))
            cache.crop(-1)
            m2 = torch.cat((mask[[1, 1]], torch.ones(2, 1, dtype=torch.long)), 1)
            out = model(torch.tensor([[9], [3]]), attention_mask=m2, past_key_values=cache).logits
        if fused:
            first = out
    assert calls == [True, True]
    assert _close(first, out)


def test_gguf_packed_model_equals_its_modules():
    tiny = FIX / "gguf-tiny"
    model = AutoModelForCausalLM.from_pretrained(tiny, gguf_file="llama-bpe.gguf").eval()
    assert type(model.model.layers) is dec.FusedDecoderLayers
    ids, mask = _padded(model.config.vocab_size, b=2)
    seen = []
    real = dec._step
    dec._step = lambda plan, specs, *a: seen.append(specs is plan.specs) or real(plan, specs, *a)
    try:
        got, cache = _decode(model, ids, mask, 4, fused=True)
    finally:
        dec._step = real
    assert seen.count(True) == 4
    want, ref_cache = _decode(model, ids, mask, 4, fused=False)
    for a, b in zip(got, want):
        assert _close(a, b, 1e-6)   # the same block kernels: float rounding only
    for i in range(len(cache)):
        for a, b in zip(cache.layer(i), ref_cache.layer(i)):
            assert _close(a, b, 1e-6)
    kw = {"max_new_tokens": 8, "do_sample": False}
    fused = model.generate(ids[:1], **kw)
    model.model.layers.__class__ = DecoderLayers
    assert torch.equal(fused, model.generate(ids[:1], **kw))


def test_gguf_int8_activations_equal_their_modules(calls):
    """llama.cpp's quantized activations (set_gguf_activations "int8") run in the step too: the
    same kernel calls as the modules'; their inputs differ by float rounding (the norms' and the
    attention's sums in another order), which can move an activation across an int8 rounding
    step (~1e-4 here on AVX2), so equal within the int8 way's own error, not bit for bit."""
    from pretrained.backends.gguf_linear import set_gguf_activations

    model = AutoModelForCausalLM.from_pretrained(FIX / "gguf-tiny", gguf_file="llama-bpe.gguf").eval()
    assert set_gguf_activations(model, "int8") > 0
    ids, mask = _padded(model.config.vocab_size, b=2)
    got, _ = _decode(model, ids, mask, 3, fused=True)
    want, _ = _decode(model, ids, mask, 3, fused=False)
    assert calls == [True] * 3
    for a, b in zip(got, want):
        assert _close(a, b, 1e-2)


@pytest.fixture(params=list(build.VARIANTS))
def variant(request, monkeypatch):
    name = request.param
    if name not in build.runnable():
        pytest.skip(f"this CPU cannot run {name}")
    try:
        lib = build.load_variant(name)
    except build.KernelsUnavailable as e:
        pytest.skip(str(e))
    monkeypatch.setattr(build, "_lib", lib)
    monkeypatch.setattr(build, "_bf16", lib.bf16)
    monkeypatch.setattr(build, "_tiles", lib.tiles)
    return name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["qwen3", "llama-bias-headdim"])
def test_every_variant_equals_the_modules(name, dtype, variant, calls):
    """AVX2 (8 lanes, masked tails on head_dim 8 / 16) as AVX-512: the same numbers; bfloat16
    where the variant has bfloat16 kernels, else the modules."""
    model = AutoModelForCausalLM.from_pretrained(FIX / name).eval().to(dtype)
    ids, mask = _padded(model.config.vocab_size)
    got, _ = _decode(model, ids, mask, 3, fused=True)
    want, _ = _decode(model, ids, mask, 3, fused=False)
    assert calls == ([True] * 3 if dtype == torch.float32 or build._bf16 else [])
    for a, b in zip(got, want):
        assert _close(a.float(), b.float(), 1e-5 if dtype == torch.float32 else 1e-2)


def test_every_variant_runs_the_gguf_blocks(variant):
    model = AutoModelForCausalLM.from_pretrained(FIX / "gguf-tiny", gguf_file="llama-bpe.gguf").eval()
    ids, mask = _padded(model.config.vocab_size, b=2)
    got, _ = _decode(model, ids, mask, 3, fused=True)
    want, _ = _decode(model, ids, mask, 3, fused=False)
    for a, b in zip(got, want):
        assert _close(a, b, 1e-6)


# --- where it steps aside ----------------------------------------------------------------------
def _one_step(model, **kw):
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        cache = model(ids).past_key_values
    return model(torch.tensor([[6]]), past_key_values=cache, **kw)


def test_prefill_and_hidden_states_run_the_modules(calls):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa").eval()
    with torch.no_grad():
        model(torch.tensor([[3, 4, 5]]))
        assert calls == []
        _one_step(model, output_hidden_states=True)
        assert calls == []
        _one_step(model)
    assert calls == [True]


def test_grad_hooks_and_training_run_the_modules(calls):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa").eval()
    _one_step(model)   # grad enabled, parameters requiring grad
    assert calls == []
    with torch.no_grad():
        handle = model.model.layers[1].mlp.down_proj.register_forward_hook(lambda *a: None)
        _one_step(model)
        handle.remove()
        assert calls == []
        model.model.layers[0].train()
        _one_step(model)
        model.model.layers[0].eval()
        assert calls == []
        _one_step(model)
    assert calls == [True]


def test_static_cache_steps_equal_the_modules(calls):
    """A StaticCache (its mask covers every slot): written in place, read up to the new slot."""
    model = AutoModelForCausalLM.from_pretrained(FIX / "qwen3").eval()
    ids, mask = _padded(model.config.vocab_size, b=2)
    outs, caches = [], []
    for cls in (dec.FusedDecoderLayers, DecoderLayers):
        model.model.layers.__class__ = cls
        cache, m, logits = StaticCache(max_length=12), mask, []
        with torch.no_grad():
            out = model(ids, attention_mask=m, past_key_values=cache)
            for _ in range(4):
                nxt = out.logits[:, -1:].argmax(-1)
                m = torch.cat((m, torch.ones_like(nxt)), 1)
                out = model(nxt, attention_mask=m, past_key_values=cache)
                logits.append(out.logits)
        outs.append(logits)
        caches.append(cache)
    assert calls == [True] * 4
    for a, b in zip(*outs):
        assert _close(a, b)
    assert caches[0].get_seq_length() == caches[1].get_seq_length() == ids.shape[1] + 4
    for a, b in zip(caches[0]._keys + caches[0]._values, caches[1]._keys + caches[1]._values):
        assert _close(a, b)


@pytest.mark.parametrize("name", FAMILY)
def test_bfloat16_steps_equal_the_modules(name, calls):
    """bfloat16 weights, cache and activations: rounded where the modules' bfloat16 ops round
    (equal bit for bit on these fixtures); variants without bfloat16 kernels run the modules."""
    model = AutoModelForCausalLM.from_pretrained(FIX / name).eval().to(torch.bfloat16)
    ids, mask = _padded(model.config.vocab_size)
    got, cache = _decode(model, ids, mask, 4, fused=True)
    want, ref_cache = _decode(model, ids, mask, 4, fused=False)
    fused = build._bf16 and name != "qwen2-window"
    assert calls == ([True] * 4 if fused else [])
    for a, b in zip(got, want):
        assert _close(a.float(), b.float(), 1e-2)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
    for i in range(len(cache)):
        for a, b in zip(cache.layer(i), ref_cache.layer(i)):
            assert _close(a.float(), b.float(), 1e-2)


def test_lora_runs_the_modules(calls):
    from pretrained.peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa").eval()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).eval()
    with torch.no_grad():
        _one_step(peft.base_model.model if hasattr(peft, "base_model") else peft)
    assert calls == []


def test_weights_replaced_after_the_first_step_are_used(calls):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa").eval()
    with torch.no_grad():
        _one_step(model)
        proj = model.model.layers[1].self_attn.o_proj
        proj.weight = torch.nn.Parameter(proj.weight * 2, requires_grad=False)
        got = _one_step(model).logits
        model.model.layers.__class__ = DecoderLayers
        want = _one_step(model).logits
    assert calls == [True, True]
    assert _close(got, want)


def test_without_the_kernel_the_layers_run_as_modules(calls, monkeypatch):
    """No C library (no compiler, PRETRAINED_NO_KERNELS=1): the stack declines, same numbers."""
    model = AutoModelForCausalLM.from_pretrained(FIX / "qwen3").eval()
    with torch.no_grad():
        fused = _one_step(model).logits
        monkeypatch.setattr(build, "_lib", False)
        dec._PLANS.clear()
        plain = _one_step(model).logits
    assert calls == [True]
    assert _close(fused, plain)


def test_no_kernels_environment_generates_the_modules_tokens():
    """PRETRAINED_NO_KERNELS=1 in a fresh process: the swapped stack runs the modules."""
    code = ("import torch; from pretrained import AutoModelForCausalLM; "
            f"m = AutoModelForCausalLM.from_pretrained({str(FIX / 'qwen3')!r}).eval(); "
            "print(type(m.model.layers).__name__, m.generate(torch.tensor([[3, 4, 5]]), "
            "max_new_tokens=6, do_sample=False)[0].tolist())")
    env = {**os.environ, "PRETRAINED_NO_KERNELS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split(" ", 1)
    model = AutoModelForCausalLM.from_pretrained(FIX / "qwen3").eval()
    model.model.layers.__class__ = DecoderLayers
    want = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=6, do_sample=False)[0].tolist()
    assert out[0] == "FusedDecoderLayers" and out[1].strip() == str(want)


def test_cache_storage_for_and_advance():
    cache = DynamicCache()
    assert cache.storage_for(1) is None
    for i in range(2):
        cache.update(i, torch.zeros(1, 2, 64, 4), torch.zeros(1, 2, 64, 4))
    keys, values, start = cache.storage_for(1)
    assert start == 64 and keys[0].shape[2] >= 65 and values[1].shape[2] >= 65
    keys[0][:, :, 64] = 1.0
    cache.advance(1)
    assert cache.get_seq_length() == 65 and float(cache.layer(0)[0][0, 0, 64, 0]) == 1.0


def test_copies_pickles_and_plain_with_a_plan_built(calls):
    """The plan lives outside the module (no C addresses in its state): a deep copy, a pickle
    and plain() (back to DecoderLayers) compute the same."""
    import pickle

    from pretrained.backends import plain

    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-bias-headdim").eval()
    with torch.no_grad():
        want = _one_step(model).logits
        twin = pickle.loads(pickle.dumps(model))
        assert type(twin.model.layers) is dec.FusedDecoderLayers
        got = _one_step(twin).logits
        plain(model)
        assert type(model.model.layers) is DecoderLayers
        back = _one_step(model).logits
    assert calls == [True, True]
    assert torch.equal(got, want) and _close(back, want)


def test_two_threads_decoding_one_model_each_into_its_own_cache():
    """The plan's cache pointers are taken one step at a time: a step of another thread meanwhile
    runs the modules, into its own cache; each thread gets its own sequence's numbers."""
    import threading

    model = AutoModelForCausalLM.from_pretrained(FIX / "qwen2-tied").eval()
    prompts = [torch.tensor([[3, 4, 5, 6]]), torch.tensor([[9, 8, 7, 6, 5, 4]])]

    def greedy(ids, out, i):
        with torch.no_grad():
            o = model(ids)
            cache, logits = o.past_key_values, []
            for _ in range(30):
                o = model(o.logits[:, -1:].argmax(-1), past_key_values=cache)
                logits.append(o.logits)
        out[i] = torch.cat(logits, 1)

    alone = [None, None]
    for i, ids in enumerate(prompts):
        greedy(ids, alone, i)
    together = [None, None]
    threads = [threading.Thread(target=greedy, args=(ids, together, i)) for i, ids in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(together, alone):
        assert _close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_long_histories_split_attention_over_the_threads(dtype, calls):
    """16 sequences over ~80 cached tokens of head_dim 16: the attention's heads are shared out
    between the threads (past 65,536 multiply-adds a layer); the same numbers as the modules."""
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-bias-headdim").eval().to(dtype)
    ids, mask = _padded(model.config.vocab_size, b=16, t=80, seed=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got, cache = _decode(model, ids, mask, 3, fused=True)
        want, ref_cache = _decode(model, ids, mask, 3, fused=False)
    finally:
        torch.set_num_threads(threads)
    assert calls == ([True] * 3 if dtype == torch.float32 or build._bf16 else [])
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for a, b in zip(got, want):
        assert _close(a.float(), b.float(), tol)
    for i in range(len(cache)):
        for a, b in zip(cache.layer(i), ref_cache.layer(i)):
            assert _close(a.float(), b.float(), tol)
