"""mBART ('mbart'): the encoder-decoder tests (seq2seq_tester.py) on its fixtures, and its decoder
inputs that start with the language code."""

import torch

from seq2seq_causal_tester import seq2seq_causal_tests
from seq2seq_tester import golden, inputs_of, seq2seq_tests
from tester import load

from pretrained.layers import shift_tokens_right_wrapped
from pretrained.models.mbart import MBartConfig

globals().update(seq2seq_tests("mbart"))
globals().update(seq2seq_causal_tests("mbart"))


def test_decoder_inputs_start_with_the_last_real_token():
    labels = torch.tensor([[5, 6, 2, 250], [7, 2, 250, -100]])
    assert shift_tokens_right_wrapped(labels, 1).tolist() == [[250, 5, 6, 2], [250, 7, 2, 250]]


def test_without_decoder_inputs_the_input_shifted_is_read():
    g = golden("mbart-tiny-lm")
    model = load("mbart-tiny-lm")
    inputs = inputs_of(g)
    del inputs["decoder_input_ids"]
    shifted = shift_tokens_right_wrapped(inputs["input_ids"], model.config.pad_token_id)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs, decoder_input_ids=shifted).logits)


def test_the_config_defaults_are_the_references():
    cfg = MBartConfig()
    assert cfg.decoder_start_token_id is None and (cfg.pad_token_id, cfg.eos_token_id) == (1, 2)


def test_the_auto_classes_pick_the_classification_and_qa_heads():
    from tester import FIX

    from pretrained import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
    from pretrained.models.mbart import MBartForQuestionAnswering, MBartForSequenceClassification

    seqcls = AutoModelForSequenceClassification.from_pretrained(FIX / "models" / "mbart-small-seqcls")
    assert type(seqcls) is MBartForSequenceClassification and seqcls.config.num_labels == 3
    qa = AutoModelForQuestionAnswering.from_pretrained(FIX / "models" / "mbart-small-qa")
    assert type(qa) is MBartForQuestionAnswering and qa.config.num_labels == 2
