"""KV caches: the DynamicCache / StaticCache objects, and decoding with them equals a full
forward for every decoder architecture (GPT-2, llama family, GPT-NeoX)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pretrained
from pretrained.errors import InvalidInputError
from pretrained.cache import DynamicCache, StaticCache

FIX = Path(__file__).parent / "fixtures" / "models"
# every causal-LM fixture; llama-dynamic is left out on purpose: "dynamic" RoPE rescales the
# frequencies with the longest position seen, so in the reference too a cached key keeps the
# frequencies of the step that computed it and cached decode differs from a full forward.
ARCHS = ["gpt2-tiny", "gpt2-small", "llama-gqa", "llama-mha-tied", "llama-bias-headdim",
         "llama-linear", "llama-llama3", "llama-yarn", "mistral-window", "qwen2-tied",
         "qwen2-window", "qwen3", "gpt_neox-parallel", "gpt_neox-sequential-legacy"]


def kv(b=2, h=3, t=4, d=8, fill=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, h, t, d, generator=g) if fill is None else torch.full((b, h, t, d), float(fill))
    return x, x + 100


# --- the objects ------------------------------------------------------------------------------
def test_dynamic_cache_returns_everything_stored_and_writes_in_place():
    cache = DynamicCache()
    k1, v1 = kv(t=5, seed=1)
    k, v = cache.update(0, k1, v1)
    assert torch.equal(k, k1) and torch.equal(v, v1)
    cache.update(1, *kv(t=5, seed=2))
    ptr = cache.update(0, *kv(t=1, seed=3))[0].data_ptr()
    for i in range(10):  # within capacity: the same storage, one slot written per step
        k, v = cache.update(0, *kv(t=1, seed=4 + i))
        assert k.data_ptr() == ptr
    assert cache.get_seq_length(0) == 16 and cache.get_seq_length(1) == 5 and len(cache) == 2
    assert torch.equal(k[:, :, :5], k1) and torch.equal(k[:, :, -1:], kv(t=1, seed=13)[0])


def test_dynamic_cache_grows_and_keeps_its_contents():
    cache = DynamicCache()
    steps = [kv(t=1, seed=i) for i in range(150)]  # crosses the 64- and 128-token capacities
    for k1, v1 in steps:
        k, v = cache.update(0, k1, v1)
    assert k.shape == (2, 3, 150, 8)
    assert torch.equal(k, torch.cat([s[0] for s in steps], 2))
    assert torch.equal(v, torch.cat([s[1] for s in steps], 2))
    assert cache.get_max_length() is None and cache.kv_length(2) == 152


def test_dynamic_cache_reorder_crop_reset():
    cache = DynamicCache()
    k1, v1 = kv(b=3, t=4)
    cache.update(0, k1, v1)
    cache.reorder(torch.tensor([2, 2, 0, 1]))  # beams may change the batch size
    k, v = cache.layer(0)
    assert torch.equal(k, k1[[2, 2, 0, 1]]) and torch.equal(v, v1[[2, 2, 0, 1]])
    cache.crop(3)
    assert cache.get_seq_length() == 3
    cache.crop(-1)
    assert cache.get_seq_length() == 2
    k, _ = cache.update(0, *kv(b=4, t=1, fill=7))
    assert k.shape[2] == 3 and torch.equal(k[:, :, :2], k1[[2, 2, 0, 1]][:, :, :2])
    cache.reset()
    assert cache.get_seq_length() == 0


def test_dynamic_cache_reorder_in_place_moves_only_changed_rows():
    """Beam search's reorder (same batch size): rows that stay keep their storage, the others
    take their source rows as they were before the step (swaps, one source read twice), and the
    capacity past the stored tokens is left alone."""
    cache = DynamicCache()
    k1, v1 = kv(b=5, t=4)
    cache.update(0, k1, v1)
    cache.update(1, k1 + 1, v1 + 1)
    storage = cache._keys[0]
    storage[:, :, 4:] = 7.0   # (empty storage may hold NaN, which equals nothing)
    tail = storage[:, :, 4:].clone()
    for idx in ([1, 0, 2, 2, 4], [0, 1, 2, 3, 4]):   # a swap, a repeat, rows that stay; identity
        want_k, want_v = cache.layer(1)[0][idx].clone(), cache.layer(1)[1][idx].clone()
        cache.reorder(torch.tensor(idx))
        k, v = cache.layer(1)
        assert torch.equal(k, want_k) and torch.equal(v, want_v)
    assert cache._keys[0] is storage and torch.equal(storage[:, :, 4:], tail)
    assert torch.equal(cache.layer(0)[0], k1[[1, 0, 2, 2, 4]])


def test_static_cache_has_fixed_shapes_and_zero_unwritten_slots():
    cache = StaticCache(max_length=10)
    k1, v1 = kv(t=4)
    k, v = cache.update(0, k1, v1)
    assert k.shape == v.shape == (2, 3, 10, 8)
    assert torch.equal(k[:, :, :4], k1) and torch.equal(v[:, :, :4], v1)
    assert not k[:, :, 4:].any()
    k2, _ = kv(t=1, fill=5)
    k, _ = cache.update(0, k2, k2)
    assert torch.equal(k[:, :, 4:5], k2) and cache.get_seq_length() == 5
    assert cache.kv_length(1) == 10 and cache.get_max_length() == 10
    assert isinstance(cache.position(), torch.Tensor) and int(cache.position()) == 5


def test_static_cache_reorder_crop_reset_and_errors():
    cache = StaticCache(max_length=6)
    k1, v1 = kv(b=3, t=4)
    cache.update(0, k1, v1)
    cache.reorder(torch.tensor([1, 0, 0]))
    assert torch.equal(cache._keys[0][:, :, :4], k1[[1, 0, 0]])
    with pytest.raises(InvalidInputError, match="batch size 3"):
        cache.reorder(torch.tensor([0, 1]))
    with pytest.raises(InvalidInputError, match="StaticCache is full"):
        cache.update(0, *kv(b=3, t=3))
    with pytest.raises(InvalidInputError, match="batch size 3"):
        cache.update(0, *kv(b=2, t=1))
    cache.crop(2)
    assert cache.get_seq_length() == 2
    cache.reset()
    assert cache.get_seq_length() == 0 and not cache._keys[0].any()
    with pytest.raises(InvalidInputError, match="positive int"):
        StaticCache(max_length=0)


@pytest.mark.parametrize("cls", [DynamicCache, lambda: StaticCache(max_length=8)])
def test_cache_filled_under_inference_mode_continues_outside_it(cls):
    cache = cls()
    k1, v1 = kv(t=2)
    with torch.inference_mode():
        cache.update(0, k1, v1)
    with torch.no_grad():
        k, _ = cache.update(0, *kv(t=1, fill=3))
    with torch.inference_mode():
        k, _ = cache.update(0, *kv(t=1, fill=4))
    assert torch.equal(k[:, :, :2], k1) and (k[:, :, 2] == 3).all() and (k[:, :, 3] == 4).all()


@pytest.mark.parametrize("cls", [DynamicCache, lambda: StaticCache(max_length=8)])
def test_cache_rejects_bad_updates(cls):
    cache = cls()
    with pytest.raises(InvalidInputError, match="came before layer 0"):
        cache.update(1, *kv())
    with pytest.raises(InvalidInputError, match="batch, kv_heads, tokens, head_dim"):
        cache.update(0, torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


# --- decoding with a cache equals the full forward ------------------------------------------
def batch(seed=0, b=3, t=10, vocab=128):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, :4] = 0
    mask[2, :1] = 0
    ids[mask == 0] = 0
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return ids, mask, pos


def load(name):
    return pretrained.AutoModelForCausalLM.from_pretrained(FIX / name)


def decode_in_chunks(model, ids, mask, pos, cache, chunks):
    """Feed the sequence in pieces of the given sizes through one cache; all logits."""
    out, start = [], 0
    for n in chunks:
        end = start + n
        o = model(input_ids=ids[:, start:end], attention_mask=mask[:, :end],
                  position_ids=pos[:, start:end], past_key_values=cache, use_cache=True)
        cache = o.past_key_values
        out.append(o.logits)
        start = end
    return torch.cat(out, 1), cache


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("name", ARCHS)
def test_cached_decode_equals_full_forward(name, kind):
    ids, mask, pos = batch(seed=len(name))
    model = load(name)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        cache = DynamicCache() if kind == "dynamic" else StaticCache(max_length=16)
        # prefill 5, then a chunk of 2 (queries after a non-empty cache), then 1 at a time
        got, cache = decode_in_chunks(model, ids, mask, pos, cache, [5, 2, 1, 1, 1])
    assert cache.get_seq_length() == ids.shape[1]
    diff = (got - full).abs().max().item()
    assert diff <= 1e-4, diff


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-gqa", "gpt_neox-parallel"])
def test_cache_without_padding_and_default_positions(name):
    ids = batch(seed=3)[0][:1, :8]
    model = load(name)
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        out = model(input_ids=ids[:, :6])
        step1 = model(input_ids=ids[:, 6:7], past_key_values=out.past_key_values).logits
        step2 = model(input_ids=ids[:, 7:8], past_key_values=out.past_key_values).logits
    got = torch.cat([out.logits, step1, step2], 1)
    assert (got - full).abs().max() <= 1e-4


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("name", ["gpt2-small", "qwen2-window"])
def test_reorder_continues_the_chosen_rows(name, kind):
    """Beam search: after reorder(idx), decoding continues the rows idx of the batch."""
    ids, mask, pos = batch(seed=5)
    idx = torch.tensor([2, 0, 0])
    model = load(name)
    with torch.no_grad():
        cache = DynamicCache() if kind == "dynamic" else StaticCache(max_length=12)
        _, cache = decode_in_chunks(model, ids[:, :8], mask[:, :8], pos[:, :8], cache, [8])
        cache.reorder(idx)
        got = model(input_ids=ids[idx, 8:9], attention_mask=mask[idx, :9],
                    position_ids=pos[idx, 8:9], past_key_values=cache).logits
        want = model(input_ids=ids[idx, :9], attention_mask=mask[idx, :9],
                     position_ids=pos[idx, :9], use_cache=False).logits[:, -1:]
    assert (got - want).abs().max() <= 1e-4


@pytest.mark.slow
def test_static_cache_decode_compiles_once_and_matches_eager():
    """A compiled decode step with a StaticCache: one graph for every step (fixed shapes, the
    position is a tensor, no graph breaks) and the eager logits. The aot_eager backend traces
    and functionalises like inductor without generating code (seconds instead of a minute)."""
    import torch._dynamo

    ids, mask, pos = batch(seed=9, t=6)
    model = load("llama-gqa")
    max_len = 10
    full_mask = torch.cat([mask, torch.zeros(3, max_len - 6, dtype=mask.dtype)], 1)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()   # earlier tests' compilations count there too
    compiled = torch.compile(model, dynamic=False, backend="aot_eager")
    results = []
    with torch.no_grad():
        for fn in (model, compiled):
            cache, m = StaticCache(max_length=max_len), full_mask.clone()
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache)
            nxt, p, logits = out.logits[:, -1:].argmax(-1), pos[:, -1:], []
            for i in range(4):
                m[:, 6 + i] = 1
                p = p + 1
                o = fn(input_ids=nxt, attention_mask=m, position_ids=p, past_key_values=cache)
                nxt = o.logits[:, -1:].argmax(-1)
                logits.append(o.logits)
            results.append(torch.cat(logits, 1))
    assert (results[0] - results[1]).abs().max() <= 1e-4
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
