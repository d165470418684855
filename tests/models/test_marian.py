"""MarianMT ('marian'): the encoder-decoder tests (seq2seq_tester.py) on a translator with a shared
vocabulary and one with a target vocabulary of its own, and what is Marian's own."""

import torch

from seq2seq_causal_tester import seq2seq_causal_tests
from seq2seq_tester import golden, inputs_of, seq2seq_tests
from tester import load

from pretrained.models.marian import MarianConfig

globals().update(seq2seq_tests("marian"))
globals().update(seq2seq_causal_tests("marian"))


def test_a_separate_target_vocabulary_has_its_own_embeddings_and_head():
    model = load("marian-sep-lm")
    cfg = model.config
    assert cfg.decoder_vocab_size == cfg.vocab_size + 16 and not cfg.share_encoder_decoder_embeddings
    assert not hasattr(model.model, "shared")
    assert model.model.encoder.embed_tokens.num_embeddings == cfg.vocab_size
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    assert model.final_logits_bias.shape == (1, cfg.decoder_vocab_size)
    assert model.get_input_embeddings() is model.model.encoder.embed_tokens
    ids = inputs_of(golden("marian-sep-lm"))
    with torch.no_grad():   # target ids above the source vocabulary are the decoder's to take
        out = model(ids["input_ids"], decoder_input_ids=torch.tensor([[cfg.vocab_size + 3]] * 3))
    assert out.logits.shape == (3, 1, cfg.decoder_vocab_size)


def test_the_config_defaults_are_the_references():
    cfg = MarianConfig()
    assert (cfg.decoder_vocab_size, cfg.pad_token_id, cfg.decoder_start_token_id, cfg.eos_token_id) == \
        (58101, 58100, 58100, 0)
    assert cfg.is_encoder_decoder and cfg.share_encoder_decoder_embeddings and cfg.forced_eos_token_id == 0


def test_sinusoidal_positions_match_the_reference_layout():
    from pretrained.layers import sinusoidal_table

    t = sinusoidal_table(4, 6)   # sin of the even features' angles first, then cos of the odd ones
    assert torch.allclose(t[1, :3], torch.tensor([1.0, 10000 ** (-2 / 6), 10000 ** (-4 / 6)]).sin())
    assert torch.allclose(t[1, 3:], torch.tensor([1.0, 10000 ** (-2 / 6), 10000 ** (-4 / 6)]).cos())
    assert torch.equal(t[0], torch.tensor([0.0] * 3 + [1.0] * 3))
