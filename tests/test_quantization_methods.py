"""GPTQ and AWQ as algorithms: GPTQ's Cholesky/lazy-batch form against a naive Optimal Brain
Quantization loop written here with explicit inverses; both beating plain round-to-nearest on the
same groups on held-out inputs (layer and model); AWQ's folding leaves the float model unchanged;
``quantize_model`` -> save -> load round trips in each layout; ``pretrained quantize``."""

import copy
from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM
from pretrained.cli import main
from pretrained.errors import UnsupportedOptionError
from pretrained.quantization import GroupQuantLinear
from pretrained.quantization.awq import fold_scales, search_scales
from pretrained.quantization.gptq import HessianAccumulator, gptq_quantize
from pretrained.quantization.quantize import quantize_model

MODELS = Path(__file__).parent / "fixtures" / "models"
TINY_GGUF = MODELS / "gguf-tiny" / "llama-bpe.gguf"


def rtn_reference(w: torch.Tensor, bits: int, gs: int) -> torch.Tensor:
    """Plain min-max round-to-nearest in groups of ``gs`` columns, written out here."""
    maxq = 2 ** bits - 1
    out = torch.empty_like(w)
    for a in range(0, w.shape[1], gs):
        part = w[:, a:a + gs]
        lo, hi = part.min(1, keepdim=True).values.clamp(max=0), part.max(1, keepdim=True).values.clamp(min=0)
        scale = ((hi - lo) / maxq).half().float()
        zero = torch.round(-lo / scale)
        out[:, a:a + gs] = scale * (torch.clamp(torch.round(part / scale) + zero, 0, maxq) - zero)
    return out


def correlated_inputs(n: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=torch.Generator().manual_seed(99)) / dim ** 0.5
    loud = torch.ones(dim)
    loud[:3] = 10.0   # a few loud channels, as trained transformers have
    return (torch.randn(n, dim, generator=gen) @ (torch.eye(dim) + mix)) * loud


def dequant(q, zeros, scales, g_idx):
    g = g_idx.long()
    return (q.float() - zeros[g].t().float()) * scales[g].t().float()


def test_gptq_equals_a_naive_obq_loop():
    """One grid for the whole row (group_size -1, so the grid does not depend on the order of
    updates): GPTQ's codes equal the textbook loop -- quantize column i, spread its error over
    the remaining columns with the inverse Hessian of the remaining columns, drop column i."""
    torch.manual_seed(0)
    out, n = 6, 24
    w = torch.randn(out, n)
    x = correlated_inputs(200, n, seed=1)
    acc = HessianAccumulator(n)
    acc.add(x)
    h = acc.hessian().double()
    damp = 0.01 * h.diag().mean()
    h_d = h + damp * torch.eye(n, dtype=torch.float64)
    q, zeros, scales, g_idx = gptq_quantize(w, acc.hessian(), bits=3, group_size=-1, damp_percent=0.01, block_size=5)
    s, z = scales[0].double(), zeros[0].double()
    ww = w.double().clone()
    naive = torch.empty(out, n, dtype=torch.long)
    for i in range(n):
        rest = list(range(i, n))
        hinv = torch.linalg.inv(h_d[rest][:, rest])
        col = ww[:, i]
        qi = torch.clamp(torch.round(col / s) + z, 0, 7)
        naive[:, i] = qi.long()
        err = (col - s * (qi - z)) / hinv[0, 0]
        ww[:, rest] -= err.unsqueeze(1) * hinv[0].unsqueeze(0)
    assert (q.long() == naive).float().mean() >= 0.97   # float32 vs float64: a rare flip at a tie
    assert torch.equal(g_idx, torch.zeros(n, dtype=torch.int32))


@pytest.mark.parametrize("desc_act", [False, True])
def test_gptq_beats_round_to_nearest_on_held_out_inputs(desc_act):
    torch.manual_seed(0)
    w = torch.randn(64, 128) * 0.05
    acc = HessianAccumulator(128)
    acc.add(correlated_inputs(2048, 128, seed=1))
    q, zeros, scales, g_idx = gptq_quantize(w, acc.hessian(), bits=4, group_size=32, desc_act=desc_act)
    held = correlated_inputs(1024, 128, seed=2)
    err_gptq = ((held @ (w - dequant(q, zeros, scales, g_idx)).t()) ** 2).mean()
    err_rtn = ((held @ (w - rtn_reference(w, 4, 32)).t()) ** 2).mean()
    assert err_gptq < 0.7 * err_rtn
    if desc_act:   # each group holds group_size columns, in the order GPTQ visited them
        assert sorted(torch.bincount(g_idx.long()).tolist()) == [32] * 4


def test_awq_scales_beat_round_to_nearest_and_fold_exactly():
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(128)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(128))
        norm.weight[:4] *= 12   # loud channels
    lin = torch.nn.Linear(128, 64, bias=False)
    calib, held = torch.randn(2048, 128), torch.randn(1024, 128)
    y_float = lin(norm(held)).detach()
    err_rtn = ((norm(held) @ (lin.weight - rtn_reference(lin.weight.detach(), 4, 32)).t()) ** 2).mean()
    s = search_scales(norm(calib).detach(), [lin.weight.detach()], bits=4, group_size=32)
    folded_norm, folded = copy.deepcopy(norm), copy.deepcopy(lin)
    fold_scales(folded_norm, [folded], s)
    assert torch.allclose(folded(folded_norm(held)), y_float, atol=1e-4)   # the float function is unchanged
    xq = folded_norm(held).detach()
    err_awq = ((xq @ (folded.weight - rtn_reference(folded.weight.detach(), 4, 32)).t()) ** 2).mean()
    assert err_awq < 0.8 * err_rtn


@pytest.fixture(scope="module")
def loud_llama():
    model = AutoModelForCausalLM.from_pretrained(MODELS / "llama-gqa", torch_dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:   # loud channels, as trained LLMs have
            layer.input_layernorm.weight[:4] *= 8
            layer.post_attention_layernorm.weight[-4:] *= 8
    calib = torch.randint(0, model.config.vocab_size, (16, 32), generator=torch.Generator().manual_seed(1))
    held = torch.randint(0, model.config.vocab_size, (8, 32), generator=torch.Generator().manual_seed(2))
    return model, calib, held


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_gptq_and_awq_beat_round_to_nearest_on_a_model(loud_llama):
    base, calib, held = loud_llama
    ref = logits(base, held)
    err = {}
    for method in ("rtn", "gptq", "awq"):
        m = copy.deepcopy(base)
        quantize_model(m, calib, method=method, bits=4, group_size=16)
        err[method] = float(((logits(m, held) - ref) ** 2).mean())
    assert err["gptq"] < 0.85 * err["rtn"] and err["awq"] < 0.85 * err["rtn"], err


@pytest.mark.parametrize("method,kw", [("gptq", dict(fmt="gptq")), ("gptq", dict(fmt="gptq_v2", desc_act=True)),
                                       ("gptq", dict(fmt="gptq", sym=True, bits=3)), ("awq", dict(fmt="gemm")),
                                       ("awq", dict(fmt="gemv", group_size=32))])
def test_written_layouts_load_back(loud_llama, tmp_path, method, kw):
    base, calib, held = loud_llama
    if kw.get("group_size") == 32:   # GEMV takes groups of 32, 64 or >= 128: a wider model
        base = AutoModelForCausalLM.from_pretrained(MODELS / "bnb-llama-float", torch_dtype=torch.float32)
        calib, held = calib % base.config.vocab_size, held % base.config.vocab_size
    m = copy.deepcopy(base)
    kw = {"bits": 4, "group_size": 16, **kw}
    quantize_model(m, calib, method=method, **kw)
    want = logits(m, held)          # the plain math on the codes just made
    m.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.float32)
    assert again.quantization_method == method
    assert again.config.quantization_config["group_size"] == kw["group_size"]
    assert (logits(again, held) - want).abs().max() < 1e-4   # through the backend's int4 op where it applies


def test_quantize_command(tmp_path, capsys):
    text = tmp_path / "calib.txt"
    text.write_text(Path("/usr/share/common-licenses/Apache-2.0").read_text()[:6000] if
                    Path("/usr/share/common-licenses/Apache-2.0").exists() else "The quick brown fox. " * 400)
    out = tmp_path / "q"
    code = main(["quantize", str(TINY_GGUF), "--method", "awq", "--group-size", "32", "--samples", "4",
                 "--seq-len", "32", "--calibration", str(text), "--out", str(out)])
    assert code == 0 and "awq 4-bit, group_size 32, format gemm" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.quantization_method == "awq"
    quantized = [n for n, m in model.named_modules() if isinstance(m, GroupQuantLinear)]
    assert len(quantized) == 7 * model.config.num_hidden_layers   # every linear of every block
    ids = torch.tensor([[1, 2, 3]])
    assert model.generate(ids, max_new_tokens=2, do_sample=False).shape == (1, 5)
    # a group size AWQ cannot use is named, not ignored
    code = main(["quantize", str(TINY_GGUF), "--method", "awq", "--group-size", "48", "--samples", "2",
                 "--seq-len", "16", "--calibration", str(text), "--out", str(tmp_path / "bad")])
    assert code == 1 and "divisible by group_size" in capsys.readouterr().err


def test_already_quantized_layers_are_refused():
    model = AutoModelForCausalLM.from_pretrained(TINY_GGUF.parent, gguf_file=TINY_GGUF.name)   # GGUF blocks
    with pytest.raises(UnsupportedOptionError, match="already quantized.*dequantize=True"):
        quantize_model(model, torch.tensor([[1, 2, 3, 4]]), method="gptq", group_size=32)
