"""The feature extractors against the reference's outputs (scripts/golden_audio_features.py), their
config files in both directions, the Auto classes, and the errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from pretrained.processing import (ASTFeatureExtractor, AudioProcessor, AutoFeatureExtractor, AutoProcessor,
                                   BatchFeature, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor, WhisperProcessor)
from pretrained.errors import (ConfigError, InvalidInputError, ModelNotFoundError, TokenizerNotFoundError,
                               UnknownModelTypeError, UnsupportedOptionError)

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "audio"
REPORT = json.loads((GOLD / "features.json").read_text())
TENSORS = load_file(str(GOLD / "features.safetensors"))
CLASSES = {c.__name__: c for c in (WhisperFeatureExtractor, Wav2Vec2FeatureExtractor, ASTFeatureExtractor)}
TOLERANCE = 1e-5


def golden_input(name: str) -> np.ndarray:
    if f"input.{name}" in TENSORS:
        return TENSORS[f"input.{name}"]
    spec = REPORT["inputs"][name]
    piece = TENSORS[f"input.{spec['tile']}"]
    return np.tile(piece, math.ceil(spec["length"] / piece.shape[0]))[: spec["length"]]


def compare(key: str, ours, desc: dict) -> float:
    """Max abs difference of one output against its packed golden (see the golden script)."""
    if "list" in desc:
        assert isinstance(ours, list) and len(ours) == len(desc["list"]), key
        return max(compare(f"{key}.{i}", o, d) for i, (o, d) in enumerate(zip(ours, desc["list"])))
    assert isinstance(ours, torch.Tensor if desc["container"] == "torch" else np.ndarray), (key, type(ours))
    array = ours.numpy() if isinstance(ours, torch.Tensor) else ours
    assert list(array.shape) == desc["shape"] and str(array.dtype) == desc["dtype"], (key, array.shape, array.dtype)
    if desc["mode"] == "runs":
        expected = np.zeros(array.size // array.shape[-1] * array.shape[-1], dtype=array.dtype).reshape(
            -1, array.shape[-1])
        for row, (start, end) in enumerate(TENSORS[f"{key}.runs"]):
            expected[row, start:end] = 1
        assert np.array_equal(array.reshape(expected.shape), expected), key
        return 0.0
    if desc["mode"] == "full":
        return float(np.abs(array.astype(np.float64) - TENSORS[key]).max())
    moved = np.moveaxis(array, desc["frames_axis"], -1).astype(np.float64)
    head_len = desc["head_len"]
    diff = float(np.abs(moved[..., head_len:] - TENSORS[f"{key}.tail"][..., None]).max(initial=0.0))
    if desc["mode"] == "head":
        return max(diff, float(np.abs(moved[..., :head_len] - TENSORS[f"{key}.head"]).max()))
    sampled = moved[..., TENSORS[f"{key}.frames"]]
    diff = max(diff, float(np.abs(sampled - TENSORS[f"{key}.sampled"]).max()))
    return max(diff, float(np.abs(moved[..., :head_len].mean(axis=-1) - TENSORS[f"{key}.mean"]).max()))


@pytest.mark.parametrize("case", sorted(REPORT["cases"]))
def test_equal_to_the_reference(case):
    spec = REPORT["cases"][case]
    extractor = CLASSES[spec["class"]](**spec["config"])
    names = spec["inputs"]
    raw = [golden_input(n) for n in names] if isinstance(names, list) else golden_input(names)
    out = extractor(raw, sampling_rate=16000, **spec["kwargs"])
    assert isinstance(out, BatchFeature)
    assert sorted(out) == sorted(spec["outputs"])
    for key, desc in spec["outputs"].items():
        diff = compare(f"out.{case}.{key}", out[key], desc)
        assert diff <= TOLERANCE, f"{case} {key}: max abs diff {diff:.3g}"


def test_golden_inputs_cover_what_they_claim():
    assert golden_input("long").shape[0] > 30 * 16000 and golden_input("tiny").shape[0] < 400
    assert golden_input("a").shape[0] % 160 != 0 and REPORT["kaldi_path"] is False


def test_torch_and_list_inputs_equal_numpy():
    fe = WhisperFeatureExtractor()
    wave = golden_input("a")
    expected = fe(wave, sampling_rate=16000).input_features
    assert np.array_equal(fe(torch.from_numpy(wave), sampling_rate=16000).input_features, expected)
    assert np.array_equal(fe(wave.tolist(), sampling_rate=16000).input_features, expected)
    assert np.array_equal(fe(wave.astype(np.float64), sampling_rate=16000).input_features, expected)
    both = fe(np.stack([wave, wave]), sampling_rate=16000).input_features
    assert both.shape == (2, 80, 3000) and np.array_equal(both[1], expected[0])


def test_whisper_attributes_and_dither():
    fe = WhisperFeatureExtractor(feature_size=128, chunk_length=10)
    assert (fe.n_samples, fe.nb_max_frames, fe.mel_filters.shape) == (160000, 1000, (201, 128))
    wave = golden_input("b")
    plain = WhisperFeatureExtractor()(wave, sampling_rate=16000).input_features
    noisy = WhisperFeatureExtractor(dither=1e-3)(wave, sampling_rate=16000).input_features
    assert noisy.shape == plain.shape and not np.array_equal(noisy, plain)


def test_batch_feature_to_keeps_masks_integer():
    out = WhisperFeatureExtractor()([golden_input("a")], sampling_rate=16000, return_tensors="pt",
                                    return_attention_mask=True)
    half = out.to(torch.bfloat16)
    assert half.input_features.dtype == torch.bfloat16 and half.attention_mask.dtype == torch.int32
    assert half["input_features"] is half.input_features and out.data.keys() == out.keys()
    with pytest.raises(AttributeError, match="keys"):
        out.nope  # noqa: B018


# --- configuration files --------------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["whisper", "whisper128", "wav2vec2", "ast"])
def test_reads_and_writes_the_reference_config(folder, tmp_path):
    source = GOLD / "configs" / folder
    written_by_reference = json.loads((source / "preprocessor_config.json").read_text())
    fe = AutoFeatureExtractor.from_pretrained(source)
    assert type(fe).__name__ == written_by_reference["feature_extractor_type"]
    paths = fe.save_pretrained(tmp_path)
    assert paths == [str(tmp_path / "preprocessor_config.json")]
    assert json.loads(Path(paths[0]).read_text()) == written_by_reference
    assert REPORT["round_trip"][folder] == {"class": written_by_reference["feature_extractor_type"],
                                           "equal_dict": True}
    assert type(fe).__name__ in repr(fe) and '"sampling_rate": 16000' in repr(fe)
    assert AutoFeatureExtractor.from_pretrained(source / "preprocessor_config.json") == fe


def test_overrides_and_extra_keys(tmp_path):
    hub_like = json.loads((GOLD / "configs" / "whisper128" / "preprocessor_config.json").read_text())
    hub_like.update(processor_class="WhisperProcessor", some_future_option=[1, 2])
    source = tmp_path / "preprocessor_config.json"
    source.write_text(json.dumps(hub_like))
    fe = WhisperFeatureExtractor.from_pretrained(source, return_attention_mask=True)
    assert fe.return_attention_mask and fe.feature_size == 128
    assert fe.extra_config == {"some_future_option": [1, 2]}
    fe.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert saved["some_future_option"] == [1, 2] and "processor_class" not in saved  # as the reference


def _folder(tmp_path: Path, preprocessor: dict | None, model_type: str | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    if model_type is not None:
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


@pytest.mark.parametrize("model_type, expected", [("whisper", WhisperFeatureExtractor),
                                                  ("hubert", Wav2Vec2FeatureExtractor),
                                                  ("wav2vec2", Wav2Vec2FeatureExtractor),
                                                  ("audio-spectrogram-transformer", ASTFeatureExtractor)])
def test_auto_falls_back_to_the_model_type(tmp_path, model_type, expected):
    folder = _folder(tmp_path, {"sampling_rate": 16000}, model_type)
    assert type(AutoFeatureExtractor.from_pretrained(folder)) is expected


def test_auto_falls_back_to_the_processor_class(tmp_path):
    folder = _folder(tmp_path, {"processor_class": "Wav2Vec2Processor", "do_normalize": False})
    fe = AutoFeatureExtractor.from_pretrained(folder)
    assert type(fe) is Wav2Vec2FeatureExtractor and fe.do_normalize is False


def test_auto_errors(tmp_path):
    with pytest.raises(UnknownModelTypeError, match="WhisperFeatureExtractor.*audio-spectrogram-transformer"):
        AutoFeatureExtractor.from_pretrained(_folder(tmp_path / "a", {"feature_extractor_type": "SpeechT5FeatureExtractor"}))
    with pytest.raises(UnknownModelTypeError, match="model_type is 'bert'"):
        AutoFeatureExtractor.from_pretrained(_folder(tmp_path / "b", {"sampling_rate": 16000}, "bert"))
    with pytest.raises(ModelNotFoundError, match="preprocessor_config.json"):
        AutoFeatureExtractor.from_pretrained(_folder(tmp_path / "c", None, "whisper"))
    broken = _folder(tmp_path / "d", None)
    (broken / "preprocessor_config.json").write_text('{"feature_size": 80,\n "oops"}')
    with pytest.raises(ConfigError, match="line 2"):
        AutoFeatureExtractor.from_pretrained(broken)
    with pytest.raises(ConfigError, match="feature_size"):
        AutoFeatureExtractor.from_pretrained(_folder(tmp_path / "e", {"feature_extractor_type": "WhisperFeatureExtractor",
                                                                      "feature_size": -3}))
    with pytest.raises(TypeError, match="from_pretrained"):
        AutoFeatureExtractor()


# --- processors -----------------------------------------------------------------------------------
def _with_tokenizer(tmp_path: Path, config_folder: str, tokenizer: str) -> Path:
    folder = tmp_path / config_folder
    shutil.copytree(GOLD / "configs" / config_folder, folder)
    for f in (FIX / "tokenizers" / tokenizer).iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def test_whisper_processor(tmp_path):
    processor = AutoProcessor.from_pretrained(_with_tokenizer(tmp_path, "whisper", "gpt2_bpe"))
    assert isinstance(processor, WhisperProcessor) and isinstance(processor.feature_extractor, WhisperFeatureExtractor)
    wave = golden_input("a")
    batch = processor(audio=wave, sampling_rate=16000, text="hello world", return_tensors="pt")
    assert batch.input_features.shape == (1, 80, 3000)
    ids = processor.tokenizer("hello world", return_tensors="pt")["input_ids"]
    assert torch.equal(batch["labels"], ids)
    assert processor.batch_decode(ids) == processor.tokenizer.batch_decode(ids)
    assert processor.decode(ids[0]) == processor.tokenizer.decode(ids[0])
    assert processor(text="hello world")["input_ids"] == processor.tokenizer("hello world")["input_ids"]
    only_audio = processor(wave, sampling_rate=16000, padding="longest")
    assert only_audio.input_features.shape == (1, 80, 30)
    with pytest.raises(InvalidInputError, match="audio"):
        processor()
    saved = processor.save_pretrained(tmp_path / "saved")
    assert any(p.endswith("preprocessor_config.json") for p in saved)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "saved"), WhisperProcessor)


def test_processor_for_other_models(tmp_path):
    ast_only = AutoProcessor.from_pretrained(GOLD / "configs" / "ast")
    assert type(ast_only) is ASTFeatureExtractor
    # any tokenizer pairs with the extractor (a CTC character vocabulary is the tokenizer's concern)
    ctc = AutoProcessor.from_pretrained(_with_tokenizer(tmp_path, "wav2vec2", "gpt2_bpe"))
    assert type(ctc) is AudioProcessor and isinstance(ctc.feature_extractor, Wav2Vec2FeatureExtractor)
    out = ctc(audio=[golden_input("w1"), golden_input("w2")], sampling_rate=16000, padding=True, return_tensors="pt")
    assert out.input_values.shape == (2, 2003) and out.attention_mask.sum().item() == 1200 + 2003
    with pytest.raises(TokenizerNotFoundError):
        AutoProcessor.from_pretrained(GOLD / "configs" / "whisper")


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [WhisperFeatureExtractor, Wav2Vec2FeatureExtractor, ASTFeatureExtractor])
def test_call_errors(cls):
    fe = cls()
    wave = golden_input("a")
    with pytest.raises(InvalidInputError, match="sampling rate of 16000.*not 8000") as info:
        fe(wave, sampling_rate=8000)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="mono"):
        fe(np.zeros((2, 2, 100), np.float32), sampling_rate=16000)
    with pytest.raises(InvalidInputError, match="empty list"):
        fe([], sampling_rate=16000)
    with pytest.raises(InvalidInputError, match="zero samples"):
        fe([wave, np.zeros(0, np.float32)], sampling_rate=16000)
    with pytest.raises(InvalidInputError, match="complex"):
        fe(wave.astype(np.complex64), sampling_rate=16000)
    with pytest.raises(InvalidInputError, match="load_audio"):
        fe("speech.wav", sampling_rate=16000)
    with pytest.raises(UnsupportedOptionError, match="return_tensors"):
        fe(wave, sampling_rate=16000, return_tensors="tf")


def test_padding_errors():
    w2v = Wav2Vec2FeatureExtractor()
    a, b = golden_input("w1"), golden_input("w2")
    with pytest.raises(InvalidInputError, match="max_length"):
        w2v([a, b], sampling_rate=16000, padding="max_length")
    with pytest.raises(InvalidInputError, match="max_length"):
        w2v([a, b], sampling_rate=16000, truncation=True)
    with pytest.raises(InvalidInputError, match="padding="):
        w2v([a, b], sampling_rate=16000, padding="sideways")
    with pytest.raises(InvalidInputError, match="different lengths"):
        w2v([a, b], sampling_rate=16000, return_tensors="pt")
    unpadded = w2v([a, b], sampling_rate=16000)
    assert [v.shape for v in unpadded.input_values] == [(1200,), (2003,)]
    with pytest.raises(InvalidInputError, match="different lengths"):
        WhisperFeatureExtractor()([a, b], sampling_rate=16000, padding=False)
    with pytest.raises(InvalidInputError, match="too few"):
        WhisperFeatureExtractor()(np.zeros(100, np.float32), sampling_rate=16000, padding="longest")


def test_missing_sampling_rate_warns(caplog):
    with caplog.at_level("WARNING", logger="pretrained"):
        Wav2Vec2FeatureExtractor()(golden_input("w1"))
    assert "sampling_rate" in caplog.text


def test_wav2vec2_normalisation_of_long_audio_on_threads_is_the_formula():
    """From 65536 samples the normalisation runs on torch's threads; it must still be
    (x - mean) / sqrt(var + 1e-7), here computed in float64 by numpy for the comparison."""
    import torch

    from pretrained.processing.wav2vec2_features import _THREADED_FROM

    rng = np.random.default_rng(3)
    long = (0.2 * rng.standard_normal(_THREADED_FROM * 3) + 0.01).astype(np.float32)
    x = long.astype(np.float64)
    want = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):   # numpy's single pass, then the threaded one
            torch.set_num_threads(n)
            got = Wav2Vec2FeatureExtractor()(long, sampling_rate=16000, return_tensors="np")["input_values"][0]
            assert np.abs(got - want).max() <= 1e-5
    finally:
        torch.set_num_threads(threads)
