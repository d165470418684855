"""T5's decode step in one C call (``backends.t5_decoder.FusedT5Blocks`` over
``seq2seq_decoder.c``'s ``t5_decoder_step_f32``) against the same blocks run as modules (the plain
``T5Blocks`` class on the same model): T5 (ReLU) and T5 v1.1 (gated tanh-GELU) fixtures, logits of
each step and the self-attention cache it writes, decoder rows and an encoder output with padding,
beams sharing their input's encoder keys/values, beam-search tokens, each instruction-set variant;
bfloat16 models bit for bit; the encoder's blocks run the modules. Expected values are the
modules'."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForSeq2SeqLM
from pretrained.backends import build
from pretrained.backends import t5_decoder as td
from pretrained.cache import EncoderDecoderCache
from pretrained.layers.seq2seq_stack import T5Blocks

pytestmark = pytest.mark.skipif(not build.available(),
                                reason="no C kernels on this machine: " + build.describe())

FIX = Path(__file__).parent / "fixtures" / "models"
FAMILY = ["t5-tiny", "t5-v1_1-tiny"]


@pytest.fixture
def calls(monkeypatch):
    """One entry per decode step that reached the C call (probes excluded): whether it ran."""
    seen = []
    real = td._step

    def spy(plan, specs, n, *args):
        y = real(plan, specs, n, *args)
        if specs is plan.specs:
            seen.append(y is not None)
        return y

    monkeypatch.setattr(td, "_step", spy)
    return seen


def load(name: str, dtype=None):
    return AutoModelForSeq2SeqLM.from_pretrained(FIX / name, **({"dtype": dtype} if dtype else {})).eval()


def decode(model, fused: bool, per: int = 1, steps: int = 4, block: int = 64):
    """Two inputs (the second padded), ``per`` decoder rows each (the last one's first token
    padded), a three-token prefill, then ``steps`` greedy steps; (logits per step, cache)."""
    model.decoder.block.__class__ = td.FusedT5Blocks if fused else T5Blocks
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :3] = 0
    dec = torch.randint(3, model.config.vocab_size, (2 * per, 3), generator=g)
    dmask = torch.ones(2 * per, 3, dtype=torch.long)
    dmask[-1, 0] = 0
    cache = EncoderDecoderCache(sequences_per_input=per)
    cache.self_attention_cache.block = block
    logits = []
    with torch.no_grad():
        enc = model.get_encoder()(ids, attention_mask=mask).last_hidden_state
        out = model(encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=dec,
                    decoder_attention_mask=dmask, past_key_values=cache, use_cache=True)
        for _ in range(steps):
            nxt = out.logits[:, -1:].argmax(-1)
            dmask = torch.cat((dmask, torch.ones_like(nxt)), 1)
            out = model(encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=nxt,
                        decoder_attention_mask=dmask, past_key_values=cache, use_cache=True)
            logits.append(out.logits)
    model.decoder.block.__class__ = td.FusedT5Blocks
    return logits, cache


def close(got, want, tol=1e-5) -> bool:
    return bool((got.float() - want.float()).abs().max() <= tol * (1.0 + want.float().abs().max()))


def same_steps(model, per: int = 1, steps: int = 4, block: int = 64) -> None:
    got, cache = decode(model, True, per, steps, block)
    want, ref = decode(model, False, per, steps, block)
    for a, b in zip(got, want):
        assert close(a, b)
    own, ref_own = cache.self_attention_cache, ref.self_attention_cache
    assert own.get_seq_length() == ref_own.get_seq_length() == 3 + steps
    for i in range(len(own)):
        for a, b in zip(own.layer(i), ref_own.layer(i)):
            assert close(a, b)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("per", [1, 3])
def test_fused_steps_equal_the_modules_with_padding(name, per, calls):
    model = load(name)
    assert type(model.decoder.block) is td.FusedT5Blocks and type(model.encoder.block) is td.FusedT5Blocks
    same_steps(model, per)
    assert calls == [True] * 4   # (the encoder's blocks and the prefill ran the modules)


def test_eight_rows_per_input_and_a_grown_cache(calls):
    same_steps(load("t5-v1_1-tiny"), per=8, steps=12, block=4)
    assert calls == [True] * 12


@pytest.mark.parametrize("name", FAMILY)
def test_beam_search_tokens_equal_the_modules(name, calls):
    model = load(name)
    g = torch.Generator().manual_seed(3)
    kw = {"input_ids": torch.randint(3, model.config.vocab_size, (2, 6), generator=g),
          "attention_mask": torch.tensor([[1] * 6, [0, 0] + [1] * 4]),
          "max_new_tokens": 8, "num_beams": 3, "do_sample": False}
    fused = model.generate(**kw)
    assert calls and all(calls)
    model.decoder.block.__class__ = T5Blocks
    assert torch.equal(fused, model.generate(**kw))


def test_steps_aside(calls):
    model = load("t5-tiny")
    decode(model, True, steps=2)
    assert calls == [True] * 2
    handle = model.decoder.block[1].layer[2].DenseReluDense.wo.register_forward_hook(lambda *a: None)
    decode(model, True, steps=2)
    handle.remove()
    model.train()
    decode(model, True, steps=2)
    model.eval()
    assert calls == [True] * 2


def same_bf16_steps(model, per: int = 1) -> None:
    """bfloat16 steps: the modules' numbers bit for bit (logits and cache), each part rounded
    where the modules' bfloat16 ops round (these fixtures' keys are under 16: torch's softmax
    takes std::exp there, as the kernel)."""
    got, cache = decode(model, True, per)
    want, ref = decode(model, False, per)
    own, ref_own = cache.self_attention_cache, ref.self_attention_cache
    pairs = list(zip(got, want)) + [ab for i in range(len(own)) for ab in zip(own.layer(i), ref_own.layer(i))]
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("name", FAMILY)
def test_bfloat16_steps_equal_the_modules(name, calls):
    same_bf16_steps(load(name, torch.bfloat16), per=3)
    assert calls == ([True] * 4 if build._bf16 else [])   # (no bfloat16 kernels: the modules)


@pytest.mark.parametrize("variant", ["avx2", "avx512", "avx512bf16", "amx"])
def test_every_variant(variant):
    if variant not in build.runnable():
        pytest.skip(f"this CPU cannot run {variant}")
    code = ("import sys; sys.path.insert(0, %r); import test_t5_decoder_step as t; "
            "from pretrained.backends import build; assert build.describe().startswith(%r + ' '), build.describe(); "
            "[t.same_steps(t.load(n), per=2) for n in t.FAMILY]; "
            "[t.same_bf16_steps(t.load(n, t.torch.bfloat16), per=2) for n in t.FAMILY]; print('ok')") % (str(Path(__file__).parent), variant)
    env = {**os.environ, "PRETRAINED_KERNELS": variant}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
