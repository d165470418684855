"""Goldens for Whisper: the model's outputs and its generate() rules, on tiny random checkpoints.

    /work/refvenv/bin/python scripts/golden_whisper.py        # transformers 5.x

The tiny vocabulary mirrors Whisper's special tokens so that every generation rule runs:
0-99 text, 100 <|endoftext|>, 101 <|startoftranscript|>, 102 <|en|>, 103 <|fr|>, 104 <|translate|>,
105 <|transcribe|>, 106 <|startoflm|>, 107 <|startofprev|>, 108 <|nospeech|>, 109 <|notimestamps|>,
110-139 timestamps <|0.00|> ... <|0.58|>. Embeddings and the head are drawn with a larger spread
than the default so that greedy decoding reads the audio and does not repeat one token.

Writes tests/fixtures/models/whisper-*/ (config.json, generation_config.json, model.safetensors,
saved by the reference) and tests/fixtures/goldens/whisper/<name>.safetensors with
  input.*     input_features (B, 8, 32), decoder_input_ids, labels
  output.*    logits, encoder_last_hidden_state, last_hidden_state (base), encoder hidden states
  gen.<case>  model.generate(...) sequences for each case of GENERATE
and tests/fixtures/goldens/whisper/whisper.json (loss, cases, the round trip through our save).
"""

from __future__ import annotations

import copy
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
OUT = FIX / "goldens" / "whisper"
sys.path.insert(0, str(ROOT))

SHAPE = dict(vocab_size=140, num_mel_bins=8, d_model=32, encoder_layers=2, decoder_layers=2,
             encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=40,
             max_source_positions=16, max_target_positions=40, pad_token_id=100, bos_token_id=100,
             eos_token_id=100, decoder_start_token_id=101, suppress_tokens=[7, 8, 106, 107, 108],
             begin_suppress_tokens=[5, 100])
GENERATION = dict(decoder_start_token_id=101, eos_token_id=100, pad_token_id=100, bos_token_id=100,
                  suppress_tokens=[7, 8, 106, 107, 108], begin_suppress_tokens=[5, 100],
                  no_timestamps_token_id=109, is_multilingual=True, lang_to_id={"<|en|>": 102, "<|fr|>": 103},
                  task_to_id={"translate": 104, "transcribe": 105}, max_initial_timestamp_index=5,
                  prev_sot_token_id=107, max_length=40, forced_decoder_ids=[[1, None], [2, 105]])
GENERATE = {
    "en": dict(max_new_tokens=10, language="en"),
    "detect": dict(max_new_tokens=10),
    "fr_translate": dict(max_new_tokens=10, language="fr", task="translate"),
    "french_name": dict(max_new_tokens=8, language="french"),
    "per_row_language": dict(max_new_tokens=8, language=["en", "fr"]),
    "timestamps": dict(max_new_tokens=12, language="en", return_timestamps=True),
    "timestamps_detect": dict(max_new_tokens=12, return_timestamps=True),
    "beam3": dict(max_new_tokens=10, language="en", num_beams=3),
    "beam2_timestamps": dict(max_new_tokens=12, language="en", num_beams=2, return_timestamps=True),
    "default_length": dict(language="en"),
    "repetition": dict(max_new_tokens=10, language="en", repetition_penalty=1.5, no_repeat_ngram_size=2),
}


def build_model(seed: int) -> transformers.WhisperForConditionalGeneration:
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**SHAPE)).eval()
    with torch.no_grad():   # spreads that make the decoder read the audio (default ones repeat one token)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name != "proj_out":
                module.weight.normal_(std=0.4)
            if isinstance(module, torch.nn.Conv1d):
                module.weight.normal_(std=1.0)
        model.model.decoder.embed_tokens.weight.normal_(std=0.3)
    model.generation_config = transformers.GenerationConfig(**GENERATION)
    return model


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = build_model(0)
    name = "whisper-tiny"
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    torch.manual_seed(1)
    feats = torch.randn(2, 8, 32)
    dec = torch.tensor([[101, 102, 105, 109, 17, 33, 4], [101, 103, 104, 109, 61, 2, 90]])
    labels = torch.tensor([[102, 105, 109, 17, 33, 4, 100], [103, 104, 109, 61, 2, -100, -100]])
    tensors = {"input.input_features": feats, "input.decoder_input_ids": dec, "input.labels": labels}
    meta: dict = {"models": {}}
    with torch.no_grad():
        out = model(feats, decoder_input_ids=dec, output_hidden_states=True)
        tensors["output.logits"] = out.logits
        tensors["output.encoder_last_hidden_state"] = out.encoder_last_hidden_state
        for i, h in enumerate(out.encoder_hidden_states):
            tensors[f"output.encoder_hidden_states.{i}"] = h
        for i, h in enumerate(out.decoder_hidden_states):
            tensors[f"output.decoder_hidden_states.{i}"] = h
        loss = float(model(feats, labels=labels).loss)
        # one cached step after a prefix: the logits of the last token equal the full run's
        base = transformers.WhisperModel.from_pretrained(folder).eval()
        tensors["output.last_hidden_state"] = base(feats, decoder_input_ids=dec).last_hidden_state
        half = copy.deepcopy(model).to(torch.bfloat16)   # a copy: rounding the model's weights would change its goldens
        tensors["bf16.logits"] = half(feats.bfloat16(), decoder_input_ids=dec).logits.float()
    cases = {}
    for case, kw in GENERATE.items():
        seqs = model.generate(feats, **kw)
        tensors[f"gen.{case}"] = seqs
        cases[case] = kw
    # long-form: 3 windows of features (a batch of 2 with lengths), timestamps on
    torch.manual_seed(2)
    long_feats = torch.randn(2, 8, 80)
    mask = torch.ones(2, 80, dtype=torch.long)
    mask[1, 50:] = 0
    tensors["input.long_features"] = long_feats
    tensors["input.long_mask"] = mask
    long = model.generate(long_feats, attention_mask=mask, language="en", return_timestamps=True,
                          max_new_tokens=12, return_segments=True)
    tensors["gen.long"] = long["sequences"]
    meta["long_segments"] = [[{"start": float(s["start"]), "end": float(s["end"]), "tokens": s["tokens"].tolist()}
                              for s in segs] for segs in long["segments"]]
    meta["models"][name] = {"class": "WhisperForConditionalGeneration", "loss": loss, "generate": cases}

    # audio classification (weighted layer sum) on the same shape
    torch.manual_seed(3)
    cls_cfg = transformers.WhisperConfig(**SHAPE, num_labels=3, use_weighted_layer_sum=True, classifier_proj_size=12)
    clf = transformers.WhisperForAudioClassification(cls_cfg).eval()
    cname = "whisper-tiny-audiocls"
    shutil.rmtree(FIX / "models" / cname, ignore_errors=True)
    clf.save_pretrained(FIX / "models" / cname)
    with torch.no_grad():
        cout = clf(feats, labels=torch.tensor([2, 0]))
    ctensors = {"input.input_features": feats, "input.labels": torch.tensor([2, 0]), "output.logits": cout.logits}
    meta["models"][cname] = {"class": "WhisperForAudioClassification", "loss": float(cout.loss)}

    # round trip: our save_pretrained, read back by the reference
    from pretrained.models.whisper import WhisperForConditionalGeneration as Ours

    with tempfile.TemporaryDirectory() as tmp:
        Ours.from_pretrained(folder).save_pretrained(tmp)
        back = transformers.WhisperForConditionalGeneration.from_pretrained(tmp).eval()
        with torch.no_grad():
            diff = (back(feats, decoder_input_ids=dec).logits - tensors["output.logits"]).abs().max()
        meta["models"][name]["roundtrip_max_abs_diff"] = float(diff)
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    save_file({k: v.contiguous() for k, v in ctensors.items()}, str(OUT / f"{cname}.safetensors"))
    meta["transformers"] = transformers.__version__
    (OUT / "whisper.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: v for k, v in meta.items() if k != "long_segments"}, indent=1))


if __name__ == "__main__":
    main()
