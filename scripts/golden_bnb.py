"""Goldens for 8-bit and 4-bit weights (bitsandbytes' formats), from the reference (transformers
5.25 + bitsandbytes 0.50.2 on the CPU; ``/work/refvenv/bin/pip install bitsandbytes``):

    /work/refvenv/bin/python scripts/golden_bnb.py

1. Number formats: bitsandbytes' own ``quantize_4bit`` (nf4/fp4, with and without double
   quantization), ``dequantize_4bit`` and ``int8_vectorwise_quant`` on a random (37, 70) weight
   (2590 values: a short last block) -> tests/fixtures/goldens/bnb/formats.safetensors.
2. Models: a tiny float Llama made here (tests/fixtures/models/bnb-llama-float: width 64, one
   layer, weights N(0, 0.08)) and the gpt2-tiny fixture (Conv1D) loaded by the reference with each
   BitsAndBytesConfig of CASES on the CPU: its logits on fixed ids (bnb/models.safetensors), the
   sha256 of every tensor it saves (bnb.json), and for two cases the saved folder itself
   (tests/fixtures/models/bnb-llama-int8, bnb-llama-nf4-dq: what our loader must read).
3. Round trip: the same float fixture quantized on load by OUR library, saved by OUR
   save_pretrained, read back by the reference: its logits against its own (max abs diff in
   bnb.json; 0 when our files hold the reference's bytes). Our logits on the reference's saved
   folders are recorded too (int8: LLM.int8(), our default as the reference's; our weight-only
   way, set_llm_int8(model, False), recorded against it for comparison).
4. Training numbers of 8-bit layers (case llama-int8): bitsandbytes on the CPU computes a module
   in training mode weight-only (its MatMul8bitFp: float input times the dequantized weight) and
   LLM.int8() in eval mode, the input's gradient through the dequantized weight either way
   (MatMul8bitLt's backward): logits in training mode and the gradients of the input embeddings
   (of the summed logits, weighted by a fixed random tensor) in both modes.

On a CPU with AVX512-BF16, bitsandbytes' Linear4bit repacks its weight on its first inference
call for a CPU kernel that keeps the absmax in bfloat16 (and saves it so afterwards: the folders are
saved before any forward). Its 4-bit logits are recorded twice: as it runs here (``.logits``, with
that bfloat16 absmax) and with the repacking off (``.logits_dequant``: float32 dequantization, as
on every other CPU; what ours must equal). The repacking fails for layers narrower than a block
(gpt2-tiny's width 32), and there bitsandbytes' CPU dequantization reads blocks per row while its
quantization made them over the flattened weight (its pure-PyTorch dequantization agrees with
ours), so for NARROW cases only the saved bytes and the round trip are goldens, not the logits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "bnb"
sys.path.insert(0, str(ROOT))   # for the round trip through our own library

LLAMA = "bnb-llama-float"
# name -> (float fixture, BitsAndBytesConfig kwargs)
CASES = {
    "llama-int8": (LLAMA, dict(load_in_8bit=True)),
    "llama-int8-t1": (LLAMA, dict(load_in_8bit=True, llm_int8_threshold=1.0)),
    "llama-int8-skip": (LLAMA, dict(load_in_8bit=True, llm_int8_skip_modules=["mlp"])),
    "llama-int8-bf16": (LLAMA, dict(load_in_8bit=True)),
    "llama-nf4": (LLAMA, dict(load_in_4bit=True, bnb_4bit_quant_type="nf4")),
    "llama-nf4-dq": (LLAMA, dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)),
    "llama-fp4": (LLAMA, dict(load_in_4bit=True, bnb_4bit_quant_type="fp4")),
    "llama-fp4-dq-bf16": (LLAMA, dict(load_in_4bit=True, bnb_4bit_quant_type="fp4",
                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="bfloat16")),
    "gpt2-int8": ("gpt2-tiny", dict(load_in_8bit=True)),
    "gpt2-nf4-dq": ("gpt2-tiny", dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)),
}
SAVED = {"llama-int8": "bnb-llama-int8", "llama-nf4-dq": "bnb-llama-nf4-dq"}
NARROW = {"gpt2-nf4-dq"}
DTYPES = {"llama-int8-bf16": torch.bfloat16}   # the model's float parts in bfloat16


def make_llama() -> Path:
    """The float fixture: a one-layer Llama 64 wide (4-bit blocks of 64 fit its rows)."""
    folder = FIX / "models" / LLAMA
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.08 * torch.randn_like(p))
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    return folder


def ids() -> torch.Tensor:
    return torch.randint(3, 64, (2, 7), generator=torch.Generator().manual_seed(13))


def formats() -> dict[str, torch.Tensor]:
    import bitsandbytes.functional as F

    w = torch.randn(37, 70, generator=torch.Generator().manual_seed(5)) * 0.05
    out = {"weight": w}
    for qt in ("nf4", "fp4"):
        for dq in (False, True):
            packed, st = F.quantize_4bit(w, blocksize=64, quant_type=qt, compress_statistics=dq)
            tag = f"{qt}{'.dq' if dq else ''}"
            out[f"{tag}.packed"] = packed
            out[f"{tag}.absmax"] = st.absmax
            out[f"{tag}.dequant"] = F.dequantize_4bit(packed, st)
            if dq:
                out[f"{tag}.nested_absmax"] = st.state2.absmax
                out[f"{tag}.nested_quant_map"] = st.state2.code
                out[f"{tag}.offset"] = st.offset.reshape(1).float()
    cb, scb, _ = F.int8_vectorwise_quant(w.to(torch.float16))
    out["int8.CB"], out["int8.SCB"] = cb, scb
    return {k: v.contiguous() for k, v in out.items()}


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def no_repacking(model, narrow: bool):
    for m in model.modules():
        if narrow and hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    return model.eval()


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=x).logits.float().clone()


def training(model, x: torch.Tensor, case: str) -> dict[str, torch.Tensor]:
    """Training-mode logits and the input embeddings' gradients in eval and training mode (part 4)."""
    out = {}
    weights = torch.randn(*x.shape, model.config.vocab_size, generator=torch.Generator().manual_seed(17))
    out[f"{case}.grad_weights"] = weights
    for mode in ("eval", "train"):
        model.train(mode == "train")
        embeds = model.get_input_embeddings()(x).detach().requires_grad_()
        logits = model(inputs_embeds=embeds).logits
        (logits.float() * weights).sum().backward()
        out[f"{case}.{mode}.embeds_grad"] = embeds.grad.clone()
        if mode == "train":
            out[f"{case}.train.logits"] = logits.detach().float().clone()
    model.eval()
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(formats(), str(OUT / "formats.safetensors"))
    import pretrained.auto as ours
    from pretrained.quantization import BitsAndBytesConfig, set_llm_int8

    make_llama()
    x = ids()
    goldens, meta = {"input_ids": x}, {"cases": {}}
    for case, (fixture, kw) in CASES.items():
        folder, narrow, dtype = FIX / "models" / fixture, case in NARROW, DTYPES.get(case, "auto")

        def load(path, off, **q):
            return no_repacking(transformers.AutoModelForCausalLM.from_pretrained(
                path, device_map="cpu", dtype=dtype, **q), off)

        qc = dict(quantization_config=transformers.BitsAndBytesConfig(**kw))
        ref = load(folder, narrow, **qc)
        with tempfile.TemporaryDirectory() as tmp:
            ref.save_pretrained(tmp)
            saved = load_file(str(Path(tmp) / "model.safetensors"))
            qconf = json.loads((Path(tmp) / "config.json").read_text())["quantization_config"]
            if case in SAVED:
                dest = FIX / "models" / SAVED[case]
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(tmp, dest)
        expected = goldens[f"{case}.logits"] = logits_of(ref, x)
        if kw.get("load_in_4bit") and not narrow:
            expected = goldens[f"{case}.logits_dequant"] = logits_of(load(folder, True, **qc), x)
        entry = {"fixture": fixture, "kwargs": kw, "quantization_config": qconf, "narrow": narrow,
                 "logits_are_golden": not narrow,
                 "dtype": str(dtype).replace("torch.", ""),
                 "tensors": {k: [str(t.dtype).replace("torch.", ""), list(t.shape), sha(t)]
                             for k, t in sorted(saved.items())}}
        # ours: quantize the float fixture on load, save, and the reference reads it back
        model = ours.AutoModelForCausalLM.from_pretrained(folder, quantization_config=BitsAndBytesConfig(**kw),
                                                          torch_dtype=dtype)
        entry["ours_max_abs_diff"] = (logits_of(model, x) - expected).abs().max().item()   # our default
        if kw.get("load_in_8bit"):   # weight-only int8 on request, against LLM.int8(): recorded
            set_llm_int8(model, False)
            entry["ours_weight_only_max_abs_diff"] = (logits_of(model, x) - expected).abs().max().item()
            set_llm_int8(model, True)
        if case == "llama-int8":
            goldens.update(training(ref, x, case))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            entry["roundtrip_max_abs_diff"] = (logits_of(load(tmp, narrow), x) - goldens[f"{case}.logits"]).abs().max().item()
            ours_saved = load_file(str(Path(tmp) / "model.safetensors"))
            entry["roundtrip_tensors_equal"] = sorted(ours_saved) == sorted(saved) and all(
                torch.equal(ours_saved[k], saved[k]) for k in saved)
        if case in SAVED:
            mine = ours.AutoModelForCausalLM.from_pretrained(FIX / "models" / SAVED[case])
            entry["ours_on_reference_save_max_abs_diff"] = (logits_of(mine, x) - expected).abs().max().item()
        meta["cases"][case] = entry
        print(f"{case:20s} ours {entry['ours_max_abs_diff']:.2e}  round trip {entry['roundtrip_max_abs_diff']:.2e}"
              f"  tensors equal {entry['roundtrip_tensors_equal']}")
    save_file({k: v.contiguous() for k, v in goldens.items()}, str(OUT / "models.safetensors"))
    meta["versions"] = {"transformers": transformers.__version__,
                        "bitsandbytes": __import__("bitsandbytes").__version__, "torch": torch.__version__}
    (OUT / "bnb.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
