"""Whisper ('whisper'): the model's outputs and generate() rules against the reference's goldens
(scripts/golden_whisper.py, transformers 5.x, tiny random checkpoints whose vocabulary mirrors
Whisper's special tokens), and the compositions every architecture gets."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForAudioClassification, AutoModelForSpeechSeq2Seq
from pretrained.backends import plain
from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.models.whisper import (WhisperConfig, WhisperForAudioClassification,
                                      WhisperForConditionalGeneration, WhisperModel, sinusoids)

FIX = Path(__file__).resolve().parent.parent / "fixtures"
GOLD = FIX / "goldens" / "whisper"
META = json.loads((GOLD / "whisper.json").read_text())
TOL = 1e-4


@lru_cache(maxsize=None)
def golden(name: str = "whisper-tiny") -> dict:
    return load_file(str(GOLD / f"{name}.safetensors"))


def model(**kw) -> WhisperForConditionalGeneration:
    return WhisperForConditionalGeneration.from_pretrained(FIX / "models" / "whisper-tiny", **kw)


def test_logits_and_states_equal_the_references():
    g = golden()
    with torch.no_grad():
        out = model()(g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"],
                      output_hidden_states=True)
    assert (out.logits - g["output.logits"]).abs().max() <= TOL
    assert (out.encoder_last_hidden_state - g["output.encoder_last_hidden_state"]).abs().max() <= TOL
    for i, h in enumerate(out.encoder_hidden_states):
        assert (h - g[f"output.encoder_hidden_states.{i}"]).abs().max() <= TOL, i
    for i, h in enumerate(out.decoder_hidden_states):
        assert (h - g[f"output.decoder_hidden_states.{i}"]).abs().max() <= TOL, i


def test_loss_from_labels_equals_the_references():
    g = golden()
    with torch.no_grad():
        loss = model()(g["input.input_features"], labels=g["input.labels"]).loss
    assert abs(float(loss) - META["models"]["whisper-tiny"]["loss"]) <= 1e-5


def test_the_base_model_and_the_auto_classes():
    g = golden()
    base = WhisperModel.from_pretrained(FIX / "models" / "whisper-tiny")
    with torch.no_grad():
        h = base(g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"]).last_hidden_state
    assert (h - g["output.last_hidden_state"]).abs().max() <= TOL
    assert type(AutoModelForSpeechSeq2Seq.from_pretrained(FIX / "models" / "whisper-tiny")) is \
        WhisperForConditionalGeneration


def test_bfloat16_is_near_the_references_bfloat16():
    g = golden()
    m = model(torch_dtype=torch.bfloat16)
    with torch.no_grad():
        logits = m(g["input.input_features"].bfloat16(), decoder_input_ids=g["input.decoder_input_ids"]).logits
    ref = g["bf16.logits"]
    assert (logits.float() - ref).abs().max() <= 0.05 * ref.abs().max()


def test_a_cached_step_gives_the_full_runs_logits():
    g = golden()
    m = model()
    feats, dec = g["input.input_features"], g["input.decoder_input_ids"]
    with torch.no_grad():
        first = m(feats, decoder_input_ids=dec[:, :4], use_cache=True)
        step = m(encoder_outputs=(first.encoder_last_hidden_state,), decoder_input_ids=dec[:, 4:5],
                 past_key_values=first.past_key_values, use_cache=True)
    assert (step.logits[:, 0] - g["output.logits"][:, 4]).abs().max() <= TOL


@pytest.mark.parametrize("case", sorted(META["models"]["whisper-tiny"]["generate"]))
def test_generate_equals_the_references_tokens(case):
    g = golden()
    kw = META["models"]["whisper-tiny"]["generate"][case]
    out = model().generate(g["input.input_features"], **kw)
    assert out.tolist() == g[f"gen.{case}"].tolist()


def test_long_form_windows_and_segments_equal_the_references():
    g = golden()
    out = model().generate(g["input.long_features"], attention_mask=g["input.long_mask"], language="en",
                           return_timestamps=True, max_new_tokens=12, return_segments=True)
    assert out["sequences"].tolist() == g["gen.long"].tolist()
    got = [[{"start": s["start"], "end": s["end"], "tokens": s["tokens"].tolist()} for s in segs]
           for segs in out["segments"]]
    want = META["long_segments"]
    assert [[s["tokens"] for s in segs] for segs in got] == [[s["tokens"] for s in segs] for segs in want]
    for a, b in zip(sum(got, []), sum(want, [])):
        assert a["start"] == pytest.approx(b["start"]) and a["end"] == pytest.approx(b["end"])


def test_generation_errors_name_the_fix():
    g = golden()
    m = model()
    feats = g["input.input_features"]
    with pytest.raises(InvalidInputError, match="language"):
        m.generate(feats, language="klingon", max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="task must be one of"):
        m.generate(feats, language="en", task="summarize", max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="attention_mask"):
        m.generate(g["input.long_features"], language="en", max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="return_timestamps=True"):
        m.generate(g["input.long_features"][:1], language="en", return_timestamps=False, max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        m.generate(feats, language="en", max_new_tokens=39)
    with pytest.raises(UnsupportedOptionError, match="no_speech_threshold"):
        m.generate(feats, language="en", no_speech_threshold=0.6)
    english = model()
    english.generation_config.is_multilingual = False
    with pytest.raises(InvalidInputError, match="English-only"):
        english.generate(feats, language="fr", max_new_tokens=3)


def test_input_features_of_the_wrong_shape_are_named():
    m = model()
    with pytest.raises(InvalidInputError, match=r"\(batch, 8, 32\)"):
        m(torch.randn(1, 8, 30), decoder_input_ids=torch.tensor([[101]]))
    with pytest.raises(InvalidInputError, match="float tensor"):
        m(torch.ones(1, 8, 32, dtype=torch.long), decoder_input_ids=torch.tensor([[101]]))
    with pytest.raises(InvalidInputError, match="positions"):
        m(torch.randn(1, 8, 32), labels=torch.ones(1, 41, dtype=torch.long))


def test_audio_classification_equals_the_references():
    g = golden("whisper-tiny-audiocls")
    clf = AutoModelForAudioClassification.from_pretrained(FIX / "models" / "whisper-tiny-audiocls")
    assert type(clf) is WhisperForAudioClassification and clf.config.use_weighted_layer_sum
    with torch.no_grad():
        out = clf(g["input.input_features"], labels=g["input.labels"])
    assert (out.logits - g["output.logits"]).abs().max() <= TOL
    assert abs(float(out.loss) - META["models"]["whisper-tiny-audiocls"]["loss"]) <= 1e-5


def test_save_and_reload_is_exact_and_the_reference_read_our_save():
    assert META["models"]["whisper-tiny"]["roundtrip_max_abs_diff"] <= 1e-6   # recorded by the golden script
    m = model()
    g = golden()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        m.save_pretrained(tmp)
        back = WhisperForConditionalGeneration.from_pretrained(tmp)
        assert back.proj_out.weight is back.model.decoder.embed_tokens.weight
        with torch.no_grad():
            a = m(g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"]).logits
            b = back(g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"]).logits
        assert torch.equal(a, b)
        assert back.generation_config.lang_to_id == {"<|en|>": 102, "<|fr|>": 103}


def test_a_new_model_gets_the_sinusoidal_encoder_positions():
    cfg = WhisperConfig(vocab_size=50, num_mel_bins=4, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=8,
                        decoder_ffn_dim=8, max_source_positions=6, max_target_positions=8,
                        pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
    m = WhisperForConditionalGeneration.from_config(cfg)
    table = m.model.encoder.embed_positions.weight
    assert torch.allclose(table, sinusoids(6, 16))
    assert float(table[1, 0]) == pytest.approx(torch.tensor(1.0).sin().item())   # position 1, frequency 1
    assert not table.requires_grad


def test_fast_paths_give_the_plain_modules_numbers():
    g = golden()
    fast = model()
    slow = copy.deepcopy(fast)
    assert plain(slow) > 0   # the linears were swapped for the CPU kernels, and are now back
    with torch.no_grad():
        for rows in (1, 2):
            kw = dict(decoder_input_ids=g["input.decoder_input_ids"][:rows])
            a = fast(g["input.input_features"][:rows], **kw).logits
            b = slow(g["input.input_features"][:rows], **kw).logits
            assert (a - b).abs().max() <= 1e-5


def test_lora_on_every_linear_trains_saves_and_reloads(tmp_path):
    from pretrained.peft import LoraConfig, PeftModel, get_peft_model

    g = golden()
    peft = get_peft_model(model(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    peft.train()
    opt = torch.optim.SGD([p for p in peft.parameters() if p.requires_grad], lr=0.1)
    loss = peft(input_features=g["input.input_features"], labels=g["input.labels"]).loss
    loss.backward()
    opt.step()
    peft.eval()
    with torch.no_grad():
        want = peft(input_features=g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"]).logits
    peft.save_pretrained(tmp_path)
    back = PeftModel.from_pretrained(model(), tmp_path).eval()
    with torch.no_grad():
        got = back(input_features=g["input.input_features"], decoder_input_ids=g["input.decoder_input_ids"]).logits
    assert (got - want).abs().max() <= 1e-5
    assert (want - g["output.logits"]).abs().max() > 1e-4   # the step changed something


def test_beams_share_their_inputs_cross_attention_keys():
    """generate() gives the beams of one input one encoder output: cross-attention keys/values
    are projected and stored once per input (2 rows here), not per beam (6), with the same tokens."""
    from pretrained.cache import EncoderDecoderCache

    g = golden()
    m = model()
    seen = []
    original = EncoderDecoderCache.set_cross

    def spy(self, layer_idx, k, v):
        seen.append((self.sequences_per_input, tuple(k.shape)))
        return original(self, layer_idx, k, v)

    EncoderDecoderCache.set_cross = spy
    try:
        out = m.generate(g["input.input_features"], **META["models"]["whisper-tiny"]["generate"]["beam3"])
    finally:
        EncoderDecoderCache.set_cross = original
    assert out.tolist() == g["gen.beam3"].tolist()
    # the first window holds both inputs; a second window (one input went on past a timestamp
    # pair) holds one: 1 row of keys for its 3 beams
    assert seen[0] == (3, (2, 4, 16, 8)) and all(rows == 3 and shape[0] in (1, 2) for rows, shape in seen)


def test_copies_pickling_a_dtype_round_trip_and_torch_compile_keep_the_logits():
    import io
    import pickle

    g = golden()
    m = model()
    kw = dict(decoder_input_ids=g["input.decoder_input_ids"])
    with torch.no_grad():
        want = m(g["input.input_features"], **kw).logits
        copied = copy.deepcopy(m)
        buffer = io.BytesIO()
        torch.save(m, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)   # the whole module
        buffer.seek(0)
        unpickled = torch.load(buffer, weights_only=False)
        there_and_back = copy.deepcopy(m).to(torch.bfloat16).to(torch.float32)
        for other in (copied, unpickled):
            assert torch.equal(other(g["input.input_features"], **kw).logits, want)
        # bfloat16 and back rounds the weights: within bfloat16's rounding, not equal
        back = there_and_back(g["input.input_features"], **kw).logits
        assert 0 < (back - want).abs().max() <= 0.05 * want.abs().max()
        torch._dynamo.reset()
        compiled = torch.compile(m)
        assert (compiled(g["input.input_features"], **kw).logits - want).abs().max() <= 1e-5
