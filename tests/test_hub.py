"""pretrained.io.hub: local folders, the HF cache layout, offline mode, bad ids and names.

Every test runs with the network cut off (any socket use fails the test); online behaviour is
checked by replacing ``huggingface_hub.hf_hub_download``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pretrained.io import hub
from pretrained.errors import InvalidInputError, ModelNotFoundError, PretrainedError
from pretrained.io.hub import InvalidRepoIdError, ModelFiles, cache_dir, check_relative_filename, resolve

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"test tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray local folder can shadow a hub id
    return cache


def make_cached_repo(cache: Path, repo_id: str, files: dict[str, bytes], *, commit=COMMIT, refs=("main",)):
    """Lay out a repo the way huggingface_hub does: blobs named by hash, snapshot symlinks."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, like huggingface_hub
    return repo


def forbid_download(monkeypatch):
    import huggingface_hub

    def fail(*args, **kwargs):
        pytest.fail(f"hf_hub_download was called: {args}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)


# --- import cost ------------------------------------------------------------------------------
def test_import_does_not_import_huggingface_hub():
    code = (
        "import sys, pretrained.io.hub as h, tempfile, pathlib\n"
        "d = tempfile.mkdtemp(); pathlib.Path(d, 'config.json').write_text('{}')\n"
        "assert h.resolve(d).get('config.json') is not None\n"
        "assert 'huggingface_hub' not in sys.modules, 'huggingface_hub was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- local folders ----------------------------------------------------------------------------
def test_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{}")
    files = resolve(tmp_path)
    assert files.local_dir == tmp_path and files.name == str(tmp_path)
    assert files.get("config.json") == tmp_path / "config.json"
    assert files.get("1_Pooling/config.json") == tmp_path / "1_Pooling" / "config.json"
    assert files.get("model.safetensors") is None
    assert files.folder == tmp_path


def test_local_folder_wins_over_cached_hub_id(hf_cache, tmp_path, monkeypatch):
    make_cached_repo(hf_cache, "org/model", {"config.json": b'{"from": "cache"}'})
    local = tmp_path / "org" / "model"
    local.mkdir(parents=True)
    (local / "config.json").write_text('{"from": "local"}')
    files = resolve("org/model")
    assert files.local_dir is not None
    assert files.get("config.json").read_text() == '{"from": "local"}'


def test_a_file_is_not_a_model_folder(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("{}")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve(f)


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_name(bad):
    with pytest.raises(InvalidInputError, match="empty"):
        resolve(bad)


def test_name_of_wrong_type():
    with pytest.raises(InvalidInputError):
        resolve(42)  # type: ignore[arg-type]


# --- the HF cache -----------------------------------------------------------------------------
def test_cached_main_offline(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_cached_repo(hf_cache, "org/model", {"config.json": b"{}", "1_Pooling/config.json": b'{"x": 1}'})
    files = resolve("org/model")
    assert files.commit == COMMIT and files.local_dir is None
    path = files.get("config.json")
    assert path == hf_cache / "models--org--model" / "snapshots" / COMMIT / "config.json"
    assert path.read_bytes() == b"{}"
    assert files.get("1_Pooling/config.json").read_bytes() == b'{"x": 1}'
    assert files.get("model.safetensors") is None  # offline: absent means None, no download
    assert "offline" in files.describe()


def test_cached_file_is_used_online_without_asking_the_hub(hf_cache, monkeypatch):
    forbid_download(monkeypatch)
    make_cached_repo(hf_cache, "org/model", {"config.json": b"{}"})
    assert resolve("org/model").get("config.json").read_bytes() == b"{}"


def test_single_part_id_and_hf_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert cache_dir() == tmp_path / "home" / "hub"
    make_cached_repo(cache_dir(), "gpt2", {"config.json": b"{}"})
    assert resolve("gpt2").get("config.json").read_bytes() == b"{}"


def test_hf_hub_cache_beats_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"


def test_explicit_cache_dir_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "unused"))
    monkeypatch.chdir(tmp_path)
    make_cached_repo(tmp_path / "mine", "org/model", {"config.json": b"{}"})
    files = resolve("org/model", cache_dir=tmp_path / "mine", local_files_only=True)
    assert files.get("config.json").read_bytes() == b"{}"


def test_revision_as_tag_and_as_commit_hash(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_cached_repo(hf_cache, "org/model", {"config.json": b"new"}, commit=COMMIT, refs=("main",))
    make_cached_repo(hf_cache, "org/model", {"config.json": b"old"}, commit=OTHER, refs=("v1.0",))
    assert resolve("org/model").get("config.json").read_bytes() == b"new"
    assert resolve("org/model", revision="v1.0").get("config.json").read_bytes() == b"old"
    assert resolve("org/model", revision=OTHER).get("config.json").read_bytes() == b"old"
    assert resolve("org/model", revision=COMMIT).get("config.json").read_bytes() == b"new"


def test_revision_not_cached(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_cached_repo(hf_cache, "org/model", {"config.json": b"{}"})
    with pytest.raises(ModelNotFoundError, match=r"revision 'v2' is not in the cache.*cached: main"):
        resolve("org/model", revision="v2")
    with pytest.raises(ModelNotFoundError, match=OTHER):
        resolve("org/model", revision=OTHER)


def test_ref_pointing_to_missing_snapshot(hf_cache):
    repo = make_cached_repo(hf_cache, "org/model", {"config.json": b"{}"})
    (repo / "refs" / "main").write_text(OTHER)
    with pytest.raises(ModelNotFoundError) as info:
        resolve("org/model", local_files_only=True)
    msg = str(info.value)
    assert str(repo / "refs" / "main") in msg and OTHER in msg and "missing" in msg
    assert "local_files_only" in msg


def test_ref_with_garbage(hf_cache):
    repo = make_cached_repo(hf_cache, "org/model", {"config.json": b"{}"})
    (repo / "refs" / "main").write_text("not a hash")
    with pytest.raises(ModelNotFoundError, match="does not hold a commit hash"):
        resolve("org/model", local_files_only=True)


def test_broken_blob_symlink_offline(hf_cache):
    repo = make_cached_repo(hf_cache, "org/model", {"config.json": b"{}", "model.safetensors": b"w"})
    blob = (repo / "snapshots" / COMMIT / "model.safetensors").resolve()
    blob.unlink()
    files = resolve("org/model", local_files_only=True)
    assert files.get("config.json") is not None
    with pytest.raises(ModelNotFoundError) as info:
        files.get("model.safetensors")
    msg = str(info.value)
    assert "model.safetensors" in msg and "broken link" in msg and str(repo) in msg


def test_broken_blob_symlink_online_downloads_again(hf_cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)  # a hub that answers
    import huggingface_hub

    repo = make_cached_repo(hf_cache, "org/model", {"model.safetensors": b"w"})
    link = repo / "snapshots" / COMMIT / "model.safetensors"
    link.resolve().unlink()
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append(filename)
        link.resolve().write_bytes(b"w")
        return str(link)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert resolve("org/model").get("model.safetensors").read_bytes() == b"w"
    assert calls == ["model.safetensors"]


def test_no_exist_marker_means_absent(hf_cache, monkeypatch):
    forbid_download(monkeypatch)
    repo = make_cached_repo(hf_cache, "org/model", {"config.json": b"{}"})
    (repo / ".no_exist" / COMMIT).mkdir(parents=True)
    (repo / ".no_exist" / COMMIT / "model.safetensors").touch()
    assert resolve("org/model").get("model.safetensors") is None


# --- offline, not cached (H1) -----------------------------------------------------------------
def test_offline_env_not_cached(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forbid_download(monkeypatch)
    with pytest.raises(ModelNotFoundError) as info:
        resolve("org/not-here")
    msg = str(info.value)
    assert str(hf_cache / "models--org--not-here") in msg  # the cache path tried
    assert str(Path.cwd() / "org" / "not-here") in msg  # the local path tried
    assert "HF_HUB_OFFLINE=1" in msg and "local folder" in msg and "online" in msg
    assert "\n" not in msg
    assert isinstance(info.value, FileNotFoundError)


def test_local_files_only_not_cached(hf_cache, monkeypatch):
    forbid_download(monkeypatch)
    with pytest.raises(ModelNotFoundError, match="local_files_only=True"):
        resolve("org/not-here", local_files_only=True)


# --- bad ids and names (H2) -------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "a/b/c", "with spaces", "org/with space", "org/na--me", "org/x.git", "-org/x", "./nope"]
)
def test_invalid_repo_id_before_touching_the_cache(bad, hf_cache, monkeypatch):
    import pretrained.io.hub as hub

    def no_cache(*args):
        pytest.fail("the cache was read for an invalid id")

    monkeypatch.setattr(hub, "_cached_commit", no_cache)
    with pytest.raises(ValueError) as info:
        resolve(bad)
    assert isinstance(info.value, InvalidRepoIdError)
    assert isinstance(info.value, ModelNotFoundError) and isinstance(info.value, PretrainedError)
    assert "not a valid hub id" in str(info.value)
    assert list(hf_cache.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "..\\x", "C:/x", "", "a\x00b"])
def test_check_relative_filename_refuses_escapes(bad, tmp_path):
    with pytest.raises(InvalidInputError):
        check_relative_filename(bad)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidInputError):
        resolve(tmp_path).get(bad)


def test_check_relative_filename_accepts_subfolders():
    assert check_relative_filename("1_Pooling/config.json") == "1_Pooling/config.json"
    assert check_relative_filename("a\\b.json") == "a/b.json"
    assert check_relative_filename("./config.json") == "config.json"


def test_bad_revision(hf_cache):
    with pytest.raises(InvalidInputError, match="revision"):
        resolve("org/model", revision="../../x")


# --- online (hf_hub_download replaced) --------------------------------------------------------
def test_download_when_not_cached(hf_cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)  # a hub that answers
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, *, revision, cache_dir, token, library_name):
        calls.append((repo_id, filename, revision, cache_dir, token))
        repo = make_cached_repo(Path(cache_dir), repo_id, {filename: b"downloaded"}, commit=OTHER)
        return str(repo / "snapshots" / OTHER / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    files = resolve("org/model", token="tok")
    assert files.commit is None
    path = files.get("sub/config.json")
    assert path.read_bytes() == b"downloaded"
    assert calls == [("org/model", "sub/config.json", None, str(hf_cache), "tok")]
    assert files.commit == OTHER  # later files come from the same snapshot
    assert files.get("sub/config.json") == path and len(calls) == 1


def _hub_error(cls):
    err = cls.__new__(cls)
    Exception.__init__(err, f"{cls.__name__}: fake")
    return err


def test_download_errors_are_mapped(hf_cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)  # a hub that answers
    import huggingface_hub
    from huggingface_hub import errors

    def raising(exc):
        def fake(*args, **kwargs):
            raise exc

        return fake

    files = resolve("org/model")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(_hub_error(errors.RemoteEntryNotFoundError)))
    assert files.get("tokenizer.json") is None
    monkeypatch.setattr(
        huggingface_hub, "hf_hub_download", raising(errors.LocalEntryNotFoundError("cannot reach the hub"))
    )
    with pytest.raises(ModelNotFoundError, match="could not be reached") as info:
        files.get("config.json")
    assert str(hf_cache / "models--org--model") in str(info.value)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(_hub_error(errors.RepositoryNotFoundError)))
    with pytest.raises(ModelNotFoundError, match="no such model"):
        files.get("config.json")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(_hub_error(errors.GatedRepoError)))
    with pytest.raises(ModelNotFoundError, match="token"):
        files.get("config.json")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(_hub_error(errors.RevisionNotFoundError)))
    with pytest.raises(ModelNotFoundError, match="revision"):
        files.get("config.json")


def test_model_files_repr():
    assert "hub:org/m@main" in repr(ModelFiles("org/m", repo_id="org/m"))


def test_an_unreachable_hub_fails_at_once_with_one_clean_message(hf_cache, monkeypatch, caplog):
    """No network and HF_HUB_OFFLINE unset: one quick connection attempt, then the error (not
    ~25 s of retries, each logged)."""
    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(hub, "_reach", {})
    forbid_download(monkeypatch)
    with pytest.raises(ModelNotFoundError, match="the hub could not be reached"):
        resolve("org/model").get("config.json")
    assert not caplog.records


def test_local_files_only_message_does_not_blame_hf_hub_offline(hf_cache):
    with pytest.raises(ModelNotFoundError) as e:
        resolve("org/model", local_files_only=True)
    assert "local_files_only=True" in str(e.value) and "unset HF_HUB_OFFLINE" not in str(e.value)
