"""Building and loading the C kernels (``rows_kernel.c``, ``rows_bf16.c``, ``encoder.c``,
``norms.c``, ``gguf_kernel.c``, ``gguf_float.c``, ``bnb_kernel.c``, ``int8_rows.c``,
``decoder.c``): which
instruction-set variant, where, and whether to trust it.

One source is compiled once per variant with explicit instruction-set flags (never
``-march=native``, so a library does the same on every CPU that can run it):

* ``avx2``: AVX2 + FMA, float32 linears and encoders; bfloat16 stays with PyTorch.
* ``avx512``: the same on AVX-512 (F, BW, VL, DQ).
* ``avx512bf16``: plus bfloat16 linears and encoders on ``vdpbf16ps`` (AMD Zen 4, Intel Cooper Lake),
  and the GGUF block products on AVX-512 VNNI's ``vpdpbusd`` (every CPU with AVX512-BF16 has it).
* ``amx``: plus AMX tiles for bfloat16 (Intel Sapphire Rapids), ``vdpbf16ps`` where tiles do not fit.

At run time the best variant the CPU lists in ``/proc/cpuinfo`` is chosen;
``PRETRAINED_KERNELS=avx2|avx512|avx512bf16|amx|off`` forces one (one the CPU can run, else the
kernels are off and :func:`describe` says why), ``PRETRAINED_NO_KERNELS=1`` turns them off.
Every variant is built with the system C compiler (``cc -O3 -fopenmp``, a second or two each)
when the package is installed (setup.py calls :func:`build_all`; the libraries go into the
package, :data:`PACKAGED`); where that did not happen (no compiler then, a damaged file, a
package folder others can write), the chosen variant is built on the first call into a folder
only this user can write (:func:`kernels_dir`). Loaded with ctypes.

Trust: a shared library runs code in this process, so it is never built into or loaded from a
folder another user can write to (the folder and each of its parents must be owned by this
user or root and not writable by group or others, else the kernels stay off and
:func:`describe` says why), and never loaded when damaged: each build writes a sha256 stamp
beside the library, checked before every load; a missing or wrong stamp means build again.

Concurrency: several processes may build and load the same variant in one kernels folder at
once (test runs, a checkout whose sources change under other processes). A build compiles into
a temporary folder beside the library and fsyncs it; publishing (library renamed into place,
then its stamp, then the folder fsynced) and pruning older libraries run under an exclusive
``flock`` of the folder's ``.lock``, and a load checks the stamp and loads under a shared one:
a reader never sees a library without its own stamp, and no prune removes a library between
its check and its load. A process that finds an intact library published while it compiled
keeps that one.

Where they cannot be used (no compiler, not Linux on x86-64 with AVX2, an unsafe folder)
:func:`available` is False and every caller runs PyTorch's kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
SOURCES = tuple(_HERE / n for n in ("rows_kernel.c", "rows_bf16.c", "encoder.c", "norms.c",
                                    "gguf_kernel.c", "gguf_float.c", "bnb_kernel.c", "int8_rows.c",
                                    "decoder.c", "seq2seq_decoder.c"))
HEADERS = (_HERE / "kernels.h", _HERE / "gguf_blocks.h")
PACKAGED = _HERE / "_lib"   # variants built at install (setup.py); else built into kernels_dir()

_AVX2 = ["-mavx2", "-mfma"]
_AVX512 = _AVX2 + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"]
# name -> (compiler flags, the /proc/cpuinfo flags the library's instructions need); best first
VARIANTS: dict[str, tuple[list[str], set[str]]] = {
    "amx": (_AVX512 + ["-mavx512bf16", "-mavx512vnni", "-mamx-tile", "-mamx-bf16"],
            {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
             "avx512_vnni", "amx_tile", "amx_bf16"}),
    "avx512bf16": (_AVX512 + ["-mavx512bf16", "-mavx512vnni"],
                   {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
                    "avx512_vnni"}),
    "avx512": (_AVX512, {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    "avx2": (_AVX2, {"avx2", "fma"}),
}
_WHY = {"amx": "CPU has amx_tile and amx_bf16", "avx512bf16": "CPU has avx512_bf16, no AMX",
        "avx512": "CPU has AVX-512, no avx512_bf16", "avx2": "CPU has AVX2 and FMA, no AVX-512"}

_lib: ctypes.CDLL | None | bool = None   # None: not tried yet; False: unavailable
_bf16 = False           # the loaded library has the bfloat16 kernels
_tiles = False          # ... and runs them on AMX tiles (built in and granted by Linux)
_status = ""            # the variant and where it is, or why there is none (for `pretrained env`)


def cpu_flags() -> list[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def runnable() -> list[str]:
    """The variants this machine can run, best first (none off Linux on x86-64)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return []
    flags = set(cpu_flags())
    return [name for name, (_, needs) in VARIANTS.items() if needs <= flags]


def choose() -> tuple[str | None, str]:
    """The variant to load and why, or (None, "off: why not")."""
    if os.environ.get("PRETRAINED_NO_KERNELS", "") not in ("", "0"):
        return None, "off: PRETRAINED_NO_KERNELS is set"
    forced = os.environ.get("PRETRAINED_KERNELS", "").strip().lower()
    can = runnable()
    if forced == "off":
        return None, "off: PRETRAINED_KERNELS=off"
    if forced:
        if forced not in VARIANTS:
            return None, f"off: PRETRAINED_KERNELS={forced} is not one of {', '.join(VARIANTS)} or off"
        if forced not in can:
            lacks = sorted(VARIANTS[forced][1] - set(cpu_flags()))
            return None, (f"off: PRETRAINED_KERNELS={forced} but this CPU cannot run it "
                          f"(lacks {', '.join(lacks) or 'Linux on x86-64'})")
        return forced, "forced by PRETRAINED_KERNELS"
    if not can:
        return None, "off: they need Linux on an x86-64 CPU with AVX2 and FMA"
    return can[0], "chosen: " + _WHY[can[0]]


def kernels_dir() -> Path:
    """Where built libraries are kept: ``$XDG_CACHE_HOME/pretrained/kernels`` (default
    ``~/.cache/pretrained/kernels``). Not under ``PRETRAINED_CACHE``: that folder holds data
    and may be shared; code is only loaded from this user's own cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base).expanduser() / "pretrained" / "kernels"


def unsafe_folder(folder: Path) -> str | None:
    """Why ``folder`` is not safe to load code from (None when it is): it or a parent is owned
    by another user (not root), or is writable by group or others without the sticky bit that
    stops them replacing our files (and ``folder`` itself must not rely on the sticky bit)."""
    uid = os.getuid()
    path = folder.resolve()
    for i, part in enumerate((path, *path.parents)):
        try:
            st = os.stat(part)
        except OSError as e:
            return f"cannot check {part} ({e.strerror})"
        if st.st_uid not in (uid, 0):
            return f"{part} belongs to another user (uid {st.st_uid})"
        shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if shared and (i == 0 or not st.st_mode & stat.S_ISVTX):
            return f"{part} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def intact(target: Path) -> bool:
    """Whether ``target`` exists with the sha256 its build recorded (a truncated or damaged
    library would crash the process when loaded; it is rebuilt instead)."""
    stamp = target.with_suffix(".sha256")
    try:
        return stamp.read_text().strip() == _digest(target)
    except OSError:
        return False


LOCK_NAME = ".lock"   # in the kernels folder: flock'ed around publishing, pruning and loading


@contextlib.contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """``flock`` on ``folder``'s :data:`LOCK_NAME`: exclusive while a library is published or
    pruned, shared while one is checked and loaded (released when the block ends)."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)   # (closing releases the lock)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _compile_into(cmd: list[str], tmp: Path, name: str) -> tuple[Path, Path]:
    """Compile into ``tmp / name`` with its stamp beside it, both on disk (fsynced) before
    anything renames them into place; returns (library, stamp)."""
    out, stamp = tmp / name, tmp / "stamp"
    subprocess.run(cmd + [str(s) for s in SOURCES] + ["-o", str(out), "-lm"], check=True,
                   capture_output=True, timeout=120)
    _fsync(out)
    stamp.write_text(_digest(out))
    _fsync(stamp)
    return out, stamp


def _publish(out: Path, stamp: Path, target: Path) -> None:
    """Rename a compiled library into place, then its stamp (atomic renames within the folder,
    so a damaged pair can only be a stamp that does not match: rebuilt, never loaded), unless an
    intact one was published meanwhile (kept: a process may have checked it and be loading it)."""
    if intact(target):
        return
    os.replace(out, target)
    os.replace(stamp, target.with_suffix(".sha256"))
    _fsync(target.parent)   # the renames themselves on disk


def _compile(cmd: list[str], target: Path) -> None:
    """Compile into a temporary folder beside ``target``, then publish it there (the install-time
    build: one process, so no lock)."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _publish(*_compile_into(cmd, Path(tmp), target.name), target)


def _compiler() -> str:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise KernelsUnavailable("no C compiler (cc or gcc) to build them; install one, e.g. gcc")
    return cc


def _command(cc: str, name: str) -> list[str]:
    return [cc, "-O3", "-fopenmp", "-shared", "-fPIC", "-fvisibility=hidden", *VARIANTS[name][0]]


def library_name(name: str) -> str:
    """The file name of variant ``name`` built from these sources: keyed by the sources and the
    variant's flags (not the compiler's path, so a library built at install is found)."""
    key = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES + HEADERS)
                         + " ".join(_command("cc", name)).encode()).hexdigest()[:16]
    return f"rows_kernel-{name}-{key}.so"


def _packaged(name: str) -> Path | None:
    """The library built into the package when it was installed (see setup.py), where it is
    intact and in a folder only its owner (or root) can write; else None."""
    target = PACKAGED / library_name(name)
    if intact(target) and unsafe_folder(PACKAGED) is None:
        return target
    return None


_TRIES = 3   # builds of one variant per load before giving up (others kept pruning ours)


def _built_in_cache(name: str) -> tuple[Path, ctypes.CDLL]:
    """Variant ``name`` from this user's kernels folder, compiled there first if needed, and
    loaded: checked and loaded under the folder's shared lock, published and pruned under its
    exclusive one (see the module doc: concurrent builds, loads and prunes)."""
    folder = kernels_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    why = unsafe_folder(folder)
    if why:
        raise KernelsUnavailable(f"{why}; kernels are only loaded from a folder only you can write")
    target = folder / library_name(name)
    for _ in range(_TRIES):
        with _locked(folder, exclusive=False):
            if intact(target):
                return target, ctypes.CDLL(str(target))
        cmd = _command(_compiler(), name)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            out, stamp = _compile_into(cmd, Path(tmp), target.name)
            with _locked(folder, exclusive=True):
                _publish(out, stamp, target)
                _prune(folder, name)
                if intact(target):
                    return target, ctypes.CDLL(str(target))
    raise KernelsUnavailable(f"{target} was removed or changed after each of {_TRIES} builds "
                             "(other processes building other sources into the same folder)")


def build_all(folder: Path) -> list[str]:
    """Compile every variant this compiler can build into ``folder`` (setup.py runs this at
    install; the variants run on other CPUs too, chosen at run time); returns the ones built."""
    folder.mkdir(parents=True, exist_ok=True)
    built = []
    try:
        cc = _compiler()
    except KernelsUnavailable:
        return built
    for name in VARIANTS:
        target = folder / library_name(name)
        try:
            if not intact(target):
                _compile(_command(cc, name), target)
            built.append(name)
        except (OSError, subprocess.SubprocessError):
            continue   # this compiler lacks the variant's flags: it is built at first use, or not
        _prune(folder, name)
    return built


def _prune(folder: Path, name: str) -> None:
    """Remove variant ``name``'s libraries built from other sources (earlier versions): each
    source change would otherwise leave one more behind. A process still running one keeps it
    mapped (Linux frees the file when the last user unmaps it); in the kernels folder this runs
    under the exclusive lock, so never between another process's check of a library and its load."""
    keep = library_name(name)[:-3]
    for old in folder.glob(f"rows_kernel-{name}-*"):
        if old.name.split(".")[0] != keep:
            old.unlink(missing_ok=True)


class KernelsUnavailable(OSError):
    """A variant could not be built or loaded here; the message says why."""


def load_variant(name: str) -> ctypes.CDLL:
    """Build (if not built yet) and load variant ``name``, whatever :func:`choose` says; its
    functions typed for ctypes and the AMX tile state requested where it has tiles. Raises
    :class:`KernelsUnavailable` with the reason where it cannot (tests and benchmarks compare
    variants through this; the library itself loads the chosen one)."""
    if name not in runnable():
        raise KernelsUnavailable(f"this machine cannot run the {name} variant")
    try:
        target = _packaged(name)   # (install-time: nothing writes there while we run)
        if target is not None:
            lib = ctypes.CDLL(str(target))
        else:
            target, lib = _built_in_cache(name)
    except subprocess.SubprocessError as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise KernelsUnavailable(f"building {SOURCES[0].name} failed "
                                 f"({'; '.join(detail) or e})") from e
    except KernelsUnavailable:
        raise
    except OSError as e:
        raise KernelsUnavailable(f"building {SOURCES[0].name} failed ({e})") from e
    lib.variant_name.restype = ctypes.c_char_p
    if lib.variant_name().decode() != name:
        raise KernelsUnavailable(f"{target} is not the {name} variant")
    p, n, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for fn_name, extra in (("linear_f32", [i, p, n]), ("linear_bf16", [])):  # float32: GELU, residual
        fn = getattr(lib, fn_name)
        fn.argtypes = [p, n, n, p, n, n, p, p, n, i] + extra
        fn.restype = i
        fn = getattr(lib, fn_name + "_n")
        fn.argtypes = [p, n, n, i, p, p, p, n, p, n, i] + extra
        fn.restype = i
    for fn_name in ("encoder_f32", "encoder_bf16"):
        getattr(lib, fn_name).argtypes = [p, n, n, n, i, n, i, p, p, p, p, p, i, p, i]
        getattr(lib, fn_name).restype = i
    for fn_name in ("rmsnorm_f32", "rmsnorm_bf16"):
        getattr(lib, fn_name).argtypes = [p, n, n, n, p, ctypes.c_float, p, n]
        getattr(lib, fn_name).restype = i
    lib.path = target
    lib.bf16 = bool(lib.has_bf16())
    lib.tiles = bool(lib.has_amx()) and lib.amx_init() == 0
    return lib


def _build() -> ctypes.CDLL | bool:
    global _status, _bf16, _tiles
    name, why = choose()
    if name is None:
        _status = why
        return False
    try:
        lib = load_variant(name)
    except KernelsUnavailable as e:
        _status = f"off: {e}"
        logger.info("C kernels off (%s); linear layers use PyTorch's kernels", e)
        return False
    _bf16, _tiles = lib.bf16, lib.tiles
    kinds = "float32"
    if _bf16:
        kinds += " and bfloat16 (" + ("AMX tiles" if _tiles else "vdpbf16ps") + ")"
    if name == "amx" and not _tiles:
        kinds += "; Linux refused the AMX tile state"
    _status = f"{name} ({why}): {kinds}, in {lib.path}"
    return lib


def available() -> bool:
    """Whether the kernels are built and loaded (builds them on the first call)."""
    global _lib
    if _lib is None:
        _lib = _build()
    return _lib is not False


def library() -> ctypes.CDLL | None:
    """The loaded library, or None where there is none."""
    return _lib if available() else None


def bf16_ready() -> bool:
    """Whether the bfloat16 kernels run here (a variant with AVX512-BF16 is loaded)."""
    return available() and _bf16


def describe() -> str:
    """One line for ``pretrained env``: the variant in use, why, and where, or why there is none
    (builds it on the first call)."""
    available()
    return _status


def main() -> int:
    """``python -m pretrained.backends.build``: build every variant this machine can run (so no
    model call waits for the compiler, whichever ``PRETRAINED_KERNELS`` picks), then say which
    one loads."""
    failed = 0
    for name in runnable():
        try:
            print(f"{name}: {load_variant(name).path}")
        except KernelsUnavailable as e:
            print(f"{name}: not built ({e})")
            failed += 1
    print("in use:", describe())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
