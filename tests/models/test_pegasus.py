"""Pegasus ('pegasus'): the encoder-decoder tests (seq2seq_tester.py) on its fixtures."""

from seq2seq_causal_tester import seq2seq_causal_tests
from seq2seq_tester import seq2seq_tests

from pretrained.models.pegasus import PegasusConfig

globals().update(seq2seq_tests("pegasus"))
globals().update(seq2seq_causal_tests("pegasus"))


def test_the_config_defaults_are_the_references():
    cfg = PegasusConfig()
    assert (cfg.pad_token_id, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.forced_eos_token_id) == (0, 0, 1, 1)
    assert cfg.is_encoder_decoder and not cfg.scale_embedding
