"""Model id or path -> local files.

A name is looked up, in this order:

1. a local folder of that name (a local folder always wins over a hub id of the same name);
2. the standard Hugging Face cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``), at ``revision``
   (a branch or tag found under ``refs/``, or a full commit hash found under ``snapshots/``);
3. the hub itself, unless ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``.

A file already in the cache is used without asking the hub (no request per file), so a cached
model loads the same with or without a network. The cache is read here directly;
``huggingface_hub`` is imported only to download (its progress bar, its file locks, so two
processes may fetch the same model at once). ``import pretrained.io.hub`` does not import it.

Example::

    >>> from pretrained.io.hub import resolve
    >>> files = resolve("tests/fixtures/models/bert-tiny")     # doctest: +SKIP
    >>> files.get("config.json")                               # doctest: +SKIP
    PosixPath('tests/fixtures/models/bert-tiny/config.json')
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ..errors import InvalidInputError, ModelNotFoundError
from .paths import hub_cache_dir as cache_dir  # re-exported: hub.cache_dir() is public

__all__ = [
    "ModelFiles",
    "resolve",
    "check_relative_filename",
    "cache_dir",
    "validate_repo_id",
    "InvalidRepoIdError",
]

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# The hub's own rule: "name" or "namespace/name"; letters, digits, '-', '_', '.'; each part at
# most 96 characters, not starting or ending with '-' or '.'; no '--' or '..'; no '.git' suffix.
_REPO_PART_RE = re.compile(r"[A-Za-z0-9_](?:[\w\-.]{0,94}[A-Za-z0-9_])?", re.ASCII)


class InvalidRepoIdError(ModelNotFoundError, InvalidInputError):
    """The name is neither an existing local folder nor a well-formed hub id.

    It is both a :class:`ModelNotFoundError` (nothing was found) and a ``ValueError`` (the id
    itself is malformed), so either ``except`` clause catches it.
    """


_default_cache_dir = cache_dir  # `resolve` has an argument of the same name


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_relative_filename(filename: str) -> str:
    """Refuse file names that would escape the model folder (``../x``, ``/etc/passwd``, ``C:x``).

    Returns the name normalised to forward slashes."""
    text = os.fspath(filename) if isinstance(filename, os.PathLike) else filename
    if not isinstance(text, str):
        raise InvalidInputError(f"file name must be a string, not {type(filename).__name__}")
    p = PurePosixPath(text.replace("\\", "/"))
    parts = p.parts
    if not text or "\x00" in text or not parts or p.is_absolute() or ".." in parts or ":" in parts[0]:
        raise InvalidInputError(
            f"refusing file name {filename!r}: a model's files must be plain relative paths "
            "inside its folder (no '..', no absolute paths)"
        )
    return str(p)


def validate_repo_id(repo_id: str) -> str:
    """Check that ``repo_id`` is a well-formed hub id (``name`` or ``org/name``); return it.

    Raises :class:`InvalidRepoIdError` (a ``ValueError``) otherwise. Pure string check: nothing
    on disk or on the network is touched."""
    parts = repo_id.split("/")
    problem = None
    if len(parts) > 2:
        problem = "a hub id has at most one '/' ('org/name')"
    elif not all(_REPO_PART_RE.fullmatch(p) for p in parts):
        problem = (
            "a hub id uses only letters, digits, '-', '_' and '.', each part at most 96 "
            "characters, not starting or ending with '-' or '.'"
        )
    elif "--" in repo_id or ".." in repo_id:
        problem = "a hub id cannot contain '--' or '..'"
    elif repo_id.endswith(".git"):
        problem = "a hub id cannot end with '.git'"
    if problem:
        raise InvalidRepoIdError(
            f"{repo_id!r} is not a local folder (no such directory: "
            f"{str(Path(repo_id).expanduser().absolute())!r}) and not a valid hub id: {problem}. "
            "Pass the path of an existing folder, or a hub id like 'org/model'."
        )
    return repo_id


def _check_revision(revision: str) -> str:
    if not isinstance(revision, str) or not revision.strip():
        raise InvalidInputError(f"revision must be a non-empty string (a branch, tag or commit), got {revision!r}")
    try:
        return check_relative_filename(revision)
    except InvalidInputError:
        raise InvalidInputError(
            f"revision {revision!r} is not a branch, tag or commit hash (no '..', no absolute paths)"
        ) from None


def _repo_cache(cache_root: Path, repo_id: str) -> Path:
    return cache_root / ("models--" + repo_id.replace("/", "--"))


class ModelFiles:
    """Where one model's files are: a local folder, or a hub repo (cached or downloadable).

    ``get(name)`` returns the local path of a file, downloading it first when allowed, or
    ``None`` when the model does not have that file.
    """

    def __init__(
        self,
        name: str,
        *,
        local_dir: Path | None = None,
        repo_id: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        offline: bool = False,
        token: str | bool | None = None,
        commit: str | None = None,
    ) -> None:
        self.name = name
        self.local_dir = local_dir
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.offline = offline
        self.token = token
        self.commit = commit  # the cached snapshot in use, when there is one

    def __repr__(self) -> str:
        if self.local_dir is not None:
            where = str(self.local_dir)
        else:
            where = f"hub:{self.repo_id}@{self.revision or 'main'}"
            if self.commit:
                where += f" (cached {self.commit[:10]})"
        return f"ModelFiles({self.name!r} -> {where})"

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else cache_dir()

    @property
    def repo_cache(self) -> Path | None:
        """``<cache>/models--org--name`` for a hub model, ``None`` for a local folder."""
        return None if self.repo_id is None else _repo_cache(self.cache_root, self.repo_id)

    @property
    def folder(self) -> Path | None:
        """The local folder, or the cached snapshot folder in use (``None`` if none yet)."""
        if self.local_dir is not None:
            return self.local_dir
        if self.commit:
            return self.repo_cache / "snapshots" / self.commit
        return None

    def describe(self) -> str:
        """Where files are looked for, for error messages."""
        if self.local_dir is not None:
            return f"local folder {str(self.local_dir)!r}"
        where = f"cached snapshot {str(self.folder)!r}" if self.commit else f"cache {str(self.repo_cache)!r}"
        if self.offline:
            return f"{where} of {self.repo_id!r} (offline: files not cached cannot be downloaded)"
        return f"{where} of {self.repo_id!r}, then the hub"

    def get(self, filename: str) -> Path | None:
        """Local path of ``filename`` (may be in a sub-folder, e.g. ``1_Pooling/config.json``),
        or ``None`` when the model has no such file."""
        filename = check_relative_filename(filename)
        if self.local_dir is not None:
            path = self.local_dir / filename
            return path if path.is_file() else None
        if self.commit:
            snapshot = self.repo_cache / "snapshots" / self.commit
            path = snapshot / filename
            if path.is_file():
                return path
            if os.path.islink(path) and not self.offline:
                pass  # broken link to a blob: the download below fetches the blob again
            elif os.path.islink(path):
                raise ModelNotFoundError(
                    f"{self.repo_id!r}: the cached file {str(path)!r} is a broken link (its blob "
                    f"{os.readlink(path)!r} is missing). Delete {str(self.repo_cache)!r} and "
                    "download the model again while online."
                )
            elif (self.repo_cache / ".no_exist" / self.commit / filename).is_file():
                return None  # the hub said so when this revision was downloaded
        if self.offline:
            return None
        return self._download(filename)

    def _unreachable(self, filename: str) -> str:
        return (f"{self.repo_id!r} was not found: no local folder "
                f"{str(Path(self.name).expanduser().absolute())!r}, no cached copy of "
                f"{filename!r} in {str(self.repo_cache)!r}, and the hub could not be reached. "
                "Connect to the network once (or set HF_HUB_CACHE to a cache that holds it), or "
                "pass the path of a folder that holds config.json and the weights.")

    def _download(self, filename: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if not hub_reachable():   # else huggingface_hub retries for ~25 s, logging each try
            raise ModelNotFoundError(self._unreachable(filename))
        try:
            path = Path(
                hf_hub_download(
                    self.repo_id,
                    filename,
                    revision=self.revision,
                    cache_dir=str(self.cache_root),
                    token=self.token,
                    library_name="pretrained",
                )
            )
        except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass of it
            raise ModelNotFoundError(self._unreachable(filename)) from None
        except EntryNotFoundError:
            return None  # the repo exists, this file does not
        except RevisionNotFoundError:
            raise ModelNotFoundError(
                f"{self.repo_id!r}: the hub has no revision {self.revision!r}. Check the branch, "
                "tag or commit hash."
            ) from None
        except RepositoryNotFoundError as e:  # GatedRepoError is a subclass
            raise ModelNotFoundError(
                f"{self.repo_id!r}: the hub has no such model, or it is private or gated and "
                f"needs a token ({type(e).__name__}). Check the id, log in (token=...), or pass "
                "a local folder."
            ) from None
        except HfHubHTTPError as e:
            raise ModelNotFoundError(
                f"{self.repo_id!r}: downloading {filename!r} failed: {str(e).splitlines()[0]}"
            ) from None
        # Keep later files on the same snapshot as this one (the hub may have moved the branch).
        snapshot = path.parents[len(PurePosixPath(filename).parts) - 1]
        if snapshot.parent.name == "snapshots" and _COMMIT_RE.fullmatch(snapshot.name):
            self.commit = snapshot.name
        return path


HUB_CONNECT_TIMEOUT = 3.0   # seconds to reach the hub's host before saying it cannot be reached
_reach: dict[str, tuple[bool, float]] = {}   # endpoint -> (reachable, when checked)


def hub_reachable() -> bool:
    """Whether the hub's host (``HF_ENDPOINT``, default huggingface.co) accepts a connection
    within :data:`HUB_CONNECT_TIMEOUT` seconds; a failure is remembered for a minute. Name lookup
    and connection run in a helper thread, so a resolver that hangs costs the timeout only."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    known = _reach.get(endpoint)
    if known is not None and (known[0] or time.monotonic() - known[1] < 60):
        return known[0]
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    result = [False]

    def connect() -> None:
        try:
            with socket.create_connection((url.hostname, port), timeout=HUB_CONNECT_TIMEOUT):
                result[0] = True
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(HUB_CONNECT_TIMEOUT + 0.5)
    _reach[endpoint] = (result[0], time.monotonic())
    return result[0]


def _cached_commit(repo_cache: Path, revision: str) -> tuple[str | None, str | None]:
    """(commit, problem): the cached snapshot for ``revision``, or why there is none."""
    if not repo_cache.is_dir():
        return None, f"no cached copy in {str(repo_cache)!r}"
    snapshots = repo_cache / "snapshots"
    ref = repo_cache / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        if not _COMMIT_RE.fullmatch(commit):
            return None, f"the cached ref {str(ref)!r} does not hold a commit hash ({commit[:50]!r})"
        if not (snapshots / commit).is_dir():
            return None, (
                f"the cached ref {str(ref)!r} points to snapshot {commit!r}, which is missing "
                f"from {str(snapshots)!r} (a damaged cache: delete {str(repo_cache)!r} and "
                "download again)"
            )
        return commit, None
    if _COMMIT_RE.fullmatch(revision) and (snapshots / revision).is_dir():
        return revision, None
    cached = sorted(p.name for p in (repo_cache / "refs").rglob("*") if p.is_file()) if (
        repo_cache / "refs"
    ).is_dir() else []
    have = f" (cached: {', '.join(cached)})" if cached else ""
    return None, f"revision {revision!r} is not in the cache {str(repo_cache)!r}{have}"


def resolve(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelFiles:
    """Find a model by local path or hub id.

    A local folder wins over a hub id of the same name. Otherwise ``name_or_path`` must be a
    valid hub id; its cached snapshot at ``revision`` (default ``"main"``) is used, and missing
    files are downloaded unless ``local_files_only=True`` or ``HF_HUB_OFFLINE=1``.

    Raises :class:`InvalidRepoIdError` (a ``ValueError``) for a malformed id, before anything is
    read from the cache, and :class:`ModelNotFoundError` naming the local path and the cache path
    tried when the model is not available offline.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidInputError(
            f"model name must be a string or a path, not {type(name_or_path).__name__}"
        )
    name = os.fspath(name_or_path)
    if not name or not name.strip():
        raise InvalidInputError("model name is empty: pass a local folder or a hub id like 'org/model'")
    local = Path(name).expanduser()
    if local.is_dir():
        return ModelFiles(name, local_dir=local)
    if local.is_file():
        raise ModelNotFoundError(
            f"{name!r} is a file; pass the folder that holds config.json and the weights"
        )
    validate_repo_id(name)
    if revision is not None:
        revision = _check_revision(revision)

    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    repo_cache = _repo_cache(root, name)
    commit, problem = _cached_commit(repo_cache, revision or "main")
    offline = bool(local_files_only) or _offline_env()
    if offline and commit is None:
        why = "HF_HUB_OFFLINE=1 is set" if _offline_env() else "local_files_only=True"
        raise ModelNotFoundError(
            f"{name!r} was not found: no local folder {str(local.absolute())!r}; {problem} "
            f"({why}, so the hub was not asked). Download it once while online "
            f"({'unset HF_HUB_OFFLINE' if _offline_env() else 'without local_files_only=True'}), "
            "point HF_HUB_CACHE at a cache that holds it, or pass the path of a local folder."
        )
    return ModelFiles(
        name,
        repo_id=name,
        revision=revision,
        cache_dir=root,
        offline=offline,
        token=token,
        commit=commit,
    )
