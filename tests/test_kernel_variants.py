"""The instruction-set variants of the C kernels (pretrained/backends/build.py): each variant this
CPU can run, loaded directly, against torch (float32 and bfloat16 linears with tails, fused
GELU / residual, several weights in one call, the encoder stacks); which variant is chosen for
which CPU and PRETRAINED_KERNELS; and the build's trust checks (world-writable folders, damaged
libraries, PRETRAINED_CACHE), the loads in subprocesses so a crash fails a test, not pytest."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pretrained.backends import build
from pretrained.backends import rows as rk

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=list(build.VARIANTS))
def variant(request, monkeypatch):
    """That variant's library in place of the chosen one (rows.py calls whatever build._lib is)."""
    name = request.param
    if name not in build.runnable():
        pytest.skip(f"this CPU cannot run {name}")
    try:
        lib = build.load_variant(name)
    except build.KernelsUnavailable as e:
        pytest.skip(str(e))
    monkeypatch.setattr(build, "_lib", lib)
    monkeypatch.setattr(build, "_bf16", lib.bf16)
    monkeypatch.setattr(build, "_tiles", lib.tiles)
    return name


def _f32_close(y, x, w, b) -> bool:
    """Within 1e-5 of F.linear relative to the size of the sum's terms (|x| |w| + |b|: another
    summation order than BLAS's moves a result by a few float32 ulps of that, whatever the sign
    cancels)."""
    scale = x.abs() @ w.abs().T + (0 if b is None else b.abs())
    return bool(((y - F.linear(x, w, b)).abs() <= 1e-5 * scale + 1e-30).all())


def test_float32_linears_equal_f_linear_on_every_variant(variant):
    """Rows 1-16, in features under one vector, at and past AVX2's 8 and AVX-512's 16, past the
    k-chunk of 384; out features below the block of 4, with tails, over one chunk of 128."""
    torch.manual_seed(0)
    for rows in range(1, 17):
        for n in (1, 3, 4, 5, 17, 64, 130):
            for k in (1, 7, 8, 9, 16, 31, 37, 384, 385, 800):
                x, w = torch.randn(rows, k), torch.randn(n, k)
                for b in (None, torch.randn(n)):
                    y = rk.rows_linear(x, w, b)
                    assert y is not None and y.shape == (rows, n), (variant, rows, n, k)
                    assert _f32_close(y, x, w, b), (variant, rows, n, k, b is None)
    # the check sees a dropped bias or a row summed from a wrong k
    x, w, b = torch.randn(3, 40), torch.randn(5, 40), torch.randn(5)
    assert not _f32_close(F.linear(x, w), x, w, b)
    assert not _f32_close(F.linear(x[:, :39], w[:, :39], b), x, w, b)


def test_float32_fused_gelu_residual_and_many_on_every_variant(variant):
    torch.manual_seed(1)
    x, w, b = torch.randn(2, 7, 100), torch.randn(37, 100), torch.randn(37)
    got = rk.rows_linear(x, w, b, gelu=True)
    torch.testing.assert_close(got, F.gelu(F.linear(x, w, b)), atol=1e-5, rtol=1e-5)
    xs = torch.linspace(-12, 12, 4000).view(-1, 1)
    got = torch.cat([rk.rows_linear(xs[i:i + 16], torch.ones(1, 1), None, gelu=True)
                     for i in range(0, 4000, 16)])
    torch.testing.assert_close(got, F.gelu(xs), atol=2e-6, rtol=1e-6)
    special = torch.tensor([[0.0], [float("inf")], [float("nan")], [-200.0], [200.0]])
    got = rk.rows_linear(special, torch.ones(1, 1), None, gelu=True).view(-1)
    assert got[0] == 0 and got[1] == float("inf") and got[2].isnan() and got[3] == 0 and got[4] == 200
    for r in (torch.randn(2, 7, 37), torch.randn(2, 7, 74)[..., ::2]):
        torch.testing.assert_close(rk.rows_linear(x, w, b, residual=r), F.linear(x, w, b) + r,
                                   atol=1e-4, rtol=1e-5)
    ws = [torch.randn(n, 100) for n in (64, 13, 64, 7)]
    bs = [torch.randn(64), None, torch.randn(64), torch.randn(7)]
    y = rk.rows_linear_many(x, ws, bs)
    assert torch.equal(y, torch.cat([rk.rows_linear(x, w, b) for w, b in zip(ws, bs)], -1))
    torch.testing.assert_close(y, torch.cat([F.linear(x, w, b) for w, b in zip(ws, bs)], -1),
                               atol=1e-4, rtol=1e-5)
    assert rk.rows_linear_many(x, ws, bs[:3]) is None      # a bias per weight, or no call


def _ulp(v: torch.Tensor) -> torch.Tensor:
    """One bfloat16 ulp at each value of v (float32 in, float32 out)."""
    e = torch.floor(torch.log2(v.abs().clamp(min=2.0 ** -126)))
    return torch.pow(2.0, e - 7)


def _bf16_check(y, x, w, b) -> float:
    """y within one bfloat16 ulp of F.linear, or (where the sum cancels to far below its terms)
    within what another float32 summation order may move it; returns the fraction bit-equal."""
    want = F.linear(x, w, b)
    terms = x.float().abs() @ w.float().abs().T + (0 if b is None else b.float().abs())
    tol = torch.maximum(_ulp(want.float()), 2.0 ** -20 * terms)
    diff = (y.float() - want.float()).abs()
    assert bool((diff <= tol).all()), (diff - tol).max().item()
    return (y == want).float().mean().item()


def test_bfloat16_linears_on_every_variant(variant):
    """vdpbf16ps (avx512bf16) or AMX tiles plus vdpbf16ps (amx) for any in features (masked
    tails, K % 32 only decides between tiles and vdpbf16ps); None (PyTorch's) on avx2 / avx512."""
    torch.manual_seed(2)
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    w = torch.randn(48, 64, dtype=torch.bfloat16)
    if not build._bf16:
        assert variant in ("avx2", "avx512")
        assert rk.rows_linear(x, w, None) is None and rk.rows_linear_many(x, [w], [None]) is None
        return
    equal, count = 0.0, 0
    for rows in (1, 2, 3, 5, 6, 7, 12, 16):
        for n, k in [(1, 1), (3, 7), (5, 31), (16, 32), (17, 33), (48, 64), (10, 100), (130, 96),
                     (1001, 64), (768, 768), (64, 800), (40, 3072)]:
            x = torch.randn(rows, k, dtype=torch.bfloat16)
            w = (torch.randn(n, k) * 0.05).to(torch.bfloat16)
            for b in (None, torch.randn(n, dtype=torch.bfloat16)):
                y = rk.rows_linear(x, w, b)
                assert y is not None and y.dtype == torch.bfloat16 and y.shape == (rows, n)
                equal += _bf16_check(y, x, w, b)
                count += 1
    print(f"{variant}: bfloat16 equal to F.linear bit for bit in {equal / count:.4%} (mean over shapes)")
    assert equal / count >= 0.99
    x, w, b = torch.randn(3, 40, dtype=torch.bfloat16), torch.randn(5, 40, dtype=torch.bfloat16), \
        torch.randn(5, dtype=torch.bfloat16)
    with pytest.raises(AssertionError):       # the check sees a dropped bias
        _bf16_check(F.linear(x, w), x, w, b)
    ws = [torch.randn(n, 96, dtype=torch.bfloat16) for n in (96, 17, 33)]
    bs = [torch.randn(96, dtype=torch.bfloat16), None, torch.randn(33, dtype=torch.bfloat16)]
    x = torch.randn(2, 5, 96, dtype=torch.bfloat16)
    y = rk.rows_linear_many(x, ws, bs)
    assert torch.equal(y, torch.cat([rk.rows_linear(x, w, b) for w, b in zip(ws, bs)], -1))


def _encoder_weights(hidden, inter, layers, dtype):
    torch.manual_seed(3)
    ws, bs, ns, eps = [], [], [], []
    for _ in range(layers):
        for out, inp in ((hidden, hidden),) * 4 + ((inter, hidden), (hidden, inter)):
            ws.append((torch.randn(out, inp) * inp ** -0.5).to(dtype))
            bs.append((torch.randn(out) * 0.1).to(dtype))
        for _ in range(2):
            ns += [(1 + 0.1 * torch.randn(hidden)).to(dtype), (0.1 * torch.randn(hidden)).to(dtype)]
        eps += [1e-12, 1e-5]
    return ws, bs, ns, eps


def _encoder_reference(x, ws, bs, ns, eps, heads, keep):
    """The post-LayerNorm layers as the modules compute them (F.linear, SDPA, LayerNorm, exact
    GELU), in x's dtype."""
    b, t, h = x.shape
    split = lambda v: v.view(b, t, heads, h // heads).transpose(1, 2)  # noqa: E731
    for i in range(len(ws) // 6):
        w, bias, n, e = ws[6 * i:6 * i + 6], bs[6 * i:6 * i + 6], ns[4 * i:4 * i + 4], eps[2 * i:2 * i + 2]
        q, k, v = (split(F.linear(x, w[j], bias[j])) for j in range(3))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(b, t, h)
        x = F.layer_norm(F.linear(ctx, w[3], bias[3]) + x, (h,), n[0], n[1], e[0])
        up = F.gelu(F.linear(x, w[4], bias[4]))
        x = F.layer_norm(F.linear(up, w[5], bias[5]) + x, (h,), n[2], n[3], e[1])
    return x


@pytest.mark.parametrize("shape,hidden,heads", [((1, 16), 64, 4), ((2, 8), 96, 3), ((3, 5), 128, 2)])
def test_encoder_stacks_on_every_variant(variant, shape, hidden, heads):
    """float32 on every variant within 1e-5 of the modules' ops; bfloat16 on the variants with
    it: the modules' answer but for an ulp where a float32 sum's order differs before a rounding
    (carried through the layers), and as far from the float32 answer as the modules are."""
    b, t = shape
    keep = torch.ones(b, 1, 1, t, dtype=torch.bool)
    if b > 1:
        keep[0, ..., -2:] = False       # right-padded
        keep[1, ..., :1] = False        # left-padded
    ws, bs, ns, eps = _encoder_weights(hidden, 2 * hidden, 2, torch.float32)
    x = torch.randn(b, t, hidden)
    exact = _encoder_reference(x, ws, bs, ns, eps, heads, keep)
    got = rk.encoder_stack(x, rk.EncoderWeights(ws, bs, ns, eps, heads), keep)
    assert got is not None and (got - exact).abs().max().item() <= 1e-5
    first = rk.encoder_stack(x, rk.EncoderWeights(ws, bs, ns, eps, heads), keep, first_only=True)
    assert (first - exact[:, :1]).abs().max().item() <= 1e-5
    cast = lambda vs: [v.to(torch.bfloat16) for v in vs]  # noqa: E731
    wb, bb, nb, xb = cast(ws), cast(bs), cast(ns), x.to(torch.bfloat16)
    got = rk.encoder_stack(xb, rk.EncoderWeights(wb, bb, nb, eps, heads), keep)
    if not build._bf16:
        assert got is None
        return
    plain = _encoder_reference(xb, wb, bb, nb, eps, heads, keep).float()
    got = got.float()
    ulp = 2.0 ** -7 * exact.abs().clamp(min=1)
    assert ((got - plain).abs() <= 4 * ulp).float().mean() >= 0.99
    assert (got - exact).abs().max() <= 1.5 * (plain - exact).abs().max() + 1e-2
    bb[5] = torch.zeros_like(bb[5])      # a dropped bias shows
    dropped = rk.encoder_stack(xb, rk.EncoderWeights(wb, bb, nb, eps, heads), keep).float()
    assert (dropped - got).abs().max() > 4 * (got - plain).abs().max()


def test_c_refuses_what_it_cannot_take(variant):
    """Rows outside 1-16, no weights or more than 8, empty outputs, heads that do not divide the
    width: -1 from C, before any memory is touched (rows.py never sends them; C stays safe alone)."""
    lib = build._lib
    x, y = torch.zeros(17, 8), torch.zeros(17, 8)
    w = torch.zeros(8, 8)
    ws = (ctypes.c_void_p * 9)(*[w.data_ptr()] * 9)
    bs = (ctypes.c_void_p * 9)()
    ns = (ctypes.c_long * 9)(*[8] * 9)
    for fn in (lib.linear_f32, lib.linear_bf16):
        post = [0, None, 0] if fn is lib.linear_f32 else []
        for rows, n, k in ((0, 8, 8), (17, 8, 8), (4, 0, 8), (4, 8, 0)):
            assert fn(x.data_ptr(), rows, 8, w.data_ptr(), n, k, None, y.data_ptr(), 8, 1, *post) == -1
    for count in (0, 9):
        assert lib.linear_f32_n(x.data_ptr(), 4, 8, count, ws, bs, ns, 8, y.data_ptr(), 72, 1,
                                0, None, 0) == -1
    ptrs = (ctypes.c_void_p * 6)()
    for b, t, h, heads in ((1, 17, 8, 2), (0, 4, 8, 2), (1, 4, 8, 3)):
        assert lib.encoder_f32(x.data_ptr(), b, t, h, heads, 8, 1, ptrs, ptrs, ptrs, None, None,
                               0, y.data_ptr(), 1) == -1


# ---- which variant, and why -----------------------------------------------------------------

ZEN4 = "fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni"
SPR = ZEN4 + " amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize("flags,forced,want,why", [
    (SPR, "", "amx", "amx_tile"),
    (ZEN4, "", "avx512bf16", "no AMX"),
    ("avx2 fma avx512f avx512dq avx512bw avx512vl", "", "avx512", "no avx512_bf16"),
    ("avx2 fma", "", "avx2", "no AVX-512"),
    ("sse2 avx", "", None, "AVX2"),
    (SPR, "avx512bf16", "avx512bf16", "forced"),
    (SPR, "AVX2", "avx2", "forced"),
    (ZEN4, "amx", None, "lacks amx_bf16, amx_tile"),
    (SPR, "off", None, "PRETRAINED_KERNELS=off"),
    (SPR, "sse", None, "not one of"),
])
def test_the_best_variant_the_cpu_runs_is_chosen(flags, forced, want, why, monkeypatch):
    monkeypatch.setattr(build, "cpu_flags", lambda: flags.split())
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build.platform, "system", lambda: "Linux")
    monkeypatch.delenv("PRETRAINED_NO_KERNELS", raising=False)
    monkeypatch.setenv("PRETRAINED_KERNELS", forced)
    name, reason = build.choose()
    assert name == want and why in reason
    assert (name is None) == reason.startswith("off: ")
    monkeypatch.setenv("PRETRAINED_NO_KERNELS", "1")
    assert build.choose() == (None, "off: PRETRAINED_NO_KERNELS is set")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    """code in a fresh interpreter on this tree, with env on top of ours (a crash there is a
    failed test here)."""
    # the install-time libraries (setup.py) stay out of it unless a test names a folder for them
    full = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_PACKAGED_DIR": "/nonexistent", **env}
    for key in ("PRETRAINED_NO_KERNELS", "PRETRAINED_KERNELS"):
        if key not in env:
            full.pop(key, None)
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


LOAD = textwrap.dedent("""
    import os, pathlib, torch, torch.nn.functional as F
    from pretrained.backends import build, rows
    build.PACKAGED = pathlib.Path(os.environ["TEST_PACKAGED_DIR"])
    print(build.available(), build.describe(), sep="\\n")
    maps = open("/proc/self/maps").read()
    print(any(".so" in line and "rows_kernel" in line for line in maps.splitlines()))
    if build.available():
        x, w = torch.randn(3, 40), torch.randn(9, 40)
        torch.testing.assert_close(rows.rows_linear(x, w, None), F.linear(x, w))
""")


@pytest.mark.skipif(not build.runnable(), reason="no variant runs on this machine")
def test_forced_variants_load_in_a_fresh_process(tmp_path):
    for name in build.runnable():
        out = _run(LOAD, PRETRAINED_KERNELS=name, XDG_CACHE_HOME=str(tmp_path))
        assert out.returncode == 0, out.stderr
        loaded, why, mapped = out.stdout.splitlines()
        if loaded == "False":
            pytest.skip(why)
        assert why.startswith(f"{name} (forced by PRETRAINED_KERNELS)") and mapped == "True"


@pytest.mark.skipif(not build.available(), reason="no kernels on this machine: " + build.describe())
def test_a_library_planted_in_a_world_writable_folder_is_not_loaded(tmp_path):
    shared = tmp_path / "shared"
    folder = shared / "pretrained" / "kernels"
    folder.mkdir(parents=True)
    lib = build.library().path
    shutil.copy(lib, folder / lib.name)            # the very name the build would load
    shutil.copy(lib.with_suffix(".sha256"), folder / lib.with_suffix(".sha256").name)
    for path in (shared, shared / "pretrained", folder):
        path.chmod(0o777)
    out = _run(LOAD, XDG_CACHE_HOME=str(shared))
    assert out.returncode == 0, out.stderr
    loaded, why, mapped = out.stdout.splitlines()
    assert loaded == "False" and mapped == "False"
    assert why.startswith("off: ") and "writable by other users" in why


@pytest.mark.skipif(not build.available(), reason="no kernels on this machine: " + build.describe())
def test_a_truncated_library_is_rebuilt_not_loaded(tmp_path):
    out = _run(LOAD, XDG_CACHE_HOME=str(tmp_path))
    assert out.returncode == 0 and out.stdout.startswith("True"), out.stderr
    [lib] = (tmp_path / "pretrained" / "kernels").glob("*.so")
    whole = lib.read_bytes()
    lib.write_bytes(whole[: len(whole) // 3])      # as a full disk or a killed copy leaves it
    assert not build.intact(lib)
    out = _run(LOAD, XDG_CACHE_HOME=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "True" and build.intact(lib)
    assert lib.read_bytes() == whole


def test_pretrained_cache_does_not_move_the_kernels(tmp_path):
    data, xdg = tmp_path / "data", tmp_path / "xdg"
    data.mkdir()
    code = LOAD + "print(build.kernels_dir())"
    out = _run(code, PRETRAINED_CACHE=str(data), XDG_CACHE_HOME=str(xdg))
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.splitlines()[-1]) == xdg / "pretrained" / "kernels"
    assert not list(data.rglob("*.so"))


@pytest.mark.skipif(not build.available(), reason="no kernels on this machine: " + build.describe())
def test_install_time_libraries_are_used_only_when_intact_and_private(tmp_path):
    """setup.py builds the variants into the package; they are loaded from there only with the
    right stamp and from a folder no other user can write, else built in the user's cache."""
    packaged, cache = tmp_path / "lib", tmp_path / "cache"
    packaged.mkdir()
    lib = build.library().path
    name = build.library_name(build.choose()[0])
    shutil.copy(lib, packaged / name)
    shutil.copy(lib.with_suffix(".sha256"), packaged / (name[:-3] + ".sha256"))
    code = LOAD + "print(build.library().path.parent)"
    env = dict(TEST_PACKAGED_DIR=str(packaged), XDG_CACHE_HOME=str(cache))
    out = _run(code, **env)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.splitlines()[-1]) == packaged and not list(cache.rglob("*.so"))
    (packaged / (name[:-3] + ".sha256")).write_text("0" * 64)   # damaged: not loaded
    out = _run(code, **env)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.splitlines()[-1]) == cache / "pretrained" / "kernels"
    shutil.copy(lib.with_suffix(".sha256"), packaged / (name[:-3] + ".sha256"))
    packaged.chmod(0o777)                                       # writable by others: not loaded
    out = _run(code, **env)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.splitlines()[-1]) == cache / "pretrained" / "kernels"


def test_building_again_removes_libraries_of_older_sources(tmp_path, monkeypatch):
    """Each source change builds new files; the old ones of that variant go, others stay."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(build, "VARIANTS", {"avx2": build.VARIANTS["avx2"]})
    stale = tmp_path / "rows_kernel-avx2-0123456789abcdef.so"
    other = tmp_path / "rows_kernel-avx512-0123456789abcdef.so"
    for path in (stale, stale.with_suffix(".sha256"), other):
        path.write_text("old")
    assert build.build_all(tmp_path) == ["avx2"]
    assert build.intact(tmp_path / build.library_name("avx2"))
    assert not stale.exists() and not stale.with_suffix(".sha256").exists() and other.exists()
