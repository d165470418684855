"""Goldens for GPTQ and AWQ checkpoints: tiny packed folders and the reference's logits for the
weights they stand for.

    /work/refvenv/bin/pip download autoawq==0.2.7.post3 --no-deps -d /tmp/autoawq
    (cd /tmp/autoawq && unzip -o -q autoawq-0.2.7.post3-py3-none-any.whl)
    AUTOAWQ_DIR=/tmp/autoawq /work/refvenv/bin/python scripts/golden_gptq_awq.py

Why this shape: the reference (transformers 5.25) loads GPTQ and AWQ folders only through
``gptqmodel`` (+ ``optimum`` for GPTQ), and gptqmodel 7.7 is a source distribution of CUDA/C++
extensions with a long list of dependencies that does not install in the reference venv. So:

1. codes: for each linear of the one-layer float Llama fixture (bnb-llama-float, its float parts
   rounded to float16 as GPTQ/AWQ checkpoints store them), integer codes, zeros and float16 scales
   made here by round-to-nearest in groups (symmetric or asymmetric; with act-order a random
   column order, each column's group in ``g_idx`` as GPTQ assigns it);
2. layouts: GPTQ packed here by a plain loop over Python integers transcribing the published
   layout (one little-endian bit stream per output column along the input, zeros along the
   output, v1 storing zero - 1); AWQ packed by AutoAWQ's OWN writers,
   ``WQLinear_GEMM.from_linear`` / ``WQLinear_GEMV.from_linear`` (pure PyTorch; the wheel is
   imported without its package __init__, which needs ``datasets``);
3. the golden: the reference's LlamaForCausalLM with each linear's weight set to
   ``(q - zero) * scale`` (float32), its logits on fixed ids.

Folders land in tests/fixtures/models/<case>/, logits and ids in
tests/fixtures/goldens/gptq_awq/.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "gptq_awq"
FLOAT = FIX / "models" / "bnb-llama-float"
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# case -> quantization_config of the folder (+ "_sym", "_act_order": how the codes are made here)
CASES = {
    "gptq-llama-4bit": dict(quant_method="gptq", bits=4, group_size=32, desc_act=False, sym=True,
                            checkpoint_format="gptq"),
    "gptq-llama-4bit-actorder-v2": dict(quant_method="gptq", bits=4, group_size=32, desc_act=True, sym=False,
                                        checkpoint_format="gptq_v2"),
    "gptq-llama-3bit": dict(quant_method="gptq", bits=3, group_size=32, desc_act=False, sym=False,
                            checkpoint_format="gptq"),
    "gptq-llama-2bit-onegroup": dict(quant_method="gptq", bits=2, group_size=-1, desc_act=False, sym=True,
                                     checkpoint_format="gptq"),
    "gptq-llama-8bit-actorder": dict(quant_method="gptq", bits=8, group_size=64, desc_act=True, sym=False,
                                     checkpoint_format="gptq"),
    "awq-llama-gemm": dict(quant_method="awq", bits=4, group_size=32, zero_point=True, version="gemm"),
    "awq-llama-gemv": dict(quant_method="awq", bits=4, group_size=32, zero_point=True, version="gemv"),
}


def import_autoawq():
    """AutoAWQ's linear modules, without running awq/__init__.py (it imports datasets)."""
    base = Path(os.environ.get("AUTOAWQ_DIR", "/tmp/autoawq"))
    if not (base / "awq" / "modules" / "linear" / "gemm.py").exists():
        return None
    for name in ("awq", "awq.modules", "awq.modules.linear", "awq.utils"):
        mod = types.ModuleType(name)
        mod.__path__ = [str(base / name.replace(".", "/"))]
        sys.modules[name] = mod
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.modules.linear.gemv import WQLinear_GEMV
    return WQLinear_GEMM, WQLinear_GEMV


def make_codes(w: torch.Tensor, bits: int, group_size: int, sym: bool, act_order: bool, v1: bool,
               gen: torch.Generator):
    """Round-to-nearest codes in groups: (q (out, in), zeros (G, out), scales fp16 (G, out), g_idx)."""
    out, n_in = w.shape
    gs = n_in if group_size == -1 else group_size
    maxq = 2 ** bits - 1
    if act_order:   # GPTQ's act-order: columns visited in some order, groups assigned along it
        perm = torch.randperm(n_in, generator=gen)
        g_idx = torch.empty(n_in, dtype=torch.int32)
        g_idx[perm] = (torch.arange(n_in) // gs).to(torch.int32)
    else:
        g_idx = (torch.arange(n_in) // gs).to(torch.int32)
    groups = -(-n_in // gs)
    scales = torch.empty(groups, out, dtype=torch.float16)
    zeros = torch.empty(groups, out, dtype=torch.int32)
    q = torch.empty(out, n_in, dtype=torch.int64)
    for g in range(groups):
        cols = (g_idx == g).nonzero().view(-1)
        sub = w[:, cols]
        if sym:
            amax = sub.abs().amax(dim=1).clamp(min=1e-5)
            s = (2 * amax / maxq).half()
            z = torch.full((out,), (maxq + 1) // 2, dtype=torch.int32)
        else:
            lo, hi = sub.amin(dim=1).clamp(max=0), sub.amax(dim=1).clamp(min=0)
            s = ((hi - lo).clamp(min=1e-5) / maxq).half()
            z = torch.round(-lo / s.float()).to(torch.int32).clamp(1 if v1 else 0, maxq)
        scales[g], zeros[g] = s, z
        q[:, cols] = torch.clamp(torch.round(sub / s.float().unsqueeze(1)) + z.unsqueeze(1), 0, maxq).long()
    return q, zeros, scales, g_idx


def dequant(q, zeros, scales, g_idx) -> torch.Tensor:
    g = g_idx.long()
    return (q.float() - zeros[g].t().float()) * scales[g].t().float()


def to_int32(word: int) -> int:
    return word - (1 << 32) if word >= 1 << 31 else word


def stream_words(values: list[int], bits: int) -> list[int]:
    """Little-endian bit stream of ``values``, cut into signed 32-bit words."""
    stream = 0
    for i, v in enumerate(values):
        stream |= (int(v) & ((1 << bits) - 1)) << (bits * i)
    n_words = -(-len(values) * bits // 32)
    return [to_int32((stream >> (32 * k)) & 0xFFFFFFFF) for k in range(n_words)]


def pack_gptq_loop(q, zeros, bits: int, v1: bool):
    out, n_in = q.shape
    qweight = torch.tensor([stream_words(q[o].tolist(), bits) for o in range(out)], dtype=torch.int32).t()
    z = (zeros - 1) if v1 else zeros
    qzeros = torch.tensor([stream_words(z[g].tolist(), bits) for g in range(z.shape[0])], dtype=torch.int32)
    return qweight.contiguous(), qzeros


def main() -> None:
    writers = import_autoawq()
    if writers is None:
        print("golden_gptq_awq: skipped, AutoAWQ not found (set AUTOAWQ_DIR; see this script's docstring)")
        return
    WQLinear_GEMM, WQLinear_GEMV = writers
    OUT.mkdir(parents=True, exist_ok=True)
    base = transformers.LlamaForCausalLM.from_pretrained(FLOAT, dtype=torch.float32)
    with torch.no_grad():
        for p in base.parameters():
            p.copy_(p.half().float())   # the float parts as a float16 checkpoint holds them
    ids = torch.tensor([[1, 5, 9, 14, 22, 31, 40, 47, 55, 63, 2, 7]])
    goldens = {"input_ids": ids}
    meta = {"cases": {}}
    for case, qc in CASES.items():
        gen = torch.Generator().manual_seed(0)
        model = transformers.LlamaForCausalLM.from_pretrained(FLOAT, dtype=torch.float32)
        model.load_state_dict(base.state_dict())
        tensors = {k: v.half() for k, v in model.state_dict().items()}
        is_gptq = qc["quant_method"] == "gptq"
        v1 = is_gptq and qc["checkpoint_format"] == "gptq"
        sym = qc.get("sym", False)
        for layer_name in LINEARS:
            key = f"model.layers.0.{layer_name}"
            lin = model.get_submodule(key)
            q, zeros, scales, g_idx = make_codes(lin.weight.detach(), qc["bits"], qc["group_size"], sym,
                                                 qc.get("desc_act", False), v1, gen)
            w = dequant(q, zeros, scales, g_idx)
            with torch.no_grad():
                lin.weight.copy_(w)
            del tensors[key + ".weight"]
            if is_gptq:
                qweight, qzeros = pack_gptq_loop(q, zeros, qc["bits"], v1)
                tensors.update({key + ".qweight": qweight, key + ".qzeros": qzeros, key + ".scales": scales,
                                key + ".g_idx": g_idx})
            else:
                cls = WQLinear_GEMM if qc["version"] == "gemm" else WQLinear_GEMV
                # AutoAWQ's own writer: GEMM takes scales/zeros (groups, out), GEMV (out, groups)
                lay = (lambda t: t) if qc["version"] == "gemm" else (lambda t: t.t().contiguous())
                awq = cls.from_linear(lin, 4, qc["group_size"], scales=lay(scales.float()),
                                      zeros=lay(zeros.float()))
                tensors.update({key + ".qweight": awq.qweight.contiguous(),
                                key + ".qzeros": awq.qzeros.contiguous(), key + ".scales": awq.scales.contiguous()})
        with torch.no_grad():
            goldens[f"{case}.logits"] = model(ids).logits.float()
        folder = FIX / "models" / case
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        config = json.loads((FLOAT / "config.json").read_text())
        config.update(dtype="float16", quantization_config=qc)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
        meta["cases"][case] = {"quantization_config": qc, "made_by": "this script's loop packer" if is_gptq
                               else f"AutoAWQ 0.2.7.post3 WQLinear_{qc['version'].upper()}.from_linear"}
        print(case, "logits max", float(goldens[f"{case}.logits"].abs().max()))
    save_file(goldens, str(OUT / "gptq_awq.safetensors"))
    meta["reference"] = f"transformers {transformers.__version__}, torch {torch.__version__}"
    (OUT / "gptq_awq.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
