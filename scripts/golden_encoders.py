"""Goldens for the encoder architectures: DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v2.

Run by scripts/make_goldens.py (area "encoders") with the reference installed:

    /work/refvenv/bin/python scripts/make_goldens.py encoders

For every fixture (an architecture, a shape, a head) the reference builds a tiny random model,
moves its weights away from their init values, saves it to tests/fixtures/models/<name>/, loads
it back and records, in tests/fixtures/goldens/encoders/<name>.safetensors:
  input.*        input_ids, attention_mask (right- and left-padded rows), token_type_ids where
                 the model has segment embeddings
  output.*       last_hidden_state / pooler_output / logits / start_logits / end_logits
  bf16.*         the same in bfloat16 (base models only)
  case.<c>.*     the labels of loss case <c>
and in tests/fixtures/goldens/encoders/encoders.json the class, the losses (per problem_type
for sequence classification) and the round trip: our save_pretrained read back by the reference
(max abs diff of its outputs against the goldens). Goldens come from transformers 5.x.
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
OUT = FIX / "goldens" / "encoders"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

VOCAB = 128
B, T = 4, 9

# arch -> (reference class prefix, reference config class, segment embeddings?)
ARCHS = {
    "distilbert": ("DistilBert", "DistilBertConfig"),
    "roberta": ("Roberta", "RobertaConfig"),
    "xlm-roberta": ("XLMRoberta", "XLMRobertaConfig"),
    "electra": ("Electra", "ElectraConfig"),
    "deberta-v2": ("DebertaV2", "DebertaV2Config"),
}

_V3 = dict(relative_attention=True, position_buckets=8, max_relative_positions=-1,
           norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
           position_biased_input=False, type_vocab_size=0)
SHAPES = {
    "distilbert": {
        "tiny": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=24),
        "small": dict(dim=48, n_layers=1, n_heads=6, hidden_dim=40, max_position_embeddings=20,
                      activation="relu", sinusoidal_pos_embds=True),
        "mini": dict(dim=32, n_layers=1, n_heads=2, hidden_dim=24, max_position_embeddings=16),
        # widths the bfloat16 AMX path takes (multiples of 32)
        "wide": dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=16),
    },
    "roberta": {
        "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=24, type_vocab_size=1),
        "small": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=6,
                      intermediate_size=40, max_position_embeddings=20, type_vocab_size=2,
                      hidden_act="gelu_new", layer_norm_eps=1e-5),
        "mini": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=24, max_position_embeddings=16, type_vocab_size=1),
        "wide": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=24, type_vocab_size=1),
    },
    "xlm-roberta": {
        "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=24, type_vocab_size=1,
                     layer_norm_eps=1e-5),
        "mini": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=24, max_position_embeddings=16, type_vocab_size=1),
    },
    "electra": {
        "tiny": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=24),
        "small": dict(embedding_size=48, hidden_size=48, num_hidden_layers=1, num_attention_heads=6,
                      intermediate_size=40, max_position_embeddings=20, hidden_act="gelu_new",
                      type_vocab_size=3),
        "mini": dict(embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=24, max_position_embeddings=16),
    },
    "deberta-v2": {
        # v3 (deberta-v3-*): log buckets, shared keys, LayerNorm'd relative table, no absolute
        # positions, no segments.
        "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                     max_position_embeddings=24, **_V3),
        # v2 (deberta-v2-xlarge-like): no buckets but a short clamp (5 < T), own position
        # projections, "c2p|p2c" as a string, absolute positions + segments, conv layer.
        "small": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=6, intermediate_size=40,
                      max_position_embeddings=20, relative_attention=True, position_buckets=-1,
                      max_relative_positions=5, share_att_key=False, pos_att_type="c2p|p2c",
                      position_biased_input=True, type_vocab_size=2, conv_kernel_size=3,
                      conv_act="gelu", norm_rel_ebd="none"),
        # c2p only, small buckets, embedding_size < hidden_size (embed_proj), grouped conv.
        "c2p": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                    max_position_embeddings=16, embedding_size=16, relative_attention=True,
                    position_buckets=4, max_relative_positions=16, share_att_key=False,
                    pos_att_type=["c2p"], position_biased_input=False, type_vocab_size=0,
                    conv_kernel_size=5, conv_groups=2, norm_rel_ebd="layer_norm"),
        # p2c only, shared keys, relative span = max_position_embeddings.
        "p2c": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                    max_position_embeddings=12, relative_attention=True, share_att_key=True,
                    pos_att_type=["p2c"], position_biased_input=True, type_vocab_size=0),
        # no relative attention: absolute positions and segments only (DeBERTa's masking rules).
        "abs": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                    max_position_embeddings=16, relative_attention=False, type_vocab_size=2),
        "mini": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                     max_position_embeddings=16, **_V3),
        "mini-nl": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=16, legacy=False, **_V3),
    },
}

HEAD_CLASS = {"model": "Model", "seqcls": "ForSequenceClassification",
              "regression": "ForSequenceClassification", "tokcls": "ForTokenClassification",
              "qa": "ForQuestionAnswering", "mlm": "ForMaskedLM", "pretraining": "ForPreTraining"}
HEAD_EXTRA = {"seqcls": {"num_labels": 3}, "regression": {"num_labels": 1},
              "tokcls": {"num_labels": 5, "id2label": {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC",
                                                       4: "I-LOC"}}}
AUTO = {"Model": "AutoModel", "ForSequenceClassification": "AutoModelForSequenceClassification",
        "ForTokenClassification": "AutoModelForTokenClassification",
        "ForQuestionAnswering": "AutoModelForQuestionAnswering", "ForMaskedLM": "AutoModelForMaskedLM",
        "ForPreTraining": "AutoModelForPreTraining"}

# Regression with num_labels=1 has a fixture only where the loss code is the model's own
# (DeBERTa); elsewhere the "regression" problem_type is a loss case of the seqcls fixture.
HEADS = ("seqcls", "tokcls", "qa", "mlm")
FIXTURES = (
    [("distilbert", s, "model") for s in ("tiny", "small", "wide")]
    + [("distilbert", "mini", h) for h in HEADS]
    + [("roberta", s, "model") for s in ("tiny", "small", "wide")]
    + [("roberta", "mini", h) for h in HEADS]
    + [("xlm-roberta", "tiny", "model")]
    + [("xlm-roberta", "mini", h) for h in ("seqcls", "mlm")]
    + [("electra", s, "model") for s in ("tiny", "small")]
    + [("electra", "mini", h) for h in (*HEADS, "pretraining")]
    + [("deberta-v2", s, "model") for s in ("tiny", "small", "c2p", "p2c", "abs")]
    + [("deberta-v2", "mini", h) for h in (*HEADS, "regression")]
    + [("deberta-v2", "mini-nl", "mlm")]
)

OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")


def fixture_name(arch: str, shape: str, head: str) -> str:
    return f"{arch}-{shape}-{head}"


def make_inputs(config, seed: int) -> dict[str, torch.Tensor]:
    """Rows: full, right-padded by 3, right-padded by 5, left-padded by 2."""
    g = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, -3:] = 0
    mask[2, -5:] = 0
    mask[3, :2] = 0
    ids[mask == 0] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    if getattr(config, "type_vocab_size", 0) > 1:
        types = torch.zeros(B, T, dtype=torch.long)
        types[:, 5:] = config.type_vocab_size - 1
        types[mask == 0] = 0
        inputs["token_type_ids"] = types
    return inputs


def loss_cases(arch: str, head: str, config, inputs, seed: int) -> dict[str, dict]:
    """case name -> {"problem_type": ..., "labels": {name: tensor}}"""
    g = torch.Generator().manual_seed(seed + 1)
    mask = inputs["attention_mask"]
    if head == "seqcls":
        n = config.num_labels
        cases = {
            "inferred_single": {"problem_type": None,
                                "labels": {"labels": torch.randint(0, n, (B,), generator=g)}},
            "single_label_classification": {
                "problem_type": "single_label_classification",
                "labels": {"labels": torch.randint(0, n, (B,), generator=g)}},
            "multi_label_classification": {
                "problem_type": "multi_label_classification",
                "labels": {"labels": torch.randint(0, 2, (B, n), generator=g).float()}},
            "regression": {"problem_type": "regression",
                           "labels": {"labels": torch.randn(B, n, generator=g)}},
        }
        # problem_type unset with float (B, n) labels: multi-label BCE for most models; DeBERTa
        # takes them as a soft target distribution.
        soft = torch.rand(B, n, generator=g)
        cases["inferred_float"] = {"problem_type": None,
                                   "labels": {"labels": soft / soft.sum(-1, keepdim=True)}}
        if arch == "deberta-v2":  # DeBERTa skips labels < 0 when problem_type is unset
            cases["inferred_single_ignored"] = {"problem_type": None,
                                                "labels": {"labels": torch.tensor([2, -1, 0, 1])}}
        return cases
    if head == "regression":
        return {"inferred_regression": {"problem_type": None,
                                        "labels": {"labels": torch.randn(B, generator=g)}}}
    if head == "tokcls":
        y = torch.randint(0, config.num_labels, (B, T), generator=g)
        y[mask == 0] = -100
        return {"token": {"problem_type": None, "labels": {"labels": y}}}
    if head == "qa":
        return {"span": {"problem_type": None, "labels": {
            "start_positions": torch.tensor([1, 2, 30, 4]), "end_positions": torch.tensor([3, 2, 4, 40])}}}
    if head == "mlm":
        y = inputs["input_ids"].clone()
        y[mask == 0] = -100
        return {"mlm": {"problem_type": None, "labels": {"labels": y}}}
    if head == "pretraining":
        return {"replaced": {"problem_type": None,
                             "labels": {"labels": torch.randint(0, 2, (B, T), generator=g)}}}
    return {}


def outputs_of(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS
            if getattr(out, k, None) is not None}


def ref_load(cls, folder, **kw):
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise SystemExit(f"{folder}: the reference did not load its own save cleanly: {info}")
    return model.eval()


def build(arch: str, shape: str, head: str) -> dict:
    name = fixture_name(arch, shape, head)
    prefix, config_cls = ARCHS[arch]
    cls_name = prefix + HEAD_CLASS[head]
    cls = getattr(transformers, cls_name)
    config = getattr(transformers, config_cls)(vocab_size=VOCAB, **SHAPES[arch][shape],
                                               **HEAD_EXTRA.get(head, {}))
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():  # away from init values (LayerNorm = 1/0, zero biases, ...)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)

    loaded = ref_load(cls, folder)
    inputs = make_inputs(loaded.config, seed)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    expected = outputs_of(loaded, inputs)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    if head == "model":  # the reference's bfloat16 run, for a looser-tolerance check
        bf = ref_load(cls, folder, dtype=torch.bfloat16)
        tensors.update({f"bf16.{k}": v.float() for k, v in outputs_of(bf, inputs).items()})
    meta = {"class": cls_name, "arch": arch, "shape": shape, "head": head,
            "files": sorted(p.name for p in folder.iterdir()), "losses": {}}
    for case, spec in loss_cases(arch, head, loaded.config, inputs, seed).items():
        kw = {} if spec["problem_type"] is None else {"problem_type": spec["problem_type"]}
        fresh = ref_load(cls, folder, **kw)  # problem_type may be set by the first call
        with torch.no_grad():
            loss = fresh(**inputs, **spec["labels"]).loss
        meta["losses"][case] = {"problem_type": spec["problem_type"], "loss": float(loss),
                                "labels": sorted(spec["labels"])}
        tensors.update({f"case.{case}.{k}": v for k, v in spec["labels"].items()})
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, cls_name, folder, inputs, expected)
    return meta


def roundtrip(name: str, cls_name: str, folder: Path, inputs, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference (with
    its Auto class where one exists, so our config.json's model_type is what picks the class)."""
    import pretrained.auto as ours

    suffix = max((v for v in set(HEAD_CLASS.values()) if cls_name.endswith(v)), key=len)
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    our_cls = next(c for c in ours.model_module(model_type).MODEL_CLASSES.values()
                   if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        ref_cls = getattr(transformers, AUTO[suffix])
        back = ref_load(ref_cls, tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        out = outputs_of(back, inputs)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for arch, shape, head in FIXTURES:
        name = fixture_name(arch, shape, head)
        meta["models"][name] = build(arch, shape, head)
        print(f"{name:32s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "encoders.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
