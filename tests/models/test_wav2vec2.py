"""Wav2Vec2 ('wav2vec2'): the speech tests (speech_tester.py) on its fixtures, and what is its own:
config checks, input errors, the frame mask, SpecAugment, freezing, legacy weight-norm keys."""

import pytest
import torch
from speech_tester import example, golden, inputs_of, speech_model_tests
from tester import FIX, load

from pretrained import AutoConfig, AutoModel, AutoModelForAudioClassification, AutoModelForCTC
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification

globals().update(speech_model_tests("wav2vec2"))

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32)


def test_config_defaults_are_the_reference_base_shape():
    cfg = Wav2Vec2Config()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.conv_dim, cfg.conv_kernel) == \
        (768, 12, [512] * 7, [10, 3, 3, 3, 3, 2, 2])
    assert cfg.inputs_to_logits_ratio == 320 and cfg.num_feat_extract_layers == 7
    assert cfg.ctc_loss_reduction == "sum" and cfg.mask_time_prob == 0.05 and cfg.pad_token_id == 0
    assert cfg.output_hidden_size == 768


@pytest.mark.parametrize("bad, words", [
    (dict(conv_stride=(5, 2)), "one entry per layer"),
    (dict(feat_extract_norm="batch"), "feat_extract_norm"),
    (dict(num_attention_heads=5), "multiple of num_attention_heads"),
    (dict(num_conv_pos_embedding_groups=5), "num_conv_pos_embedding_groups"),
    (dict(ctc_loss_reduction="avg"), "ctc_loss_reduction"),
    (dict(mask_time_prob=1.5), "mask_time_prob"),
    (dict(hidden_act="nope"), "nope"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        Wav2Vec2Config(**{**TINY, **bad})


def test_adapters_are_refused_by_name():
    with pytest.raises(ConfigError, match="adapters"):
        Wav2Vec2ForCTC(Wav2Vec2Config(**TINY, add_adapter=True))
    with pytest.raises(ConfigError, match="vocab_size"):
        Wav2Vec2ForCTC(Wav2Vec2Config(**{**TINY, "vocab_size": None}))


def test_auto_classes_pick_the_heads():
    assert type(AutoModelForCTC.from_pretrained(FIX / "models" / "wav2vec2-tiny-ctc")) is Wav2Vec2ForCTC
    clf = AutoModelForAudioClassification.from_pretrained(FIX / "models" / "wav2vec2-tiny-seqcls")
    assert type(clf) is Wav2Vec2ForSequenceClassification
    assert type(AutoModel.from_pretrained(FIX / "models" / "wav2vec2-tiny-model")).__name__ == "Wav2Vec2Model"
    assert AutoConfig.from_pretrained(FIX / "models" / "wav2vec2-tiny-ctc").inputs_to_logits_ratio == 20


def test_legacy_weight_g_v_checkpoints_load_strictly():
    model, info = Wav2Vec2ForCTC.from_pretrained(FIX / "models" / "wav2vec2-legacy-ctc", strict=True,
                                                 output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    conv = model.wav2vec2.encoder.pos_conv_embed.conv
    assert conv.weight_g is conv.parametrizations.weight.original0


@pytest.mark.parametrize("bad, words", [
    (dict(input_values=torch.zeros(2, 10)), "at least one row of 40 samples"),
    (dict(input_values=torch.zeros(2, 100, dtype=torch.long)), "float samples"),
    (dict(input_values=torch.zeros(2, 100), attention_mask=torch.ones(2, 99)), "attention_mask has shape"),
    (dict(input_values=torch.zeros(2, 100), attention_mask=torch.tensor([[1] * 100, [1] * 5 + [0] * 95])),
     "too few for one frame"),
    (dict(input_values=[0.0] * 100), "torch.Tensor"),
])
def test_bad_inputs_are_named_errors(bad, words):
    model = load("wav2vec2-tiny-ctc")
    with pytest.raises(InvalidInputError, match=words):
        model(**bad)


def test_labels_outside_the_vocabulary_are_a_named_error():
    model = load("wav2vec2-tiny-ctc")
    with pytest.raises(InvalidInputError, match="CTC vocabulary"):
        model(**example(2), labels=torch.tensor([[5, 32], [4, 4]]))


def test_a_padded_row_gives_what_it_gives_alone():
    """The frame mask: a row's real frames do not depend on the padding after it (layer-normed
    convolutions; the base shape's group norm over time does see the padding, as the reference)."""
    model = load("wav2vec2-stable-ctc")
    g = golden("wav2vec2-stable-ctc")
    x, mask = g["input.input_values"], g["input.attention_mask"]
    n = int(mask[2].sum())
    with torch.no_grad():
        alone = model(x[2:3, :n]).logits
        batched = model(**inputs_of(g)).logits
    assert (batched[2, : alone.shape[1]] - alone[0]).abs().max() <= 1e-4


def test_spec_augment_masks_while_training_deterministically():
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(**TINY, mask_time_prob=0.5, mask_time_length=3, mask_feature_prob=0.3,
                         mask_feature_length=4, layerdrop=0.0, hidden_dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, final_dropout=0.0)
    model = Wav2Vec2ForCTC.from_config(cfg)
    batch = example(2)
    model.eval()
    with torch.no_grad():
        clean = model(**batch).logits
    model.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        with torch.no_grad():
            runs.append(model(**batch).logits)
    assert torch.equal(runs[0], runs[1])
    assert (runs[0] - clean).abs().max() > 1e-3
    model.config.apply_spec_augment = False
    with torch.no_grad():
        assert (model(**batch).logits - clean).abs().max() <= 1e-5


def test_span_counts_follow_the_rule():
    from pretrained.layers.speech_encoder import span_mask

    torch.manual_seed(1)
    m = span_mask(4, 100, 0.2, 10, 2, [100, 50, 12, 100], torch.device("cpu"))
    assert m.shape == (4, 100)
    assert not m[1, 50 + 9:].any() and not m[2, 12 + 9:].any()   # spans start within each row
    assert 20 <= int(m[0].sum()) <= 30   # 2-3 spans of 10 (0.2 * 100 / 10 + a random 0-1)
    assert 10 <= int(m[2].sum()) <= 12 and not m[2, 12:].any()   # min_spans=2 in a 12-step row


def test_freeze_feature_encoder_stops_its_gradients():
    model = load("wav2vec2-tiny-ctc")
    model.freeze_feature_encoder()
    model.train()
    labels = torch.tensor([[5, 6, 7], [8, 9, -100]])
    model(**example(2), labels=labels).loss.backward()
    convs = list(model.wav2vec2.feature_extractor.parameters())
    assert convs and all(p.grad is None and not p.requires_grad for p in convs)
    assert model.lm_head.weight.grad is not None
    assert model.wav2vec2.encoder.pos_conv_embed.conv.weight_v.grad is not None
    model.freeze_base_model()
    assert not any(p.requires_grad for p in model.wav2vec2.parameters())


def test_from_config_initialises_like_the_reference():
    cfg = Wav2Vec2Config(**TINY)
    model = Wav2Vec2ForSequenceClassification.from_config(Wav2Vec2Config(**TINY, use_weighted_layer_sum=True))
    assert torch.allclose(model.layer_weights, torch.full((3,), 1 / 3))
    conv = Wav2Vec2ForCTC.from_config(cfg).wav2vec2.encoder.pos_conv_embed.conv
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    assert torch.allclose(conv.weight, v, atol=1e-6)   # g starts at ||v||: the weight is v
    assert g.shape == (1, 1, 16) and not torch.equal(v, torch.zeros_like(v))


def test_hidden_states_count_layers_plus_one():
    model = load("wav2vec2-tiny-seqcls")
    out = model(**example(2), output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape[-1] == 32
    assert model(**example(2)).hidden_states is None


def test_end_to_end_transcription_equals_the_reference():
    """Our processor (feature extractor + CTC tokenizer) and model on raw waveforms: the argmax
    ids and the decoded text with word offsets are the reference's."""
    import json

    import numpy as np

    from pretrained.processing import AutoProcessor

    folder = FIX / "models" / "wav2vec2-tiny-ctc"
    want = json.loads((FIX / "goldens" / "speech" / "speech.json").read_text())["end_to_end"]["wav2vec2-tiny-ctc"]
    flat = np.load(FIX / "goldens" / "speech" / "wav2vec2-tiny-ctc-waves.npy")
    waves = np.split(flat, np.cumsum(want["lengths"])[:-1])
    processor = AutoProcessor.from_pretrained(folder)
    batch = processor(list(waves), sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = AutoModelForCTC.from_pretrained(folder)(**batch).logits.argmax(-1)
    assert ids.tolist() == want["predicted_ids"]
    out = processor.batch_decode(ids, output_word_offsets=True)
    assert out.text == want["text"] and out.word_offsets == want["word_offsets"]
