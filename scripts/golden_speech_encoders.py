"""Goldens for the speech encoders (Wav2Vec2, HuBERT) and the CTC tokenizer, from the reference.

Run with the reference installed (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_speech_encoders.py
    (or: scripts/make_goldens.py speech_encoders)

For every fixture the reference builds a tiny random model (hidden 32, 2 layers, 4 heads, three
convolutions (16, 16, 16) with kernels (10, 3, 3) and strides (5, 2, 2): 320 samples per frame
... 20 per frame here), moves its weights away from their init values, saves it to
tests/fixtures/models/<name>/, loads it back and records in
tests/fixtures/goldens/speech/<name>.safetensors:
  input.*        input_values (B=3: full, right-padded by 400 and by 900 samples, zeros there)
                 and attention_mask
  output.*       last_hidden_state / logits (and extract_features, hidden.<i> for bare models)
  masked.*       the bare model's last_hidden_state with given mask_time_indices
  bf16.*         the same in bfloat16 (bare models)
  case.<c>.*     labels of loss case <c>
and in speech.json the class, the losses and the round trip: our save_pretrained read back by
the reference (max abs diff of its outputs against the goldens). One fixture stores the
positional convolution under the legacy weight_g / weight_v names.

End to end: wav2vec2-tiny-ctc also holds the reference's tokenizer and feature extractor; the
reference's processor -> model -> argmax -> batch_decode (word offsets) on three raw waveforms
(saved as <name>-waves.npy) is recorded under "end_to_end".

The CTC tokenizer: tests/fixtures/tokenizers/wav2vec2_ctc{,_lower}/ saved by the reference's
Wav2Vec2CTCTokenizer, and tests/fixtures/goldens/speech/ctc_tokenizer.json: its decode /
batch_decode of id sequences (repeats, blanks, delimiters, specials; char and word offsets) and
its encoding of texts.
"""

from __future__ import annotations

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
OUT = FIX / "goldens" / "speech"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import ref_load  # noqa: E402

B, SAMPLES = 3, 1600
PAD = (0, 400, 900)   # right padding of each row, in samples

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32)
STABLE = dict(TINY, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
              num_conv_pos_embeddings=15, hidden_act="gelu_new")

# name -> (reference class, config class, config kwargs, head, legacy weight-norm keys)
FIXTURES = {
    "wav2vec2-tiny-model": ("Wav2Vec2Model", "Wav2Vec2Config", TINY, "model", False),
    "wav2vec2-stable-model": ("Wav2Vec2Model", "Wav2Vec2Config", STABLE, "model", False),
    "wav2vec2-tiny-ctc": ("Wav2Vec2ForCTC", "Wav2Vec2Config", TINY, "ctc", False),
    "wav2vec2-legacy-ctc": ("Wav2Vec2ForCTC", "Wav2Vec2Config", dict(TINY, ctc_loss_reduction="mean"),
                            "ctc", True),
    "wav2vec2-stable-ctc": ("Wav2Vec2ForCTC", "Wav2Vec2Config", STABLE, "ctc", False),
    "wav2vec2-tiny-seqcls": ("Wav2Vec2ForSequenceClassification", "Wav2Vec2Config",
                             dict(TINY, num_labels=3, classifier_proj_size=24), "seqcls", False),
    "wav2vec2-stable-seqcls-weighted": ("Wav2Vec2ForSequenceClassification", "Wav2Vec2Config",
                                        dict(STABLE, num_labels=4, classifier_proj_size=20,
                                             use_weighted_layer_sum=True), "seqcls", False),
    "wav2vec2-tiny-seqcls-weighted": ("Wav2Vec2ForSequenceClassification", "Wav2Vec2Config",
                                      dict(TINY, num_labels=3, use_weighted_layer_sum=True), "seqcls", False),
    "hubert-tiny-model": ("HubertModel", "HubertConfig", TINY, "model", False),
    "hubert-tiny-ctc": ("HubertForCTC", "HubertConfig", TINY, "ctc", False),
    "hubert-bn-ctc": ("HubertForCTC", "HubertConfig",
                      dict(TINY, conv_pos_batch_norm=True, feat_proj_layer_norm=False), "ctc", False),
    "hubert-stable-seqcls": ("HubertForSequenceClassification", "HubertConfig",
                             dict(STABLE, num_labels=3, classifier_proj_size=16), "seqcls", False),
}
AUTO = {"model": "AutoModel", "ctc": "AutoModelForCTC", "seqcls": "AutoModelForAudioClassification"}
OUTPUT_KEYS = ("last_hidden_state", "extract_features", "logits")


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, SAMPLES, generator=g) * 0.5
    mask = torch.ones(B, SAMPLES, dtype=torch.long)
    for row, pad in enumerate(PAD):
        if pad:
            mask[row, -pad:] = 0
    return {"input_values": x * mask, "attention_mask": mask}


def outputs_of(model, inputs, **kw) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs, **kw)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    if kw.get("output_hidden_states"):
        got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(head: str, config, seed: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed + 1)
    if head == "ctc":
        y = torch.randint(3, config.vocab_size, (B, 12), generator=g)
        ignored = y.clone()
        ignored[1, 8:] = -100
        ignored[2, 5:] = -100
        padded = y.clone()
        padded[1, 9:] = config.pad_token_id   # the blank id pads labels too (dropped)
        padded[2, 4:] = config.pad_token_id
        too_long = torch.randint(3, config.vocab_size, (B, 60), generator=g)   # > the frames of row 2
        return {
            "ignored": {"labels": ignored},
            "ignored_mean": {"labels": ignored, "config": {"ctc_loss_reduction": "mean"}},
            "padded_with_blank": {"labels": padded},
            "too_long": {"labels": too_long},
            "too_long_zero_infinity": {"labels": too_long, "config": {"ctc_zero_infinity": True}},
        }
    if head == "seqcls":
        return {"single": {"labels": torch.randint(0, config.num_labels, (B,), generator=g)}}
    return {}



def to_legacy(folder: Path) -> None:
    """Rewrite the saved weights with the positional convolution's pre-parametrization names."""
    path = folder / "model.safetensors"
    state = load_file(str(path))
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(path), metadata={"format": "pt"})


def build(name: str) -> dict:
    cls_name, config_cls, kwargs, head, legacy = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = getattr(transformers, config_cls)(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (norms = 1/0, zero biases, ...)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
        for n, b in model.named_buffers():
            if n.endswith(("running_mean", "running_var")):
                b.copy_(torch.rand_like(b) + (0.5 if n.endswith("var") else -0.5))
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    if legacy:
        to_legacy(folder)

    loaded = ref_load(cls, folder)
    inputs = make_inputs(seed)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    expected = outputs_of(loaded, inputs)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    if head == "model":
        hidden = outputs_of(loaded, inputs, output_hidden_states=True)
        tensors.update({f"output.{k}": v for k, v in hidden.items() if k.startswith("hidden.")})
        g = torch.Generator().manual_seed(seed + 2)
        frames = expected["last_hidden_state"].shape[1]
        mti = torch.rand(B, frames, generator=g) < 0.3
        tensors["masked.mask_time_indices"] = mti
        with torch.no_grad():
            tensors["masked.last_hidden_state"] = loaded(**inputs, mask_time_indices=mti).last_hidden_state
        bf = ref_load(cls, folder, dtype=torch.bfloat16)
        bf_inputs = dict(inputs, input_values=inputs["input_values"].to(torch.bfloat16))
        tensors.update({f"bf16.{k}": v.float() for k, v in outputs_of(bf, bf_inputs).items()})
    if head == "seqcls":   # hidden states of the head (the weighted sum reads them)
        hidden = outputs_of(loaded, inputs, output_hidden_states=True)
        assert torch.equal(hidden["logits"], expected["logits"])
    meta = {"class": cls_name, "head": head, "legacy_weight_norm_keys": legacy,
            "files": sorted(p.name for p in folder.iterdir()), "losses": {}}
    for case, spec in loss_cases(head, loaded.config, seed).items():
        fresh = ref_load(cls, folder, **spec.get("config", {}))
        with torch.no_grad():
            loss = fresh(**inputs, labels=spec["labels"]).loss
        meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {})}
        tensors[f"case.{case}.labels"] = spec["labels"].clone()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"], meta["roundtrip_keys"] = roundtrip(name, head, folder, inputs, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, inputs, expected) -> tuple[float, list[str]]:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    cls_name = FIXTURES[name][0]
    our_cls = next(c for c in ours.model_module(model_type).MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        keys = sorted(k for k in load_file(str(Path(tmp) / "model.safetensors")) if "pos_conv" in k)
        back = ref_load(getattr(transformers, AUTO[head]), tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        out = outputs_of(back, inputs)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out), keys


# --- the CTC tokenizer ------------------------------------------------------------------------
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L",
         "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]
IDS = {t: i for i, t in enumerate(VOCAB)}


def ids_of(spec: str) -> list[int]:
    """'_' = blank (<pad>), '|' = delimiter, '^' = <s>, '$' = </s>, '?' = <unk>."""
    alias = {"_": "<pad>", "^": "<s>", "$": "</s>", "?": "<unk>"}
    return [IDS[alias.get(c, c)] for c in spec]


DECODE_CASES = [
    "HH_EE_LL_LLOO||WWOO_RR_LDD",         # repeats, blanks between real doubles
    "__HEL_LO|_|WORLD__",                  # blanks at the ends, blank between delimiters
    "||HELLO||||WORLD|||",                  # delimiters at the ends and repeated
    "^HELLO|WORLD$",                       # bos / eos
    "HE?LLO|W?RLD",                        # unknowns
    "A_A|A__A|AA",                         # a blank separates repeats, none merges them
    "_______",                             # only blanks
    "|",                                   # only a delimiter
    "I|AM|'X'|J_Q_Z",
    "^^__HH$$__|__?",
]
OPTIONS = [
    {},
    {"skip_special_tokens": True},
    {"output_char_offsets": True},
    {"output_word_offsets": True},
    {"output_char_offsets": True, "output_word_offsets": True, "skip_special_tokens": True},
    {"group_tokens": False},
    {"spaces_between_special_tokens": True},
]
TEXTS = ["HELLO WORLD", "hello world", "A  B", " LEADING AND TRAILING ", "<s>HI</s> THERE", "CAFÉ 42!",
         "DON'T", "I <unk> X"]


def plain(obj):
    """Offsets as plain JSON (the reference returns numpy integers)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def decoded(out) -> dict:
    if isinstance(out, (str, list)) and not hasattr(out, "char_offsets"):
        return {"text": out}
    return {"text": out.text, "char_offsets": plain(out.char_offsets), "word_offsets": plain(out.word_offsets)}


def ctc_tokenizers() -> dict:
    from transformers import Wav2Vec2CTCTokenizer

    result = {"transformers_version": transformers.__version__, "tokenizers": {}}
    for folder_name, lower in (("wav2vec2_ctc", False), ("wav2vec2_ctc_lower", True)):
        folder = FIX / "tokenizers" / folder_name
        shutil.rmtree(folder, ignore_errors=True)
        with tempfile.TemporaryDirectory() as tmp:
            vocab = Path(tmp) / "vocab.json"
            vocab.write_text(json.dumps(IDS))
            tok = Wav2Vec2CTCTokenizer(str(vocab), do_lower_case=lower)
            tok.save_pretrained(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        assert type(tok).__name__ == "Wav2Vec2CTCTokenizer", type(tok)
        cases = []
        for spec in DECODE_CASES:
            ids = ids_of(spec)
            for opts in OPTIONS:
                cases.append({"ids": ids, "options": opts, **decoded(tok.decode(ids, **opts))})
        batch = [ids_of(s) for s in DECODE_CASES[:4]]
        batches = []
        for opts in ({}, {"output_word_offsets": True}, {"output_char_offsets": True, "skip_special_tokens": True}):
            batches.append({"ids": batch, "options": opts, **decoded(tok.batch_decode(batch, **opts))})
        encodes = [{"text": t, "input_ids": tok(t)["input_ids"], "tokens": tok.tokenize(t)} for t in TEXTS]
        result["tokenizers"][folder_name] = {
            "do_lower_case": lower, "decode": cases, "batch_decode": batches, "encode": encodes,
            "vocab_size": tok.vocab_size, "len": len(tok), "word_delimiter_token_id": tok.word_delimiter_token_id,
            "special_ids": sorted(tok.all_special_ids), "files": sorted(p.name for p in folder.iterdir())}
    return result


def tokenizer_roundtrip() -> dict:
    """Our CTC tokenizer saved by us, read by the reference: the same decodes."""
    from pretrained.tokenization import AutoTokenizer as Ours

    out = {}
    for folder_name in ("wav2vec2_ctc", "wav2vec2_ctc_lower"):
        ours = Ours.from_pretrained(FIX / "tokenizers" / folder_name)
        with tempfile.TemporaryDirectory() as tmp:
            ours.save_pretrained(tmp)
            back = transformers.AutoTokenizer.from_pretrained(tmp)
            ref = transformers.AutoTokenizer.from_pretrained(FIX / "tokenizers" / folder_name)
            same = all(decoded(back.decode(ids_of(s), **o)) == decoded(ref.decode(ids_of(s), **o))
                       for s in DECODE_CASES for o in OPTIONS)
            same = same and all(back(t)["input_ids"] == ref(t)["input_ids"] for t in TEXTS)
            out[folder_name] = {"class": type(back).__name__, "same_outputs": same}
    return out


def asr_end_to_end(name: str) -> dict:
    """A whole CTC checkpoint (model, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor in one
    folder, laid out as the hub's wav2vec2 checkpoints are): raw waveforms of three lengths -> processor ->
    model -> argmax -> batch_decode with word offsets, as the reference gives them."""
    import numpy as np

    folder = FIX / "models" / name
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.json"
        vocab.write_text(json.dumps(IDS))
        tokenizer = transformers.Wav2Vec2CTCTokenizer(str(vocab))
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(folder)   # preprocessor_config.json, as the hub's checkpoints have it
    tokenizer.save_pretrained(folder)
    processor = transformers.AutoProcessor.from_pretrained(folder)
    model = ref_load(transformers.AutoModelForCTC, folder)
    rng = np.random.default_rng(5)
    waves = [(rng.standard_normal(n) * 0.3).astype(np.float32) for n in (1500, 900, 1210)]
    batch = processor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    out = processor.batch_decode(logits.argmax(-1), output_word_offsets=True)
    np.save(OUT / f"{name}-waves.npy", np.concatenate(waves))
    return {"lengths": [len(w) for w in waves], "text": out.text, "word_offsets": plain(out.word_offsets),
            "predicted_ids": logits.argmax(-1).tolist(), "files": sorted(p.name for p in folder.iterdir())}


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        print(f"{name:34s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    meta["end_to_end"] = {"wav2vec2-tiny-ctc": asr_end_to_end("wav2vec2-tiny-ctc")}
    (OUT / "speech.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tok = ctc_tokenizers()
    (OUT / "ctc_tokenizer.json").write_text(json.dumps(tok, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    try:
        tok["roundtrip"] = tokenizer_roundtrip()
    except ImportError as e:   # before pretrained.tokenization.ctc exists
        print(f"tokenizer round trip skipped: {e}")
    print("tokenizer round trip:", tok.get("roundtrip"))
    (OUT / "ctc_tokenizer.json").write_text(json.dumps(tok, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
