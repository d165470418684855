"""BART ('bart', with a distilbart shape): the encoder-decoder tests (seq2seq_tester.py), the
classification and question-answering heads, and BART's own fallbacks."""

import pytest
import torch

from seq2seq_causal_tester import seq2seq_causal_tests
from seq2seq_tester import golden, inputs_of, seq2seq_tests
from tester import load

from pretrained import AutoModelForSeq2SeqLM
from pretrained.errors import InvalidInputError
from pretrained.layers import shift_tokens_right
from pretrained.models.bart import BartConfig, BartForConditionalGeneration

globals().update(seq2seq_tests("bart"))
globals().update(seq2seq_causal_tests("bart"))


def test_the_auto_class_picks_the_generation_head():
    from tester import FIX

    assert type(AutoModelForSeq2SeqLM.from_pretrained(FIX / "models" / "bart-tiny-lm")) is BartForConditionalGeneration


def test_without_decoder_inputs_the_input_shifted_right_is_read():
    g = golden("bart-tiny-lm")
    model = load("bart-tiny-lm")
    inputs = inputs_of(g)
    del inputs["decoder_input_ids"]
    cfg = model.config
    shifted = shift_tokens_right(inputs["input_ids"], cfg.pad_token_id, cfg.decoder_start_token_id)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs, decoder_input_ids=shifted).logits)


def test_classification_needs_the_same_number_of_eos_tokens_per_row():
    g = golden("bart-small-seqcls")
    model = load("bart-small-seqcls")
    ids = inputs_of(g)["input_ids"].clone()
    ids[0, 2] = model.config.eos_token_id
    with torch.no_grad(), pytest.raises(InvalidInputError, match="same number"):
        model(ids)


def test_the_config_defaults_are_the_references():
    cfg = BartConfig()
    assert cfg.num_labels == 3 and (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (1, 0, 2)
    assert cfg.decoder_start_token_id == 2 and cfg.forced_eos_token_id == 2 and cfg.is_encoder_decoder
    assert BartConfig(num_labels=5).num_labels == 5


def test_a_file_storing_every_name_of_the_tie_loads_tied(tmp_path):
    """Old BART/Marian files (and every .bin) store shared, both embed_tokens and lm_head alike:
    loaded as one matrix, as the reference does; a head whose values differ stays apart."""
    import shutil

    from safetensors.torch import load_file, save_file
    from tester import FIX

    shutil.copytree(FIX / "models" / "bart-tiny-lm", tmp_path, dirs_exist_ok=True)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    w = tensors["model.shared.weight"]
    for key in ("lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
        tensors[key] = w.clone()
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model = BartForConditionalGeneration.from_pretrained(tmp_path)
    assert model.lm_head.weight is model.model.shared.weight is model.model.decoder.embed_tokens.weight
    tensors["lm_head.weight"] = w + 1
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model = BartForConditionalGeneration.from_pretrained(tmp_path)
    assert model.lm_head.weight is not model.model.shared.weight
    assert torch.equal(model.lm_head.weight, w + 1)
    assert model.model.encoder.embed_tokens.weight is model.model.shared.weight


def test_lora_without_targets_takes_peft_defaults_for_bart():
    from pretrained.peft import LoraConfig, get_peft_model

    peft = get_peft_model(load("bart-tiny-lm"), LoraConfig(r=2))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in peft.named_modules() if type(m).__name__ == "LoraLinear"}
    assert wrapped == {"q_proj", "v_proj"}
