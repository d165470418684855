"""Training audio models: the audio collators (padding, masks, labels, named errors), a tiny
Wav2Vec2 classifier trained with the Trainer and then served by the audio-classification
pipeline, and LoRA on the tiny Whisper fixture."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained.processing import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor
from pretrained.errors import InvalidInputError
from pretrained.training import (DataCollatorForAudioClassification, DataCollatorSpeechSeq2SeqWithPadding,
                                 DataCollatorWithAudioPadding, Trainer, TrainingArguments)

MODELS = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run much faster on one thread than on two contended ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fe(**kw):
    return Wav2Vec2FeatureExtractor(**{"return_attention_mask": True, **kw})


# --- the collator: input_values ---------------------------------------------------------------
def test_input_values_padded_to_the_longest_with_mask_and_labels():
    batch = DataCollatorForAudioClassification(fe())([
        {"input_values": [0.5, -0.5, 0.25], "label": 3},
        {"input_values": np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float64), "label": 7},
        {"input_values": torch.tensor([9.0]), "labels": 0}])
    assert batch["input_values"].dtype == torch.float32
    assert batch["input_values"].tolist() == [[0.5, -0.5, 0.25, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [3, 7, 0]


def test_padding_value_side_multiple_and_max_length():
    rows = [{"input_values": [1.0, 2.0], "label": 0}, {"input_values": [3.0, 4.0, 5.0], "label": 1}]
    left = DataCollatorWithAudioPadding(fe(padding_side="left", padding_value=-1.0), pad_to_multiple_of=4)(rows)
    assert left["input_values"].tolist() == [[-1, -1, 1, 2], [-1, 3, 4, 5]]
    assert left["attention_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    fixed = DataCollatorWithAudioPadding(fe(), padding="max_length", max_length=6)(rows)
    assert fixed["input_values"].tolist() == [[1, 2, 0, 0, 0, 0], [3, 4, 5, 0, 0, 0]]
    cut = DataCollatorWithAudioPadding(fe(), max_length=2, truncation=True)(rows)
    assert cut["input_values"].tolist() == [[1, 2], [3, 4]] and cut["attention_mask"].tolist() == [[1, 1], [1, 1]]
    with pytest.raises(InvalidInputError, match="truncation=True"):
        DataCollatorWithAudioPadding(fe(), padding="max_length", max_length=2)(rows)
    with pytest.raises(InvalidInputError, match="padding=False"):
        DataCollatorWithAudioPadding(fe(), padding=False)(rows)


def test_mask_follows_the_feature_extractor_unless_asked():
    rows = [{"input_values": [1.0, 2.0], "label": 0}, {"input_values": [3.0], "label": 1}]
    assert "attention_mask" not in DataCollatorWithAudioPadding(fe(return_attention_mask=False))(rows)
    asked = DataCollatorWithAudioPadding(fe(return_attention_mask=False), return_attention_mask=True)(rows)
    assert asked["attention_mask"].tolist() == [[1, 1], [1, 0]]
    # an example's own mask (silence marked 0) is kept, and padded with 0
    own = DataCollatorWithAudioPadding(fe(return_attention_mask=False))(
        [{"input_values": [1.0, 2.0, 3.0], "attention_mask": [0, 1, 1]}, {"input_values": [4.0]}])
    assert own["attention_mask"].tolist() == [[0, 1, 1], [1, 0, 0]] and "labels" not in own


def test_feature_extractor_output_rows_collate_like_the_feature_extractor_pads():
    extractor = fe()
    waves = [np.sin(np.arange(n) / 3.0).astype(np.float32) for n in (40, 25, 33)]
    rows = [{"input_values": extractor(w, sampling_rate=16000)["input_values"][0], "label": i}
            for i, w in enumerate(waves)]
    batch = DataCollatorForAudioClassification(extractor)(rows)
    whole = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")  # masked: per-row statistics
    assert torch.allclose(batch["input_values"], whole["input_values"], atol=1e-6)
    assert torch.equal(batch["attention_mask"], whole["attention_mask"].long())


# --- the collator: input_features and raw audio ------------------------------------------------
def test_whisper_layout_features_padded_on_the_frames_axis():
    w = WhisperFeatureExtractor(feature_size=3)
    a, b = np.ones((3, 2), np.float32), np.full((3, 4), 2.0, np.float32)
    batch = DataCollatorWithAudioPadding(w, return_attention_mask=True)([{"input_features": a}, {"input_features": b}])
    assert batch["input_features"].shape == (2, 3, 4)
    assert batch["input_features"][0].tolist() == [[1, 1, 0, 0]] * 3
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    same = DataCollatorWithAudioPadding(w)([{"input_features": b}, {"input_features": b * 2}])
    assert same["input_features"].shape == (2, 3, 4) and "attention_mask" not in same


def test_frames_first_layout_features_padded_on_the_frames_axis():
    ast_like = Wav2Vec2FeatureExtractor(feature_size=2, padding_value=-5.0, return_attention_mask=True)
    a, b = np.ones((1, 2), np.float32), np.zeros((3, 2), np.float32)
    batch = DataCollatorWithAudioPadding(ast_like)([{"input_features": a, "label": 1}, {"input_features": b, "label": 0}])
    assert batch["input_features"].tolist()[0] == [[1, 1], [-5, -5], [-5, -5]]
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    with pytest.raises(InvalidInputError, match="feature_size is 2"):
        DataCollatorWithAudioPadding(ast_like)([{"input_features": np.ones((3, 4))}, {"input_features": np.ones((5, 4))}])


def test_raw_audio_is_resampled_and_extracted_as_one_batch():
    from pretrained.audio import load_audio

    extractor = fe()
    t = np.arange(8000) / 8000.0
    one = {"array": np.sin(2 * np.pi * 440 * t).astype(np.float32), "sampling_rate": 8000}
    two = {"array": np.sin(2 * np.pi * 220 * t[:4000]).astype(np.float32), "sampling_rate": 8000}
    batch = DataCollatorWithAudioPadding(extractor)([{"audio": one, "label": 0}, {"audio": two, "label": 1}])
    waves = [load_audio(dict(one), 16000), load_audio(dict(two), 16000)]
    expected = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    assert batch["input_values"].shape == (2, 16000)
    assert torch.allclose(batch["input_values"], expected["input_values"])
    assert batch["attention_mask"].sum(1).tolist() == [16000, 8000] and batch["labels"].tolist() == [0, 1]
    with pytest.raises(InvalidInputError, match="sampling rate is unknown"):
        DataCollatorWithAudioPadding(extractor)([{"audio": np.zeros(100, np.float32)}])


# --- the collator: labels and errors -------------------------------------------------------------
def test_labels_names_floats_and_token_ids():
    rows = [{"input_values": [1.0], "label": "yes"}, {"input_values": [2.0], "label": "no"}]
    assert DataCollatorForAudioClassification(fe(), label2id={"no": 0, "yes": 1})(rows)["labels"].tolist() == [1, 0]
    with pytest.raises(InvalidInputError, match="label2id"):
        DataCollatorForAudioClassification(fe())(rows)
    with pytest.raises(InvalidInputError, match="'maybe'"):
        DataCollatorForAudioClassification(fe(), label2id={"no": 0, "yes": 1})(rows + [{"input_values": [0.0],
                                                                                         "label": "maybe"}])
    reg = DataCollatorForAudioClassification(fe())([{"input_values": [1.0], "label": 0.5},
                                                    {"input_values": [1.0], "label": 2}])
    assert reg["labels"].dtype == torch.float32 and reg["labels"].tolist() == [0.5, 2.0]
    multi = DataCollatorForAudioClassification(fe())([{"input_values": [1.0], "label": [1.0, 0.0, 1.0]},
                                                      {"input_values": [1.0], "label": np.array([0.0, 1.0, 0.0])}])
    assert multi["labels"].tolist() == [[1, 0, 1], [0, 1, 0]] and multi["labels"].dtype == torch.float32
    tokens = [{"input_values": [1.0], "labels": [5, 6, 7]}, {"input_values": [1.0], "labels": [8]}]
    assert DataCollatorWithAudioPadding(fe())(tokens)["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    with pytest.raises(InvalidInputError, match="one class id per example"):
        DataCollatorForAudioClassification(fe())(tokens)


def test_seq2seq_collator_drops_a_leading_decoder_start_from_every_row_only():
    feats = np.zeros((3, 4), np.float32)
    collate = DataCollatorSpeechSeq2SeqWithPadding(WhisperFeatureExtractor(feature_size=3), decoder_start_token_id=9)
    both = collate([{"input_features": feats, "labels": [9, 1, 2]}, {"input_features": feats, "labels": [9, 3]}])
    assert both["labels"].tolist() == [[1, 2], [3, -100]]
    one = collate([{"input_features": feats, "labels": [9, 1, 2]}, {"input_features": feats, "labels": [3]}])
    assert one["labels"].tolist() == [[9, 1, 2], [3, -100, -100]]
    with pytest.raises(InvalidInputError, match="token ids"):
        collate([{"input_features": feats, "labels": 1}])


def test_named_errors():
    with pytest.raises(InvalidInputError, match="feature extractor"):
        DataCollatorWithAudioPadding(None)
    with pytest.raises(InvalidInputError, match="padding="):
        DataCollatorWithAudioPadding(fe(), padding="sideways")
    collate = DataCollatorForAudioClassification(fe())
    with pytest.raises(InvalidInputError, match="none of"):
        collate([{"text": "seven", "label": 7}])
    with pytest.raises(InvalidInputError, match="one form"):
        collate([{"input_values": [1.0]}, {"input_features": np.ones((1, 1))}])
    with pytest.raises(InvalidInputError, match="no label"):
        collate([{"input_values": [1.0], "label": 1}, {"input_values": [1.0]}])
    with pytest.raises(InvalidInputError, match="1-D samples"):
        collate([{"input_values": np.ones((2, 3)), "label": 1}])
    with pytest.raises(InvalidInputError, match="empty"):
        collate([{"input_values": [], "label": 1}])
    with pytest.raises(InvalidInputError, match="real numbers"):
        collate([{"input_values": ["a", "b"], "label": 1}])
    with pytest.raises(InvalidInputError, match="not a dict"):
        collate([[1.0, 2.0]])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        collate([])


# --- training a tiny classifier, then the pipeline ----------------------------------------------
def tiny_classifier():
    from pretrained.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=[8, 16],
        conv_stride=[4, 4], conv_kernel=[8, 4], conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, apply_spec_augment=False,
        classifier_proj_size=16, num_labels=2, id2label={0: "low", 1: "high"}, label2id={"low": 0, "high": 1})
    return Wav2Vec2ForSequenceClassification.from_config(config)


def tones(n=16):
    """Low (300 Hz) and high (3 kHz) tones of different lengths at 16 kHz, phase varied."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = i % 2
        t = np.arange(int(rng.integers(600, 1200))) / 16000
        rows.append((np.sin(2 * np.pi * (300, 3000)[label] * t + rng.uniform(0, 6)).astype(np.float32), label))
    return rows


def test_trainer_lowers_the_loss_of_a_tiny_classifier_then_the_pipeline_serves_it(tmp_path):
    from pretrained import pipeline

    extractor = fe()
    data = [{"input_values": extractor(w, sampling_rate=16000)["input_values"][0], "label": y} for w, y in tones()]
    model = tiny_classifier()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=8, per_device_train_batch_size=8,
                             learning_rate=2e-2, save_strategy="no", disable_tqdm=True, report_to="none")
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                      data_collator=DataCollatorForAudioClassification(extractor), processing_class=extractor)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < 0.5 * before, (before, after)
    trainer.save_model(str(tmp_path / "model"))
    assert (tmp_path / "model" / "preprocessor_config.json").is_file()

    clf = pipeline("audio-classification", model=str(tmp_path / "model"))
    wave, _ = tones(18)[17]
    got = clf({"raw": wave, "sampling_rate": 16000}, top_k=2)
    model.eval()
    with torch.no_grad():
        x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)          # Wav2Vec2's normalisation, by hand
        probs = model(torch.from_numpy(x)[None]).logits.softmax(-1)[0]
    order = probs.argsort(descending=True).tolist()
    assert [g["label"] for g in got] == [["low", "high"][i] for i in order]
    assert [g["score"] for g in got] == pytest.approx(probs[order].tolist(), abs=1e-5)


def test_raw_audio_dataset_trains_through_the_collator(tmp_path):
    extractor = fe()
    data = [{"audio": {"array": w, "sampling_rate": 16000}, "label": y} for w, y in tones(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                             save_strategy="no", disable_tqdm=True, remove_unused_columns=False)
    out = Trainer(model=tiny_classifier(), args=args, train_dataset=data,
                  data_collator=DataCollatorForAudioClassification(extractor)).train()
    assert out.global_step == 2 and np.isfinite(out.training_loss)


# --- LoRA on Whisper ----------------------------------------------------------------------------
def test_lora_on_whisper_trains_only_the_adapter_and_reloads(tmp_path):
    from pretrained.auto import AutoModelForSpeechSeq2Seq
    from pretrained.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model

    g = torch.Generator().manual_seed(0)
    rows = [{"input_features": torch.randn(8, 32, generator=g),
             "labels": [101] + torch.randint(10, 90, (int(n),), generator=g).tolist() + [100]}
            for n in (3, 5, 4, 6, 3, 5, 4, 2)]
    torch.manual_seed(0)
    base = AutoModelForSpeechSeq2Seq.from_pretrained(MODELS / "whisper-tiny")
    assert type(base).__name__ == "WhisperForConditionalGeneration"
    original = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLinear)]
    assert wrapped and all(n.endswith(("q_proj", "v_proj")) for n in wrapped)
    assert any(".encoder." in n for n in wrapped) and any(".decoder." in n for n in wrapped)
    collate = DataCollatorSpeechSeq2SeqWithPadding(WhisperFeatureExtractor(feature_size=8), decoder_start_token_id=101)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=8, per_device_train_batch_size=4,
                             learning_rate=2e-2, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows, data_collator=collate)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 0.5, (before, after)

    trained = model.get_base_model().state_dict()
    lora = {k for k in trained if ".lora_" in k}
    assert lora and all(torch.equal(v, original[k.replace(".base_layer", "")]) for k, v in trained.items()
                        if k not in lora)
    assert all(not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in lora if "lora_B" in k)

    model.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    again = PeftModel.from_pretrained(AutoModelForSpeechSeq2Seq.from_pretrained(MODELS / "whisper-tiny"),
                                      tmp_path / "adapter")
    batch = collate(rows[:3])
    model.eval()
    with torch.no_grad():
        want = model(**batch).logits
        got = again(**batch).logits
        plain = AutoModelForSpeechSeq2Seq.from_pretrained(MODELS / "whisper-tiny")(**batch).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-3)   # the adapter is what changed the outputs


def test_module_docstring_example_runs():
    import doctest

    import pretrained.training.audio as module

    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0


# --- the helpers of examples/spoken_digits.py and examples/train_audio_classifier.py -------------
def _examples():
    import sys

    root = str(Path(__file__).resolve().parent.parent / "examples")
    sys.path.insert(0, root)
    try:
        import spoken_digits
        import train_audio_classifier
    finally:
        sys.path.remove(root)
    return spoken_digits, train_audio_classifier


def test_spoken_digits_split_by_voice_and_plan_are_deterministic():
    sd, _ = _examples()
    names = [f"v{i}" for i in range(40)]
    split = sd.split_voices(names)
    assert split == sd.split_voices(list(reversed(names)))
    assert (len(split["test"]), len(split["validation"]), len(split["train"])) == (16, 12, 40 - 28 + 1)
    assert not set(split["test"]) & set(split["train"]) and not set(split["validation"]) & set(split["train"])
    rows = sd.plan(split)
    assert rows == sd.plan(split) and len(rows) == 41 * 10 * 4
    for voice in ("default", split["test"][0]):
        takes = [r for r in rows if r["voice"] == voice and r["word"] == "seven"]
        assert len({r["accent"] for r in takes}) == 4 and all(r["label"] == 7 for r in takes)
        assert all(100 <= r["speed"] <= 220 and 15 <= r["pitch"] <= 85 for r in takes)


def test_trim_keeps_50_ms_around_the_word():
    sd, _ = _examples()
    wave = np.zeros(16000, np.float32)
    wave[4000:6000] = 0.5
    wave[100] = 0.001   # below 1% of the peak: silence
    assert sd.trim(wave).shape[0] == 2000 + 2 * 800


def test_the_digit_classifier_config():
    sd, tac = _examples()
    model = tac.build_model()
    assert model.config.id2label == dict(enumerate(sd.LABELS)) and model.config.label2id["seven"] == 7
    assert model._get_feat_extract_output_lengths(16000) == 48      # ~50 frames a second
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 8000)).logits.shape == (1, 10)
