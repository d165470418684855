"""Concurrent builds of the C kernels into one kernels folder (pretrained/backends/build.py): two
processes building, publishing, pruning and loading the same variant at the same time must all
load an intact library. Each process runs its own copy of the build code with the compiler
replaced by a copy of the real library (plus bytes of its own, so the two processes' builds
differ, as two compilers' or two source versions' would) and with the windows where the race
bites widened by sleeps: between a library's rename and its stamp's, and between a check and
the load. Before the folder lock, a load here failed on most rounds ("changed after it was
built", or a library pruned by the other process between its check and its load)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pretrained.backends import build

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import ctypes, os, pathlib, shutil, sys, time
    from pretrained.backends import build

    me, real, variant, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    build.PACKAGED = pathlib.Path("/nonexistent")
    state = {"round": 0}
    # one library name per round, the same in both processes: both build it, and each prunes
    # the other's when it is a round ahead or behind (as a source change makes other names old)
    build.library_name = lambda name: f"rows_kernel-{name}-{state['round']:016x}.so"

    def compile_by_copy(cmd, **kw):   # the real library, then bytes of this process's own
        out = cmd[cmd.index("-o") + 1]
        shutil.copy(real, out)
        with open(out, "ab") as f:
            f.write(me.encode() * 64)
        time.sleep(0.002)
    build.subprocess.run = compile_by_copy

    replace = os.replace
    def slow_replace(src, dst):   # a library renamed into place, its stamp a little later
        replace(src, dst)
        if str(dst).endswith(".so"):
            time.sleep(0.01)
    build.os.replace = slow_replace

    cdll = ctypes.CDLL
    def slow_cdll(path, *a, **kw):   # a little time between the check and the load
        time.sleep(0.01)
        return cdll(path, *a, **kw)
    build.ctypes.CDLL = slow_cdll

    failed = 0
    for i in range(rounds):
        state["round"] = i
        try:
            lib = build.load_variant(variant)
            assert lib.variant_name().decode() == variant
        except (build.KernelsUnavailable, AssertionError) as e:
            failed += 1
            print("round", i, "failed:", e, file=sys.stderr)
    print(failed)
""")


@pytest.mark.skipif(not build.available(), reason="no kernels on this machine: " + build.describe())
def test_two_processes_building_one_variant_at_once_both_load_it(tmp_path):
    real = build.library().path
    variant = build.library().variant_name().decode()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("PRETRAINED_NO_KERNELS", None)
    env.pop("PRETRAINED_KERNELS", None)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, tag, str(real), variant, "25"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split() == ["0"], err
    folder = tmp_path / "pretrained" / "kernels"
    # what is left: the last round's library with its own stamp, no temporary folders
    assert [p.name for p in folder.glob("rows_kernel-*.so")] == [f"rows_kernel-{variant}-{24:016x}.so"]
    assert build.intact(folder / f"rows_kernel-{variant}-{24:016x}.so")
    assert not [p for p in folder.iterdir() if p.is_dir()]
