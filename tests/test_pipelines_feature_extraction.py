"""feature-extraction (token embeddings) against the reference's goldens (transformers 5.x on the
encoder of the tiny pipe-bert-mlm checkpoint), and sentence embeddings ("sentence-embeddings",
or pooling=...) on a sentence-transformers folder; the real all-MiniLM-L6-v2 in slow tests."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pipeline_goldens import assert_same, case, case_ids, model_path, run
from pretrained.errors import InvalidInputError
from pretrained.pipelines import pipeline
from pretrained.pipelines.feature_extraction import load_sentence_embedder

FILE = "feature_extraction.json"
TASK = "feature-extraction"
TEXTS = case(FILE, "list")["inputs"]
# The reference returns the batch's padded length for batched calls; we return each input's own.
PADDED = ["batch_2"]


@pytest.mark.parametrize("name", [n for n in case_ids(FILE) if n not in PADDED])
def test_equals_reference(name):
    c = case(FILE, name)
    assert_same(run(TASK, c), c["output"])


def test_batched_call_gives_each_input_its_own_length():
    c = case(FILE, "batch_2")
    ours = run(TASK, c)
    alone = run(TASK, case(FILE, "list"))
    assert_same(ours, alone, atol=1e-5)
    for mine, ref in zip(ours, c["output"]):
        n = len(mine[0])
        assert len(ref[0]) >= n
        assert_same(mine, [ref[0][:n]])  # the reference's rows past our length are padding


def test_return_tensors_shape():
    out = run(TASK, case(FILE, "return_tensors"))
    assert isinstance(out, torch.Tensor) and out.shape[0] == 1 and out.shape[2] == 32


def test_input_over_max_length_is_a_clear_error():
    c = case(FILE, "truncation")
    pipe_ = pipeline(TASK, model=model_path(c["model"]))
    with pytest.raises(InvalidInputError, match=r"longer than this model takes \(64\).*truncation=True"):
        pipe_(c["inputs"])
    with pytest.raises(InvalidInputError, match="truncation is given twice"):
        pipe_("x", truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(InvalidInputError, match="normalize=True needs pooling"):
        pipe_("x", normalize=True)


# --- sentence embeddings on a tiny sentence-transformers folder ------------------------------
@pytest.fixture(scope="module")
def st_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("st")
    src = model_path("pipe-bert-mlm")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{src}/{name}", folder / name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12}))
    return folder


def test_sentence_embeddings_follow_the_folder(st_folder):
    emb = pipeline("sentence-embeddings", model=str(st_folder))
    assert emb.task == "sentence-embeddings"
    vecs = emb(TEXTS, return_tensors=True)
    assert [tuple(v.shape) for v in vecs] == [(32,)] * len(TEXTS)
    torch.testing.assert_close(torch.stack(vecs).norm(dim=-1), torch.ones(len(TEXTS)))
    # the same vectors as the sentence-transformers-style embedder (mean pooling, max_seq_length 12)
    torch.testing.assert_close(torch.stack(vecs), load_sentence_embedder(st_folder)(TEXTS), atol=1e-5, rtol=1e-4)
    single = emb(TEXTS[1])
    assert isinstance(single, list) and len(single) == 32 and isinstance(single[0], float)
    batched = torch.tensor(emb(TEXTS, batch_size=3))
    torch.testing.assert_close(batched, torch.stack(vecs), atol=1e-5, rtol=1e-4)


def test_sentence_embeddings_by_hand_from_token_embeddings(st_folder):
    tokens = pipeline(TASK, model=str(st_folder))
    sent = pipeline(TASK, model=str(st_folder), pooling="mean", normalize=True)
    for text in TEXTS[:3]:
        t = torch.tensor(tokens(text, tokenize_kwargs={"truncation": True, "max_length": 12}))[0]
        expected = torch.nn.functional.normalize(t.mean(dim=0), dim=-1)
        torch.testing.assert_close(torch.tensor(sent(text, tokenize_kwargs={"max_length": 12})), expected)
    cls = pipeline(TASK, model=str(st_folder), pooling="cls")
    torch.testing.assert_close(torch.tensor(cls(TEXTS[0])), torch.tensor(tokens(TEXTS[0]))[0, 0])


def test_sentence_mode_truncates_long_inputs(st_folder):
    emb = pipeline("sentence-similarity", model=str(st_folder))
    long = case(FILE, "truncation")["inputs"]
    cut = " ".join(long.split()[:3])
    assert len(emb(long)) == 32  # no error: cut to max_seq_length, as sentence-transformers does
    sim = emb.similarity([long, cut, "the lazy dog"])
    assert sim.shape == (3, 3)
    torch.testing.assert_close(sim.diagonal(), torch.ones(3))
    with pytest.raises(InvalidInputError, match="similarity\\(\\) needs sentence embeddings"):
        pipeline(TASK, model=str(st_folder)).similarity(["a", "b"])


def test_unknown_pooling_is_a_clear_error(st_folder):
    with pytest.raises(InvalidInputError, match="unknown pooling"):
        pipeline(TASK, model=str(st_folder), pooling="median")


# --- the real all-MiniLM-L6-v2 -----------------------------------------------------------------
@pytest.mark.slow
def test_real_minilm_default_sentence_embeddings_give_published_similarities():
    emb = pipeline("sentence-embeddings")  # the default model, fetched once with pretrained.io.fetch
    sim = emb.similarity(["A man is eating food."], ["A man is eating a piece of bread.",
                                                     "A man is riding a horse.", "The stock market crashed today."])
    cos = sim[0].tolist()
    assert round(cos[0], 4) == pytest.approx(0.7553, abs=5e-4)
    assert cos[1] == pytest.approx(0.247, abs=5e-3)
    assert cos[2] == pytest.approx(0.009, abs=5e-3)


@pytest.mark.slow
def test_real_minilm_token_embeddings_pool_to_the_sentence_embedding():
    texts = ["A man is eating food.", "The stock market crashed today."]
    tokens = pipeline(TASK)  # the default model: token embeddings, as the reference's pipeline
    sent = pipeline("sentence-embeddings", model=tokens.model, tokenizer=tokens.tokenizer)
    for text, vec in zip(texts, sent(texts, batch_size=2, return_tensors=True)):
        t = tokens(text, return_tensors=True)
        assert t.shape[0] == 1 and t.shape[2] == 384
        torch.testing.assert_close(torch.nn.functional.normalize(t[0].mean(dim=0), dim=-1), vec,
                                   atol=1e-5, rtol=1e-4)
