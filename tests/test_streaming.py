"""Streamers print / yield the same text as the finished (non-streamed) call."""

import functools
import queue
import threading
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM
from pretrained.errors import InvalidInputError
from pretrained.generation import TextIteratorStreamer, TextStreamer
from pretrained.tokenization import AutoTokenizer

CHAT = Path(__file__).parent / "fixtures" / "models" / "gpt2-tiny-chat"


@functools.lru_cache(maxsize=None)
def model_and_tokenizer():
    return AutoModelForCausalLM.from_pretrained(CHAT), AutoTokenizer.from_pretrained(CHAT)


PROMPTS = ["hello world", "the quick brown fox", "Zürich 日本"]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("skip_special", [True, False])
def test_text_streamer_prints_the_generated_text(prompt, skip_special, capsys):
    model, tok = model_and_tokenizer()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None)
    streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=skip_special)
    streamed = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, streamer=streamer)
    assert torch.equal(out, streamed)
    printed = capsys.readouterr().out
    assert printed == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=skip_special) + "\n"


def test_text_streamer_with_prompt_and_sampling(capsys):
    model, tok = model_and_tokenizer()
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=15, do_sample=True, seed=3, streamer=TextStreamer(tok))
    assert capsys.readouterr().out == tok.decode(out[0]) + "\n"


def _feed(streamer, ids):
    streamer.put(torch.tensor([ids[:2]]))  # the "prompt"
    for i in ids[2:]:
        streamer.put(torch.tensor([i]))
    streamer.end()


def test_streamer_pieces_add_up_across_newlines_and_multibyte_text():
    _, tok = model_and_tokenizer()
    text = "one two\nthree Zürich 日本語 four!\n\nfive 🤗 six"
    ids = tok(text)["input_ids"]
    streamer = TextIteratorStreamer(tok)
    _feed(streamer, ids)
    pieces = list(streamer)
    assert "".join(pieces) == tok.decode(ids)
    assert len(pieces) > 3  # streamed in several pieces, not all at the end
    assert all("\ufffd" not in p for p in pieces)  # never half a character


def test_words_are_held_back_until_final():
    _, tok = model_and_tokenizer()
    printed = []

    class Capture(TextStreamer):
        def on_finalized_text(self, text, stream_end=False):
            printed.append(text)

    ids = tok("hello world again")["input_ids"]
    s = Capture(tok, skip_prompt=False)
    s.put(torch.tensor(ids[:1]))
    for i in ids[1:]:
        s.put(torch.tensor([i]))
    s.end()
    assert "".join(printed) == "hello world again"


def test_iterator_streamer_from_another_thread():
    model, tok = model_and_tokenizer()
    enc = tok("the quick brown fox", return_tensors="pt")
    expected = model.generate(**enc, max_new_tokens=20, do_sample=False, eos_token_id=None)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=30)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("out", model.generate(
        **enc, max_new_tokens=20, do_sample=False, eos_token_id=None, streamer=streamer)))
    worker.start()
    text = "".join(streamer)
    worker.join(timeout=30)
    assert torch.equal(result["out"], expected)
    assert text == tok.decode(expected[0, enc["input_ids"].shape[1]:])


def test_iterator_streamer_timeout():
    _, tok = model_and_tokenizer()
    streamer = TextIteratorStreamer(tok, timeout=0.05)
    with pytest.raises(queue.Empty, match="timeout"):
        next(streamer)


def test_iterator_streamer_sees_generate_errors():
    model, tok = model_and_tokenizer()
    streamer = TextIteratorStreamer(tok, timeout=30)

    def boom(*args, **kwargs):
        raise RuntimeError("forward failed")

    hook = model.register_forward_pre_hook(boom)
    try:
        worker = threading.Thread(target=lambda: pytest.raises(RuntimeError, model.generate,
                                                               torch.tensor([[5, 6]]), max_new_tokens=3,
                                                               streamer=streamer))
        worker.start()
        with pytest.raises(RuntimeError, match="forward failed"):
            list(streamer)
        worker.join(timeout=30)
    finally:
        hook.remove()


def test_iterator_streamer_sees_validation_errors():
    _, tok = model_and_tokenizer()
    model = model_and_tokenizer()[0]
    streamer = TextIteratorStreamer(tok, timeout=30)
    with pytest.raises(InvalidInputError):
        model.generate(torch.tensor([[5, 6]]), max_new_tokens=0, streamer=streamer)
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        next(streamer)


def test_streamer_rejects_beams_and_batches():
    model, tok = model_and_tokenizer()
    with pytest.raises(InvalidInputError, match="beam"):
        model.generate(torch.tensor([[5, 6]]), num_beams=2, max_new_tokens=2, streamer=TextStreamer(tok))
    with pytest.raises(InvalidInputError, match="one"):
        model.generate(torch.tensor([[5, 6], [7, 8]]), max_new_tokens=2, streamer=TextStreamer(tok))
    with pytest.raises(InvalidInputError):
        TextStreamer(object())
