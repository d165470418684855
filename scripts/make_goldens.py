"""Build the tiny test checkpoints and record the reference library's outputs on them.

The only place (with benchmarks/) that imports the reference library, `transformers`. Run it in a
development venv that has it:

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 transformers==5.24.0
    /tmp/ref/bin/python scripts/make_goldens.py              # everything
    /tmp/ref/bin/python scripts/make_goldens.py models tokenizers   # some areas

This file makes the BERT/GPT-2 goldens; each other area has scripts/golden_<area>.py, run from
here (see AREAS).

Writes, under tests/fixtures/:
  models/<name>/           config.json + weights saved by the reference (random weights, real
                           architecture), in several formats (safetensors, sharded, .bin)
  goldens/<name>.safetensors   inputs and the reference's outputs for them
  goldens/models.json          per model: class, outputs recorded, losses, and the round trip
                               (our save_pretrained read back by the reference: max abs diff)
Goldens for the question-answering, summarization and translation pipelines (later issues)
come from transformers==4.57.6, the last release that has those pipelines.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

VOCAB = 128

BERT_SHAPES = {
    "tiny": dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64),
    "small": dict(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
                  intermediate_size=64, max_position_embeddings=32, hidden_act="gelu_new",
                  layer_norm_eps=1e-5, type_vocab_size=3),
}
GPT2_SHAPES = {
    "tiny": dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                 bos_token_id=1, eos_token_id=2),
    "small": dict(vocab_size=VOCAB, n_embd=48, n_layer=3, n_head=3, n_positions=32, n_inner=80,
                  activation_function="gelu", scale_attn_by_inverse_layer_idx=True,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0),
}

# name -> (reference class, shape table, shape, extra config, save kwargs)
MODELS = {
    "bert-tiny": ("BertModel", BERT_SHAPES, "tiny", {}, {}),
    "bert-small": ("BertModel", BERT_SHAPES, "small", {}, {"max_shard_size": "60KB"}),
    "bert-tiny-seqcls": ("BertForSequenceClassification", BERT_SHAPES, "tiny", {"num_labels": 3}, {}),
    "bert-tiny-multilabel": ("BertForSequenceClassification", BERT_SHAPES, "tiny",
                             {"num_labels": 4, "problem_type": "multi_label_classification"}, {}),
    "bert-tiny-regression": ("BertForSequenceClassification", BERT_SHAPES, "tiny", {"num_labels": 1}, {}),
    "bert-tiny-tokcls": ("BertForTokenClassification", BERT_SHAPES, "tiny",
                         {"num_labels": 5, "id2label": {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}},
                         {}),
    "bert-tiny-qa": ("BertForQuestionAnswering", BERT_SHAPES, "tiny", {}, {}),
    "bert-tiny-mlm": ("BertForMaskedLM", BERT_SHAPES, "tiny", {}, {}),
    "bert-small-mlm": ("BertForMaskedLM", BERT_SHAPES, "small", {}, {}),
    "gpt2-tiny": ("GPT2LMHeadModel", GPT2_SHAPES, "tiny", {}, {}),
    "gpt2-small": ("GPT2LMHeadModel", GPT2_SHAPES, "small", {}, {"max_shard_size": "50KB"}),
    "gpt2-tiny-base": ("GPT2Model", GPT2_SHAPES, "tiny", {}, {}),
    "gpt2-small-seqcls": ("GPT2ForSequenceClassification", GPT2_SHAPES, "small", {"num_labels": 3}, {}),
}
# Saved as pytorch_model.bin (pickle) instead of safetensors, to test that path.
PICKLED = {"bert-tiny-tokcls", "gpt2-tiny-base"}


def make_inputs(arch: str, shape: dict, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, t = 3, 9
    ids = torch.randint(3, VOCAB, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    if arch == "gpt2":
        mask[1, :3] = 0  # left padding, as for generation
        mask[2, -2:] = 0  # right padding
        ids[1, :3] = shape.get("pad_token_id") or 0
        ids[2, -2:] = shape.get("pad_token_id") or 0
        return {"input_ids": ids, "attention_mask": mask}
    mask[1, -3:] = 0
    mask[2, -5:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, 5:] = 1
    types[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def labels_for(cls_name: str, config, inputs, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    b, t = inputs["input_ids"].shape
    if cls_name.endswith("SequenceClassification"):
        n = config.num_labels
        if config.problem_type == "multi_label_classification":
            return {"labels": torch.randint(0, 2, (b, n), generator=g).float()}
        if n == 1:
            return {"labels": torch.randn(b, generator=g)}
        return {"labels": torch.randint(0, n, (b,), generator=g)}
    if cls_name.endswith("TokenClassification"):
        y = torch.randint(0, config.num_labels, (b, t), generator=g)
        y[inputs["attention_mask"] == 0] = -100
        return {"labels": y}
    if cls_name.endswith("QuestionAnswering"):
        return {"start_positions": torch.tensor([1, 2, 30]), "end_positions": torch.tensor([3, 2, 4])}
    if cls_name.endswith(("MaskedLM", "LMHeadModel")):
        y = inputs["input_ids"].clone()
        y[inputs["attention_mask"] == 0] = -100
        return {"labels": y}
    return {}


OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")


def outputs_of(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS
            if getattr(out, k, None) is not None}


def build(name: str, spec) -> dict:
    cls_name, table, shape_name, extra, save_kw = spec
    arch = "gpt2" if cls_name.startswith("GPT2") else "bert"
    shape = table[shape_name]
    config_cls = transformers.GPT2Config if arch == "gpt2" else transformers.BertConfig
    config = config_cls(**shape, **extra)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():  # move weights away from the init values (LayerNorm = 1/0 etc.)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, **save_kw)
    if name in PICKLED:  # the reference no longer writes .bin; write the classic format by hand
        from safetensors.torch import load_file

        torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()

    # The outputs of the model as the reference loads it back from disk.
    loaded = getattr(transformers, cls_name).from_pretrained(folder).eval()
    inputs = make_inputs(arch, shape, seed)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    tensors.update({f"output.{k}": v for k, v in outputs_of(loaded, inputs).items()})
    labels = labels_for(cls_name, config, inputs, seed)
    meta = {"class": cls_name, "arch": arch, "shape": shape_name, "files": sorted(
        p.name for p in folder.iterdir())}
    if labels:
        tensors.update({f"label.{k}": v for k, v in labels.items()})
        with torch.no_grad():
            meta["loss"] = float(loaded(**inputs, **labels).loss)
    for k, v in labels.items():
        tensors[f"label.{k}"] = v
    # bfloat16: the reference's own outputs, for a looser-tolerance check.
    bf = getattr(transformers, cls_name).from_pretrained(folder, dtype=torch.bfloat16).eval()
    tensors.update({f"bf16.{k}": v.float() for k, v in outputs_of(bf, inputs).items()})
    (FIX / "goldens").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(FIX / "goldens" / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, cls_name, folder, inputs, tensors)
    return meta


def roundtrip(name, cls_name, folder, inputs, tensors) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference."""
    import pretrained.auto as ours

    head = {"Model": "AutoModel", "LMHeadModel": "AutoModelForCausalLM",
            "ForMaskedLM": "AutoModelForMaskedLM",
            "ForSequenceClassification": "AutoModelForSequenceClassification",
            "ForTokenClassification": "AutoModelForTokenClassification",
            "ForQuestionAnswering": "AutoModelForQuestionAnswering"}
    auto = next(v for k, v in head.items() if cls_name.endswith(k) and
                (k != "Model" or cls_name in ("BertModel", "GPT2Model")))
    model = getattr(ours, auto).from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = getattr(transformers, auto).from_pretrained(tmp).eval()
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        out = outputs_of(back, inputs)
    return max(float((out[k] - tensors[f"output.{k}"]).abs().max()) for k in out)


def make_models() -> None:
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name, spec in MODELS.items():
        meta["models"][name] = build(name, spec)
        print(f"{name:24s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (FIX / "goldens" / "models.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


# Areas with their own goldens module in scripts/ (golden_<area>.py, each with main()).
# (audio: asr_ctc and audio_classification read speech_encoders' checkpoints; whisper_tokenizer
# and asr_pipeline the fetched real Whisper models, asr_pipeline also alsa-utils and espeak-ng;
# bnb needs bitsandbytes in the reference venv, gptq_awq AutoAWQ's wheel unpacked at AUTOAWQ_DIR)
AREAS = ["tokenizers", "seq2seq_tokenizers", "decoders", "generation", "gguf", "encoders", "pipelines", "training", "finetuned", "t5", "bnb", "gptq_awq",
         "seq2seq_models", "speech_encoders", "whisper", "audio_features", "ast", "asr_ctc", "audio_classification",
         "whisper_tokenizer", "asr_pipeline", "segformer", "image_segmentation", "yolos", "resnet", "swin", "detection", "detr", "mask2former", "detr_segmentation",
         "detr_timm"]


def main(argv: list[str]) -> None:
    import importlib.util

    what = argv or ["models", *AREAS]
    if "models" in what:
        make_models()
    sys.path.insert(0, str(ROOT / "scripts"))
    for area in AREAS:
        if area in what and importlib.util.find_spec(f"golden_{area}") is not None:
            print(f"--- {area}")
            importlib.import_module(f"golden_{area}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
