"""Sentence embeddings: pooling with the attention mask, batching, sentence-transformers folders.

Fast tests use hand-made tensors and a toy model; the slow test checks the real
all-MiniLM-L6-v2 (obtained with pretrained.io.fetch) against similarities published in MODELS.md.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import pretrained
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.pipelines.feature_extraction import (
    POOLING_MODES,
    SentenceEmbedder,
    load_sentence_embedder,
    pool,
    sentence_embeddings,
)

# two texts, three positions, hidden size 2; the second text has one real token
HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],  # last position is padding
        [[5.0, -6.0], [50.0, 50.0], [-70.0, 70.0]],  # two padding positions
    ]
)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


# --- pooling ----------------------------------------------------------------------------------
def test_mean_pooling_ignores_padding():
    out = pool(HIDDEN, MASK, "mean")
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [5.0, -6.0]]))


def test_max_pooling_ignores_padding():
    out = pool(HIDDEN, MASK, "max")
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0], [5.0, -6.0]]))


def test_cls_pooling_takes_the_first_position():
    torch.testing.assert_close(pool(HIDDEN, MASK, "cls"), torch.tensor([[1.0, 2.0], [5.0, -6.0]]))


def test_mean_sqrt_len_pooling():
    out = pool(HIDDEN, MASK, "mean_sqrt_len_tokens")
    torch.testing.assert_close(out, torch.tensor([[4.0 / math.sqrt(2), 6.0 / math.sqrt(2)], [5.0, -6.0]]))


def test_weighted_mean_and_last_token():
    w = pool(HIDDEN, MASK, "weightedmean")  # weights 1, 2 on the kept positions
    torch.testing.assert_close(w, torch.tensor([[(1 + 6) / 3, (2 + 8) / 3], [5.0, -6.0]]))
    left_padded = torch.tensor([[0, 1, 1], [0, 0, 1]])
    torch.testing.assert_close(pool(HIDDEN, left_padded, "lasttoken"), torch.tensor([[100.0, -100.0], [-70.0, 70.0]]))
    torch.testing.assert_close(pool(HIDDEN, MASK, "lasttoken"), torch.tensor([[3.0, 4.0], [5.0, -6.0]]))


def test_several_modes_concatenate_and_no_mask_means_all():
    out = pool(HIDDEN, MASK, ["cls", "mean"])
    assert out.shape == (2, 4)
    torch.testing.assert_close(out[:, 2:], pool(HIDDEN, MASK, "mean"))
    torch.testing.assert_close(pool(HIDDEN, None, "mean"), HIDDEN.mean(dim=1))
    assert set(POOLING_MODES) >= {"cls", "mean", "max", "mean_sqrt_len_tokens"}


def test_pooling_errors():
    with pytest.raises(InvalidInputError, match="unknown pooling"):
        pool(HIDDEN, MASK, "median")
    with pytest.raises(InvalidInputError, match="attention_mask has shape"):
        pool(HIDDEN, MASK[:, :2], "mean")
    with pytest.raises(InvalidInputError, match="hidden states"):
        pool(HIDDEN[0], MASK, "mean")


# --- a toy model and tokenizer ----------------------------------------------------------------
class ToyTokenizer:
    """One token per character; pads with id 0 on the right."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, *, padding, truncation, return_tensors, max_length=None):
        assert padding is True and truncation is True and return_tensors == "pt"
        self.calls.append((list(texts), max_length))
        ids = [[(ord(c) % 50) + 1 for c in t][: max_length or None] or [1] for t in texts]
        width = max(len(x) for x in ids)
        return {
            "input_ids": torch.tensor([x + [0] * (width - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "token_type_ids": torch.zeros(len(ids), width, dtype=torch.long),
        }


class ToyModel(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(hidden_size=hidden)
        self.emb = nn.Embedding(51, hidden)  # the padding id has a non-zero vector on purpose
        self.mix = nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        x = self.emb(input_ids)
        x = x + self.mix(x).tanh()  # per-token, so padding cannot leak in
        return SimpleNamespace(last_hidden_state=x)


TEXTS = ["a", "a much longer sentence", "mid length", "zz"]


def test_padding_does_not_change_an_embedding():
    model, tok = ToyModel(), ToyTokenizer()
    alone = torch.stack([sentence_embeddings(model, tok, t) for t in TEXTS])
    batched = sentence_embeddings(model, tok, TEXTS, batch_size=32)
    torch.testing.assert_close(batched, alone)
    for bs in (1, 3):
        torch.testing.assert_close(sentence_embeddings(model, tok, TEXTS, batch_size=bs), alone)


def test_output_order_shape_and_normalize():
    model, tok = ToyModel(), ToyTokenizer()
    out = sentence_embeddings(model, tok, TEXTS, batch_size=2, normalize=True)
    assert out.shape == (4, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4))
    single = sentence_embeddings(model, tok, TEXTS[1], normalize=True)
    assert single.shape == (8,)
    torch.testing.assert_close(single, out[1])
    assert tok.calls[0][0] == ["a much longer sentence", "mid length"]  # longest first


def test_model_mode_is_restored():
    model, tok = ToyModel(), ToyTokenizer()
    model.train()
    sentence_embeddings(model, tok, TEXTS)
    assert model.training


def test_input_errors():
    model, tok = ToyModel(), ToyTokenizer()
    assert sentence_embeddings(model, tok, []).shape == (0, 8)
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        sentence_embeddings(model, tok, ["ok", 3])
    with pytest.raises(InvalidInputError, match="batch_size"):
        sentence_embeddings(model, tok, ["ok"], batch_size=0)
    with pytest.raises(InvalidInputError, match="string"):
        sentence_embeddings(model, tok, 42)


def test_embedder_similarity():
    embed = SentenceEmbedder(ToyModel(), ToyTokenizer(), normalize=True)
    sim = embed.similarity(TEXTS)
    assert sim.shape == (4, 4)
    torch.testing.assert_close(sim.diagonal(), torch.ones(4))
    torch.testing.assert_close(sim, sim.T)
    assert embed.similarity(TEXTS[:1], TEXTS).shape == (1, 4)


# --- reading a sentence-transformers folder ---------------------------------------------------
@pytest.fixture
def toy_auto(monkeypatch):
    """AutoModel / AutoTokenizer stand-ins, so folder parsing is tested on its own."""
    loaded = []

    class AutoModel:
        @staticmethod
        def from_pretrained(path, **kw):
            loaded.append(("model", str(path), kw))
            return ToyModel()

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path, **kw):
            loaded.append(("tokenizer", str(path), kw))
            return ToyTokenizer()

    import pretrained.auto
    import pretrained.tokenization

    # where load_sentence_embedder takes them from (it never imports the top package)
    monkeypatch.setattr(pretrained.auto, "AutoModel", AutoModel)
    monkeypatch.setattr(pretrained.tokenization, "AutoTokenizer", AutoTokenizer)
    return loaded


def write_st_folder(root, modules, pooling=None, st_config=None):
    (root / "config.json").write_text("{}")
    (root / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if st_config is not None:
        (root / "sentence_bert_config.json").write_text(json.dumps(st_config))


MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
]
NORMALIZE = {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}


def test_folder_with_pooling_dense_and_normalize(tmp_path, toy_auto):
    from safetensors.torch import save_file

    (tmp_path / "2_Dense").mkdir()
    (tmp_path / "2_Dense" / "config.json").write_text(
        json.dumps({"in_features": 16, "out_features": 3, "bias": True,
                    "activation_function": "torch.nn.modules.activation.Tanh"})
    )
    torch.manual_seed(1)
    weight, bias = torch.randn(3, 16), torch.randn(3)
    save_file({"linear.weight": weight, "linear.bias": bias}, str(tmp_path / "2_Dense" / "model.safetensors"))
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    write_st_folder(
        tmp_path,
        MODULES + [dense, NORMALIZE],
        pooling={"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": True},
        st_config={"max_seq_length": 5, "do_lower_case": True},
    )
    embed = load_sentence_embedder(tmp_path)
    assert embed.pooling == ["cls", "max"] and embed.normalize and embed.max_length == 5 and embed.lowercase
    assert [kind for kind, _, _ in toy_auto] == ["model", "tokenizer"]
    out = embed(["Hello World", "x"])
    # by hand: lower-case, truncate to 5, pool cls+max, dense+tanh, L2-normalise
    model, tok = embed.model, ToyTokenizer()
    enc = tok(["hello world"], padding=True, truncation=True, return_tensors="pt", max_length=5)
    h = model(**enc).last_hidden_state
    pooled = torch.cat([h[:, 0], h.max(dim=1).values], dim=-1)
    expected = torch.nn.functional.normalize(torch.tanh(pooled @ weight.T + bias), dim=-1)
    torch.testing.assert_close(out[:1], expected)


def test_folder_without_modules_json_is_mean_pooled(tmp_path, toy_auto):
    (tmp_path / "config.json").write_text("{}")
    embed = load_sentence_embedder(tmp_path)
    assert embed.pooling == ["mean"] and not embed.normalize and embed.max_length is None


def test_minilm_style_folder(tmp_path, toy_auto):
    write_st_folder(
        tmp_path,
        MODULES + [NORMALIZE],
        pooling={"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False},
        st_config={"max_seq_length": 256, "do_lower_case": False},
    )
    embed = load_sentence_embedder(str(tmp_path), batch_size=2)
    assert embed.pooling == ["mean"] and embed.normalize and embed.max_length == 256 and not embed.lowercase
    assert "normalize=True" in repr(embed)
    torch.testing.assert_close(embed(TEXTS).norm(dim=-1), torch.ones(4))


@pytest.mark.parametrize(
    "modules, pooling, match",
    [
        (MODULES + [{"idx": 2, "path": "2_LN", "type": "sentence_transformers.models.LayerNorm"}], {"pooling_mode_mean_tokens": True}, "LayerNorm"),
        (MODULES, {"pooling_mode_mean_tokens": False}, "no pooling mode"),
        ([{"idx": 0, "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}], None, "sub-folder"),
        ({"not": "a list"}, None, "must be a list"),
    ],
)
def test_bad_folders(tmp_path, toy_auto, modules, pooling, match):
    write_st_folder(tmp_path, modules, pooling=pooling)
    with pytest.raises(ConfigError, match=match):
        load_sentence_embedder(tmp_path)


def test_unreadable_pooling_config(tmp_path, toy_auto):
    write_st_folder(tmp_path, MODULES, pooling={})
    (tmp_path / "1_Pooling" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_sentence_embedder(tmp_path)


# --- the real model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from pretrained.io.fetch import fetch

    return load_sentence_embedder(fetch("all-MiniLM-L6-v2", quiet=True))


@pytest.mark.slow
def test_real_minilm_similarities(minilm):
    # expected values: published for sentence-transformers/all-MiniLM-L6-v2 (MODELS.md)
    anchor = "A man is eating food."
    others = ["A man is eating a piece of bread.", "A man is riding a horse.", "The stock market crashed today."]
    emb = minilm([anchor] + others)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    cos = (emb[0] @ emb[1:].T).tolist()
    assert round(cos[0], 4) == pytest.approx(0.7553, abs=5e-4)
    assert cos[1] == pytest.approx(0.247, abs=5e-3)
    assert cos[2] == pytest.approx(0.009, abs=5e-3)


@pytest.mark.slow
def test_real_minilm_batching_matches_one_by_one(minilm):
    texts = ["short", "A much longer sentence that needs quite a lot more padding than the others.", "mid size text"]
    together = minilm(texts, batch_size=3)
    alone = torch.stack([minilm(t) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_real_minilm_from_an_offline_hf_cache(minilm, tmp_path, monkeypatch):
    """The hub id path: the same files laid out as a Hugging Face cache, loaded offline."""
    from pretrained.io.fetch import fetch

    folder = fetch("all-MiniLM-L6-v2", quiet=True)
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    for src in folder.rglob("*"):
        if src.is_file() and not src.name.startswith("."):
            link = repo / "snapshots" / commit / src.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    embed = load_sentence_embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert embed.pooling == ["mean"] and embed.normalize and embed.max_length == 256
    texts = ["A man is eating food.", "A man is riding a horse."]
    torch.testing.assert_close(embed(texts), minilm(texts))
