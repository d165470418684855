"""An encoder-decoder decode step in one C call (``backends.seq2seq_decoder`` over
``seq2seq_decoder.c``): against the same layers run as modules (the plain ``Seq2SeqDecoderLayers``
class on the same model), on Whisper (pre-LN, GELU, no key bias) and the BART family (BART:
post-LN GELU; Marian: post-LN SiLU; mBART: pre-LN GELU; Pegasus: pre-LN ReLU): logits of each
step and the self-attention cache it writes, decoder rows with padding, an encoder output with
padding, beams sharing their input's encoder keys/values, beam-search tokens, each
instruction-set variant; and where it steps aside (the first step, grad, hooks, training, hidden
states, no kernels); bfloat16 models against their modules. Expected values are the modules' (plain torch math), never the
kernel's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForSeq2SeqLM
from pretrained.backends import build
from pretrained.backends import seq2seq_decoder as sd
from pretrained.cache import EncoderDecoderCache
from pretrained.layers.seq2seq_stack import Seq2SeqDecoderLayers
from pretrained.models.whisper import WhisperForConditionalGeneration

pytestmark = pytest.mark.skipif(not build.available(),
                                reason="no C kernels on this machine: " + build.describe())

FIX = Path(__file__).parent / "fixtures" / "models"
FAMILY = ["whisper-tiny", "bart-tiny-lm", "marian-tiny-lm", "mbart-tiny-lm", "pegasus-tiny-lm"]


@pytest.fixture
def calls(monkeypatch):
    """One entry per decode step that reached the C call (probes excluded): whether it ran."""
    seen = []
    real = sd._step

    def spy(plan, specs, n, *args):
        y = real(plan, specs, n, *args)
        if specs is plan.specs:
            seen.append(y is not None)
        return y

    monkeypatch.setattr(sd, "_step", spy)
    return seen


def load(name: str, dtype=None):
    cls = WhisperForConditionalGeneration if name.startswith("whisper") else AutoModelForSeq2SeqLM
    return cls.from_pretrained(FIX / name, **({"dtype": dtype} if dtype else {})).eval()


def encoded(model, inputs: int = 2, seed: int = 0):
    """The encoder output of ``inputs`` inputs (the BART family's second one padded) and its mask."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    with torch.no_grad():
        if cfg.model_type == "whisper":
            feats = torch.randn(inputs, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g)
            return model.get_encoder()(feats.to(model.dtype)).last_hidden_state, None
        ids = torch.randint(3, cfg.vocab_size, (inputs, 7), generator=g)
        mask = torch.ones(inputs, 7, dtype=torch.long)
        mask[1:, :3] = 0
        return model.get_encoder()(ids, attention_mask=mask).last_hidden_state, mask


def decode(model, fused: bool, per: int = 1, steps: int = 4, seed: int = 0, block: int = 64, **kw):
    """Prefill of three decoder tokens (one row's first padded), then ``steps`` one-token steps
    (greedy); (logits per step, cache)."""
    model.get_decoder().layers.__class__ = sd.FusedSeq2SeqDecoderLayers if fused else Seq2SeqDecoderLayers
    enc, enc_mask = encoded(model, seed=seed)
    b = enc.shape[0] * per
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(3, model.config.vocab_size, (b, 3), generator=g)
    dmask = torch.ones(b, 3, dtype=torch.long)
    dmask[-1, 0] = 0
    cache = EncoderDecoderCache(sequences_per_input=per)
    cache.self_attention_cache.block = block
    logits = []
    with torch.no_grad():
        out = model(encoder_outputs=(enc,), attention_mask=enc_mask, decoder_input_ids=ids,
                    decoder_attention_mask=dmask, past_key_values=cache, use_cache=True, **kw)
        for _ in range(steps):
            nxt = out.logits[:, -1:].argmax(-1)
            dmask = torch.cat((dmask, torch.ones_like(nxt)), 1)
            out = model(encoder_outputs=(enc,), attention_mask=enc_mask, decoder_input_ids=nxt,
                        decoder_attention_mask=dmask, past_key_values=cache, use_cache=True, **kw)
            logits.append(out.logits)
    model.get_decoder().layers.__class__ = sd.FusedSeq2SeqDecoderLayers
    return logits, cache


def close(got, want, tol=1e-5) -> bool:
    return bool((got.float() - want.float()).abs().max() <= tol * (1.0 + want.float().abs().max()))


def same_steps(model, per: int = 1, steps: int = 4, block: int = 64) -> None:
    got, cache = decode(model, True, per, steps, block=block)
    want, ref = decode(model, False, per, steps, block=block)
    for a, b in zip(got, want):
        assert close(a, b)
    own, ref_own = cache.self_attention_cache, ref.self_attention_cache
    assert own.get_seq_length() == ref_own.get_seq_length() == 3 + steps
    for i in range(len(own)):
        for a, b in zip(own.layer(i), ref_own.layer(i)):
            assert close(a, b)


@pytest.mark.parametrize("name", FAMILY)
def test_fused_steps_equal_the_modules_with_padding(name, calls):
    model = load(name)
    assert type(model.get_decoder().layers) is sd.FusedSeq2SeqDecoderLayers
    same_steps(model)
    assert calls == [True] * 4   # the prefill (three tokens, no cross keys yet) ran the modules


@pytest.mark.parametrize("name", ["whisper-tiny", "marian-tiny-lm"])
def test_beams_share_their_inputs_encoder_keys(name, calls):
    """Three rows per input over two inputs' cross keys/values (stored once per input)."""
    model = load(name)
    same_steps(model, per=3)
    assert calls == [True] * 4


@pytest.mark.parametrize("name", ["bart-tiny-lm", "pegasus-tiny-lm", "whisper-tiny"])
def test_beam_search_tokens_equal_the_modules(name, calls):
    model = load(name)
    enc_in = {}
    g = torch.Generator().manual_seed(3)
    if name.startswith("whisper"):
        cfg = model.config
        enc_in["input_features"] = torch.randn(2, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g)
    else:
        enc_in["input_ids"] = torch.randint(3, model.config.vocab_size, (2, 6), generator=g)
        enc_in["attention_mask"] = torch.tensor([[1] * 6, [0, 0] + [1] * 4])
    kw = {"max_new_tokens": 8, "num_beams": 3, "do_sample": False, **enc_in}
    fused = model.generate(**kw)
    assert calls and all(calls)
    model.get_decoder().layers.__class__ = Seq2SeqDecoderLayers
    assert torch.equal(fused, model.generate(**kw))


def test_sixteen_rows_and_a_grown_cache(calls):
    """16 rows (8 per input), and more steps than the cache's first capacity (blocks of 4 here):
    its storage grows twice, the layers follow the new tensors."""
    model = load("mbart-tiny-lm")
    same_steps(model, per=8, steps=12, block=4)
    assert calls == [True] * 12


def test_steps_aside(calls):
    model = load("bart-tiny-lm")
    decode(model, True, output_hidden_states=True)   # hidden states asked for
    assert calls == []
    with torch.enable_grad():   # grad recording: the modules (and their graph)
        model.get_decoder().layers.__class__ = sd.FusedSeq2SeqDecoderLayers
        enc, m = encoded(model)
        cache = EncoderDecoderCache()
        ids = torch.tensor([[5], [6]])
        model(encoder_outputs=(enc,), attention_mask=m, decoder_input_ids=ids, past_key_values=cache)
        out = model(encoder_outputs=(enc,), attention_mask=m, decoder_input_ids=ids, past_key_values=cache)
        assert out.logits.requires_grad
    assert calls == []
    handle = model.model.decoder.layers[1].fc1.register_forward_hook(lambda *a: None)
    got, _ = decode(model, True)
    handle.remove()
    assert calls == []
    want, _ = decode(model, False)
    for a, b in zip(got, want):
        assert close(a, b)
    model.train()   # training mode
    decode(model, True)
    assert calls == []
    model.eval()
    decode(model, True)
    assert calls == [True] * 4


def same_bf16_steps(model, per: int = 1) -> bool:
    """bfloat16 steps within bfloat16 rounding of the modules' (logits and cache); True where
    every number is the modules' own."""
    got, cache = decode(model, True, per)
    want, ref = decode(model, False, per)
    pairs = list(zip(got, want))
    own, ref_own = cache.self_attention_cache, ref.self_attention_cache
    pairs += [ab for i in range(len(own)) for ab in zip(own.layer(i), ref_own.layer(i))]
    assert all(close(a, b, 1e-2) for a, b in pairs)
    return all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("name", FAMILY)
def test_bfloat16_steps_round_where_the_modules_round(name, calls):
    """On the variants with bfloat16 kernels the step runs in bfloat16, each part rounded where
    the modules' ops round: the BART-family fixtures' numbers are the modules' bit for bit (under
    16 keys torch's softmax takes std::exp, as the kernel); Whisper's 16 encoder positions meet
    torch's vectorized approximate exp, a bfloat16 ulp or so apart. Elsewhere the modules run."""
    model = load(name, torch.bfloat16)
    exact = same_bf16_steps(model, per=2)
    if not build._bf16:
        assert calls == [] and exact
        return
    assert calls == [True] * 4
    assert exact or name.startswith("whisper")


def test_without_the_kernel_the_layers_run_as_modules(calls, monkeypatch):
    model = load("marian-tiny-lm")
    monkeypatch.setattr(build, "_lib", False)
    sd._PLANS.clear()
    got, _ = decode(model, True)
    want, _ = decode(model, False)
    assert calls == []
    for a, b in zip(got, want):
        assert close(a, b, 0)


@pytest.mark.parametrize("variant", ["avx2", "avx512", "avx512bf16", "amx"])
def test_every_variant(variant):
    """Each instruction-set variant (forced; skipped where this CPU lacks it): the family's steps
    equal the modules' in a fresh process, float32 and bfloat16 (the modules' own on the variants
    without bfloat16 kernels)."""
    if variant not in build.runnable():
        pytest.skip(f"this CPU cannot run {variant}")
    code = ("import sys; sys.path.insert(0, %r); import test_seq2seq_decoder_step as t; "
            "from pretrained.backends import build; assert build.describe().startswith(%r + ' '), build.describe(); "
            "[t.same_steps(t.load(n), per=2) for n in t.FAMILY]; "
            "[t.same_bf16_steps(t.load(n, t.torch.bfloat16), per=2) for n in t.FAMILY]; print('ok')") % (str(Path(__file__).parent), variant)
    env = {**os.environ, "PRETRAINED_KERNELS": variant}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_threads_share_out_long_cross_attention(dtype, calls):
    """16 rows (8 per input) over 160 encoder positions: the attention is shared out over the
    threads (past 65,536 multiply-adds a layer); the modules' numbers all the same."""
    model = load("whisper-tiny", dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(5)
        enc = torch.randn(2, 160, model.config.d_model, generator=g).to(dtype)
        ids = torch.randint(3, model.config.vocab_size, (16, 3), generator=g)
        runs = []
        for fused in (True, False):
            model.get_decoder().layers.__class__ = sd.FusedSeq2SeqDecoderLayers if fused else Seq2SeqDecoderLayers
            cache = EncoderDecoderCache(sequences_per_input=8)
            with torch.no_grad():
                out = model(encoder_outputs=(enc,), decoder_input_ids=ids, past_key_values=cache, use_cache=True)
                steps = []
                for _ in range(3):
                    out = model(encoder_outputs=(enc,), decoder_input_ids=out.logits[:, -1:].argmax(-1),
                                past_key_values=cache, use_cache=True)
                    steps.append(out.logits)
            runs.append(steps)
    finally:
        torch.set_num_threads(threads)
        model.get_decoder().layers.__class__ = sd.FusedSeq2SeqDecoderLayers
    assert calls == ([True] * 3 if dtype == torch.float32 or build._bf16 else [])
    for a, b in zip(*runs):
        assert close(a, b, 1e-5 if dtype == torch.float32 else 1e-2)
