"""Writing GGUF files: models of the llama family and GPT-2 read back with equal logits (F32),
close ones (F16/BF16/Q8_0/Q4_0/Q4_1, stored in the asked types), their tokenizers and chat
templates carried, and (when ``llama-cpp-python`` is installed) llama.cpp loading our file and
computing the logits our model computes.

The round trips compare against the model as loaded from its safetensors folder (whose logits
tests/models/ check against the reference), never against values the writer produced.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM, AutoTokenizer
from pretrained.cli import main as cli_main
from pretrained.convert.gguf import save_gguf
from pretrained.errors import UnsupportedOptionError
from pretrained.gguf import load_gguf

FIX = Path(__file__).parent / "fixtures" / "models"
TINY = FIX / "gguf-tiny"
IDS = torch.tensor([[1, 17, 5, 99, 42, 3, 64, 7, 120, 2, 8, 33]])


@pytest.fixture(scope="module")
def spm_tokenizer():
    return AutoTokenizer.from_pretrained(TINY, gguf_file="llama-spm.gguf")


@pytest.mark.parametrize("name", ["llama-gqa", "llama-mha-tied", "llama-bias-headdim", "qwen2-tied",
                                  "qwen3", "mistral-window", "gpt2-tiny"])
def test_f32_reads_back_with_equal_logits(tmp_path, name, spm_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(FIX / name, torch_dtype=torch.float32)
    path = save_gguf(model, tmp_path / "m.gguf", "f32", tokenizer=spm_tokenizer)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    ids = IDS[:, :4] if name == "mistral-window" else IDS   # written as llama: no sliding window (4)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    f = load_gguf(path)
    assert f.architecture == {"mistral-window": "llama", "qwen2-tied": "qwen2", "qwen3": "qwen3",
                              "gpt2-tiny": "gpt2"}.get(name, "llama")
    assert ("output.weight" in f.tensor_infos) != model.config.tie_word_embeddings


@pytest.mark.parametrize("kind,tol", [("f16", 1e-2), ("bf16", 5e-2), ("q8_0", 5e-2), ("q4_0", 0.5),
                                      ("q4_1", 0.5)])
def test_quantized_types_are_stored_and_close(tmp_path, kind, tol, spm_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa", torch_dtype=torch.float32)
    path = save_gguf(model, tmp_path, kind, tokenizer=spm_tokenizer)
    assert path == tmp_path / f"model.{kind.upper()}.gguf"
    f = load_gguf(path)
    types = {n: i.type_name for n, i in f.tensor_infos.items()}
    assert types["blk.0.attn_q.weight"] == kind.upper()
    assert types["blk.0.ffn_down.weight"] == ("F16" if kind.startswith("q") else kind.upper())  # rows of 48
    assert types["blk.0.attn_norm.weight"] == "F32"
    again = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    with torch.no_grad():
        got, want = again(IDS).logits, model(IDS).logits
    assert (got - want).abs().max() <= tol * want.abs().max()


def test_tokenizer_and_chat_template_carried(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(FIX / "gpt2-tiny-chat")
    tok = AutoTokenizer.from_pretrained(FIX / "gpt2-tiny-chat")
    path = model.save_pretrained(tmp_path, gguf="q8_0")   # the tokenizer found beside the model
    tok2 = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in ["Hello world", "  spaces and\nnew lines <|im_end|> 123", "ünïcödé €"]:
        assert tok2(text)["input_ids"] == tok(text)["input_ids"], text
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert tok2.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert (tok2.eos_token, tok2.bos_token) == (tok.eos_token, tok.bos_token)


def test_sentencepiece_tokenizer_round_trip(tmp_path, spm_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa")
    path = save_gguf(model, tmp_path / "m.gguf", "f32", tokenizer=spm_tokenizer)
    tok2 = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in ["Hello world", "The quick brown fox.", "  two  spaces", "ünïcödé"]:
        assert tok2(text)["input_ids"] == spm_tokenizer(text)["input_ids"], text
    assert load_gguf(path).metadata["tokenizer.ggml.model"] == "llama"


def test_a_model_from_gguf_writes_its_files_tokenizer_again(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")   # packed
    path = model.save_pretrained(tmp_path, gguf="q8_0")
    src, out = load_gguf(TINY / "llama-bpe.gguf").metadata, load_gguf(path).metadata
    assert {k: v for k, v in out.items() if k.startswith("tokenizer.")} == \
        {k: v for k, v in src.items() if k.startswith("tokenizer.")}
    ref = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf", dequantize=True)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    ids = IDS % model.config.vocab_size
    with torch.no_grad():
        got, want = again(ids).logits, ref(ids).logits
    assert (got - want).abs().max() <= 0.05 * want.abs().max()


def test_convert_command_writes_the_file(tmp_path, spm_tokenizer, capsys):
    out = tmp_path / "conv.gguf"
    assert cli_main(["convert", str(FIX / "gpt2-tiny-chat"), "--to", "gguf", "--type", "q4_0",
                     "--output", str(out)]) == 0
    f = load_gguf(out)
    assert f.tensor_infos["blk.0.attn_qkv.weight"].type_name == "Q4_0"
    assert str(out) in capsys.readouterr().out


def test_what_cannot_be_written_is_a_named_error(tmp_path, spm_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(FIX / "llama-gqa")
    with pytest.raises(UnsupportedOptionError, match="q4_k"):
        save_gguf(model, tmp_path, "q4_k", tokenizer=spm_tokenizer)
    bert = __import__("pretrained").AutoModel.from_pretrained(FIX / "bert-tiny")
    with pytest.raises(UnsupportedOptionError, match="llama, mistral"):
        save_gguf(bert, tmp_path, "f32", tokenizer=spm_tokenizer)


# --- llama.cpp reads our file ---------------------------------------------------------------------
# llama.cpp runs in a process of its own, as its users run it (without torch in the process).
_LLAMA_CPP = r"""
import json, sys
import llama_cpp
path, text, quest = json.loads(sys.stdin.read())
llm = llama_cpp.Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False, n_threads=1)
ids = llm.tokenize(text.encode(), add_bos=False, special=True)
llm.eval(ids)
scores = [list(map(float, r)) for r in llm.scores[:len(ids)]]   # before the chat call overwrites them
msgs = [{"role": "user", "content": quest}]
answer = llm.create_chat_completion(msgs, max_tokens=8, temperature=0.0)["choices"][0]["message"]["content"]
print(json.dumps({"ids": ids, "scores": scores, "answer": answer}))
"""


def test_llama_cpp_loads_our_file_and_computes_our_logits(tmp_path):
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (optional)")
    model = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf", dequantize=True)
    path = model.save_pretrained(tmp_path, gguf="q8_0")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    text = "Hello world, this is a test"
    done = subprocess.run([sys.executable, "-c", _LLAMA_CPP], input=json.dumps([str(path), text, "Hi"]),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    ids = tok(text)["input_ids"]
    assert got["ids"] == ids
    theirs = torch.tensor(got["scores"])
    with torch.no_grad():
        mine = ours(torch.tensor([ids])).logits[0]
    # llama.cpp multiplies Q8_0 blocks by activations rounded to 8 bits too: close logits, and the
    # same top token wherever ours is not a near tie (this random model has several)
    err = (mine - theirs).abs().max()
    assert err <= 0.05 * mine.abs().max()
    top2 = mine.topk(2, -1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * err
    assert clear.sum() >= len(ids) // 2
    assert (mine.argmax(-1) == theirs.argmax(-1))[clear].all()
    # it answers through the chat template carried in the file: our greedy answer, same tokens
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                   return_tensors="pt", return_dict=True)
    with torch.no_grad():
        g = ours.generate(**chat, max_new_tokens=8, do_sample=False)
    assert got["answer"] == tok.decode(g[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
