"""pretrained/io/paths.py (every cache folder) and pretrained/_version.py (the version): one place each."""

from __future__ import annotations

import re
from pathlib import Path

from pretrained.io import paths

ROOT = Path(__file__).resolve().parent.parent


def _clear(monkeypatch):
    for var in ("XDG_CACHE_HOME", "PRETRAINED_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)


def test_cache_home_defaults_to_dot_cache_and_honours_xdg(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_home() == tmp_path / "home" / ".cache"
    assert paths.models_cache_dir() == tmp_path / "home" / ".cache" / "pretrained" / "models"
    assert paths.hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_home() == tmp_path / "xdg"
    assert paths.models_cache_dir() == tmp_path / "xdg" / "pretrained" / "models"
    assert paths.hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_models_cache_from_pretrained_cache(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PRETRAINED_CACHE", str(tmp_path / "models"))
    assert paths.models_cache_dir() == tmp_path / "models"


def test_hub_cache_order(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert paths.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert paths.hub_cache_dir() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert paths.hub_cache_dir() == tmp_path / "hub"


def test_fetch_and_hub_use_paths():
    from pretrained.io import fetch, hub

    assert fetch.models_cache_dir is paths.models_cache_dir
    assert hub.cache_dir is paths.hub_cache_dir


def test_kernels_are_outside_pretrained_cache(tmp_path, monkeypatch):
    from pretrained.backends import build

    _clear(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PRETRAINED_CACHE", str(tmp_path / "models"))
    assert build.kernels_dir() == paths.cache_home() / "pretrained" / "kernels"


def test_the_version_is_written_once():
    import pretrained
    from pretrained import _version, config

    assert pretrained.__version__ == config.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.?(dev|a|b|rc)\d+)?", _version.__version__)
    written = [str(p.relative_to(ROOT)) for p in (ROOT / "pretrained").rglob("*.py")
               if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert written == ["pretrained/_version.py"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)
    assert 'version = {attr = "pretrained._version.__version__"}' in pyproject


def test_saved_config_carries_the_version():
    from pretrained._version import __version__
    from pretrained.models.bert import BertConfig

    assert BertConfig(vocab_size=10).to_dict()["pretrained_version"] == __version__
