"""Building and loading the C kernels (``rows_kernel.c``): where, how, and whether to trust them.

The library is built with the system C compiler (``cc -O3 -fopenmp`` plus the instruction-set
flags of the variant, about a second) when ``setup.sh`` installs the package, else on the first
call, into a folder only this user can write (:func:`kernels_dir`), and loaded with ctypes.

Trust: a shared library runs code in this process, so it is never built into or loaded from a
folder another user can write to (the folder and each of its parents must be owned by this
user or root and not writable by group or others, else the kernels stay off and
:func:`describe` says why), and never loaded when damaged: each build writes a sha256 stamp
beside the library, checked before every load; a missing or wrong stamp means build again.

Where they cannot be used (no compiler, not Linux on x86-64 with AVX-512, an unsafe folder,
``PRETRAINED_NO_KERNELS=1``) :func:`available` is False and every caller runs PyTorch's kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("rows_kernel.c")
_lib: ctypes.CDLL | None | bool = None   # None: not tried yet; False: unavailable
_amx = False            # the bfloat16 kernel is built and Linux granted the AMX tile state
_status = ""            # where the library is, or why there is none (for `pretrained env`)


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


def _compile(cc: str, cmd: list[str], target: Path) -> None:
    """Compile into a temporary name in ``target``'s folder, record its digest, then move both
    into place (atomic: a concurrent build writes the same bytes)."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        subprocess.run(cmd + [str(SOURCE), "-o", str(out), "-lm"], check=True,
                       capture_output=True, timeout=120)
        stamp = Path(tmp) / "stamp"
        stamp.write_text(_digest(out))
        os.replace(out, target)
        os.replace(stamp, target.with_suffix(".sha256"))


def _build() -> ctypes.CDLL | bool:
    global _status, _amx
    if os.environ.get("PRETRAINED_NO_KERNELS", "") not in ("", "0"):
        _status = "off: PRETRAINED_NO_KERNELS is set"
        return False
    flags = cpu_flags()
    if platform.system() != "Linux" or platform.machine() != "x86_64" or "avx512f" not in flags:
        _status = "off: they need Linux on an x86-64 CPU with AVX-512"
        return False
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        _status = "off: no C compiler (cc or gcc) to build them; install one, e.g. gcc"
        logger.info("no C compiler found; linear layers use PyTorch's kernels")
        return False
    cmd = [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(cmd + flags).encode()).hexdigest()[:16]
    folder = kernels_dir()
    target = folder / f"rows_kernel-{key}.so"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        why = unsafe_folder(folder)
        if why:
            _status = f"off: {why}; kernels are only loaded from a folder only you can write"
            logger.warning("C kernels off: %s", why)
            return False
        if not intact(target):
            _compile(cc, cmd, target)
        if not intact(target):   # replaced between our write and this check
            _status = f"off: {target} changed after it was built"
            return False
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        detail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        _status = f"off: building {SOURCE.name} with {cc} failed ({'; '.join(detail) or e})"
        logger.info("could not build %s (%s); linear layers use PyTorch's kernels", SOURCE.name, e)
        return False
    _status = str(target)
    p, n, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for name, extra in (("linear_f32", [i, p, n]), ("linear_bf16", [])):  # float32: GELU, residual
        fn = getattr(lib, name)
        fn.argtypes = [p, n, n, p, n, n, p, p, n, i] + extra
        fn.restype = i
        fn = getattr(lib, name + "_n")
        fn.argtypes = [p, n, n, i, p, p, p, n, p, n, i] + extra
        fn.restype = i
    for name in ("encoder_f32", "encoder_bf16"):
        getattr(lib, name).argtypes = [p, n, n, n, i, n, i, p, p, p, p, p, i, p, i]
        getattr(lib, name).restype = i
    _amx = bool(lib.has_amx()) and lib.amx_init() == 0
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
    """Whether the bfloat16 kernels run here (AMX built and granted by Linux)."""
    return available() and _amx


def describe() -> str:
    """One line for ``pretrained env``: which kernels are built and where, or why there are none
    (builds them on the first call)."""
    if not available():
        return _status
    return "float32 (AVX-512)" + (" and bfloat16 (AMX)" if _amx else "") + f", in {_status}"
