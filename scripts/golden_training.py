"""Record the reference's training behaviour (transformers Trainer, PEFT) for the training tests.

Imports the reference (`transformers`, `peft`); run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_training.py

(``scripts/make_goldens.py training`` also calls :func:`main`.)

Writes, under tests/fixtures/goldens/training/:
  trainer.json / trainer.safetensors   a short run of the reference Trainer on the bert-tiny-seqcls
                                       fixture (dropout 0): losses, learning rates and gradient
                                       norms per step, eval/predict metrics, final weights
  schedules.json                       the learning rate of every schedule type, step by step
  decay.json                           the parameter names the reference applies weight decay to
  peft.json                            PEFT interop: print_trainable_parameters text, logits of an
                                       adapter saved by THIS library and loaded by PEFT, and of
                                       the adapters PEFT saved (fixtures below)
  ../../models/peft-*/                 adapters saved by PEFT (adapter_config.json +
                                       adapter_model.safetensors) with the inputs and logits
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
OUT = FIX / "goldens" / "training"
MODELS = FIX / "models"
sys.path.insert(0, str(REPO))  # our library, for the adapters saved here and loaded by PEFT

# The training data every parity test uses: deterministic token ids, labels from a simple rule.
N_TRAIN, N_EVAL, SEQ = 20, 6, 9


def make_data(n: int, seed: int, num_labels: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(5, 128, (SEQ,), generator=g).tolist()
        ids[0] = 2
        rows.append({"input_ids": ids, "attention_mask": [1] * SEQ, "label": sum(ids) % num_labels})
    return rows


TRAIN_ARGS = dict(num_train_epochs=2, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                  learning_rate=1e-3, weight_decay=0.01, warmup_steps=3, lr_scheduler_type="linear",
                  max_grad_norm=0.5, logging_steps=1, save_strategy="no", seed=7)


def trainer_run() -> None:
    import numpy as np
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(
        MODELS / "bert-tiny-seqcls", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    train, dev = make_data(N_TRAIN, 1), make_data(N_EVAL, 2)

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    with tempfile.TemporaryDirectory() as tmp:
        args = transformers.TrainingArguments(output_dir=tmp, report_to="none", disable_tqdm=True,
                                              use_cpu=True, **TRAIN_ARGS)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
                                       eval_dataset=dev, compute_metrics=accuracy,
                                       data_collator=transformers.default_data_collator)
        trainer.train()
        metrics = trainer.evaluate()
        pred = trainer.predict(dev)
    steps = [h for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]
    record = {
        "args": TRAIN_ARGS, "n_train": N_TRAIN, "n_eval": N_EVAL, "seq": SEQ,
        "optim": args.optim,
        "loss": [h["loss"] for h in steps], "learning_rate": [h["learning_rate"] for h in steps],
        "grad_norm": [h["grad_norm"] for h in steps], "global_step": trainer.state.global_step,
        "eval_loss": metrics["eval_loss"], "eval_accuracy": metrics["eval_accuracy"],
        "test_loss": pred.metrics["test_loss"],
    }
    (OUT / "trainer.json").write_text(json.dumps(record, indent=2) + "\n")
    tensors = {f"param.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors["predictions"] = torch.from_numpy(pred.predictions).contiguous()
    save_file(tensors, str(OUT / "trainer.safetensors"))
    print(f"trainer: {len(steps)} steps, final loss {record['loss'][-1]:.4f}, eval {metrics['eval_loss']:.4f}")


def schedules() -> None:
    from transformers import get_scheduler

    out = {}
    for name in ("linear", "cosine", "constant", "constant_with_warmup", "polynomial"):
        for warmup, total in ((0, 10), (3, 10), (4, 7)):
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            kw = {"scheduler_specific_kwargs": {"lr_end": 1e-3, "power": 2.0}} if name == "polynomial" else {}
            sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total, **kw)
            lrs = []
            for _ in range(total + 2):
                lrs.append(sched.get_last_lr()[0])
                opt.step()
                sched.step()
            out[f"{name}/{warmup}/{total}"] = lrs
    # warmup_steps as a fraction of the total (the reference's rounding)
    import transformers

    args = transformers.TrainingArguments(output_dir="/tmp/unused", warmup_steps=0.15, report_to="none")
    out["warmup_fraction_0.15"] = {str(n): args.get_warmup_steps(n) for n in (1, 7, 10, 33, 100)}
    (OUT / "schedules.json").write_text(json.dumps(out, indent=1) + "\n")


def decay_names() -> None:
    import transformers

    out = {}
    for name in ("bert-tiny-seqcls", "bert-tiny-mlm", "gpt2-tiny"):
        cls = {"bert-tiny-seqcls": transformers.BertForSequenceClassification,
               "bert-tiny-mlm": transformers.BertForMaskedLM, "gpt2-tiny": transformers.GPT2LMHeadModel}[name]
        model = cls.from_pretrained(MODELS / name)
        args = transformers.TrainingArguments(output_dir="/tmp/unused", report_to="none")
        trainer = transformers.Trainer(model=model, args=args)
        out[name] = sorted(trainer.get_decay_parameter_names(model))
    (OUT / "decay.json").write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:2] == ["--peft"]:   # --peft NAME...: only these PEFT cases, the rest kept
        peft_goldens(set(sys.argv[2:]))
        return
    schedules()
    decay_names()
    trainer_run()
    try:
        import peft  # noqa: F401
    except ImportError:
        print("peft is not installed: PEFT goldens skipped")
        return
    peft_goldens()


# --- PEFT -------------------------------------------------------------------------------------
# name -> (fixture model, reference class, LoraConfig kwargs)
PEFT_CASES = {
    "peft-bert-seqcls": ("bert-tiny-seqcls", "BertForSequenceClassification",
                         dict(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")),
    "peft-gpt2-conv1d": ("gpt2-tiny", "GPT2LMHeadModel",
                         dict(r=3, lora_alpha=6, target_modules=r".*\.(c_attn|c_fc)", fan_in_fan_out=True,
                              bias="lora_only", task_type="CAUSAL_LM", use_rslora=True)),
    "peft-bert-tokcls-bias": ("bert-tiny-tokcls", "BertForTokenClassification",
                              dict(r=2, lora_alpha=4, target_modules=["query", "key", "dense"],
                                   task_type="TOKEN_CLS", bias="all", lora_dropout=0.1)),
    # the usual QLoRA recipe's targets, on a model whose q/k/v and gate/up run as one kernel call
    "peft-llama-all-linear": ("llama-gqa", "LlamaForCausalLM",
                              dict(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")),
}


def fill_adapter(named: dict, seed: int) -> None:
    """Give every adapter tensor a seeded random value (by PEFT file key, sorted), so an adapter
    is not the identity; `named` maps a file key to the parameter to fill."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key in sorted(named):
            named[key].copy_(torch.randn(named[key].shape, generator=g) * 0.2)


def peft_inputs(arch: str) -> dict:
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 128, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _peft_named(pm) -> dict:
    """PEFT file key -> parameter of a PEFT model, via PEFT's own state-dict function."""
    from peft import get_peft_model_state_dict

    keys = set(get_peft_model_state_dict(pm))
    params = dict(pm.named_parameters())
    out = {}
    for key in keys:
        stem = key.rsplit(".", 1)
        for cand in (f"{stem[0]}.default.{stem[1]}", key.replace(".weight", ".default.weight"),
                     f"{stem[0]}.modules_to_save.default.{stem[1]}", key):
            if cand in params:
                out[key] = params[cand]
                break
        else:
            raise SystemExit(f"cannot find the parameter of {key}")
    return out


def peft_goldens(only: set[str] | None = None) -> None:
    """PEFT interop goldens for every case (or the ``only`` ones, the others' records kept)."""
    import peft
    import transformers

    import pretrained.auto as ours_auto
    from pretrained.peft import LoraConfig as OurConfig, get_peft_model as our_get
    from pretrained.peft.lora import file_key_to_param

    record = {"peft_version": peft.__version__, "cases": {}}
    if only and (OUT / "peft.json").exists():
        record["cases"] = json.loads((OUT / "peft.json").read_text())["cases"]
    for name, (fixture, cls_name, kw) in PEFT_CASES.items():
        if only and name not in only:
            continue
        arch = "gpt2" if fixture.startswith("gpt2") else "bert"
        inputs = peft_inputs(arch)
        ref_cls = getattr(transformers, cls_name)
        # 1. an adapter saved by PEFT: the fixture this library must load
        base = ref_cls.from_pretrained(MODELS / fixture).eval()
        pm = peft.get_peft_model(base, peft.LoraConfig(**kw))
        fill_adapter(_peft_named(pm), seed=sum(map(ord, name)))
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            pm.print_trainable_parameters()
        folder = MODELS / name
        shutil.rmtree(folder, ignore_errors=True)
        pm.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)
        pm.eval()
        with torch.no_grad():
            logits = pm(**inputs).logits
            merged = pm.merge_and_unload()(**inputs).logits
        # 2. an adapter saved by THIS library, loaded by PEFT
        ours = {"BertForSequenceClassification": ours_auto.AutoModelForSequenceClassification,
                "BertForTokenClassification": ours_auto.AutoModelForTokenClassification,
                "GPT2LMHeadModel": ours_auto.AutoModelForCausalLM,
                "LlamaForCausalLM": ours_auto.AutoModelForCausalLM}[cls_name].from_pretrained(MODELS / fixture)
        our_pm = our_get(ours, OurConfig(**kw))
        params = dict(our_pm.named_parameters())
        named = {}
        for key in our_pm.adapter_state_dict():
            inner = key[len("base_model.model."):]
            named[key] = params["base_model.model." + file_key_to_param(our_pm.get_base_model(), inner)]
        fill_adapter(named, seed=sum(map(ord, name)) + 1)
        with tempfile.TemporaryDirectory() as tmp:
            our_pm.save_pretrained(tmp)
            ref_base = ref_cls.from_pretrained(MODELS / fixture).eval()
            loaded = peft.PeftModel.from_pretrained(ref_base, tmp).eval()
            ours_files = sorted(json.loads((Path(tmp) / "adapter_config.json").read_text()))
            from safetensors.torch import load_file
            our_keys = sorted(load_file(str(Path(tmp) / "adapter_model.safetensors")))
        with torch.no_grad():
            peft_logits_of_ours = loaded(**inputs).logits
        peft_keys = sorted(load_file(str(folder / "adapter_model.safetensors")))
        peft_config_keys = sorted(json.loads((folder / "adapter_config.json").read_text()))
        save_file({**{f"input.{k}": v for k, v in inputs.items()}, "peft.logits": logits.contiguous(),
                   "peft.merged_logits": merged.contiguous(), "ours_in_peft.logits": peft_logits_of_ours.contiguous()},
                  str(OUT / f"{name}.safetensors"))
        record["cases"][name] = {"fixture": fixture, "class": cls_name, "config": kw,
                                 "print_trainable_parameters": text.getvalue().strip(),
                                 "peft_keys": peft_keys, "our_keys_as_saved": our_keys,
                                 "peft_config_keys": peft_config_keys, "our_config_keys": ours_files}
        print(f"{name}: {text.getvalue().strip()}; keys equal: {peft_keys == our_keys}")
    (OUT / "peft.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()


def prefix_goldens() -> None:
    """Prefix tuning on gpt2-tiny: a prefix saved by PEFT (fixture), and one saved here loaded by PEFT."""
    import peft
    import transformers
    from safetensors.torch import load_file

    import pretrained.auto as ours_auto
    from pretrained.peft import PrefixTuningConfig as OurConfig, get_peft_model as our_get

    name = "peft-gpt2-prefix"
    inputs = peft_inputs("gpt2")
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    base = transformers.GPT2LMHeadModel.from_pretrained(MODELS / "gpt2-tiny").eval()
    pm = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    fill_adapter({"prompt_embeddings": pm.prompt_encoder["default"].embedding.weight}, seed=11)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        pm.print_trainable_parameters()
    folder = MODELS / name
    shutil.rmtree(folder, ignore_errors=True)
    pm.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)
    pm.eval()
    with torch.no_grad():
        out = pm(**inputs, labels=labels)
    ours = our_get(ours_auto.AutoModelForCausalLM.from_pretrained(MODELS / "gpt2-tiny"), OurConfig(num_virtual_tokens=5))
    fill_adapter({"prompt_embeddings": ours.prompt_encoder["default"].embedding.weight}, seed=12)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        loaded = peft.PeftModel.from_pretrained(
            transformers.GPT2LMHeadModel.from_pretrained(MODELS / "gpt2-tiny").eval(), tmp).eval()
        our_config_keys = sorted(json.loads((Path(tmp) / "adapter_config.json").read_text()))
        our_keys = sorted(load_file(str(Path(tmp) / "adapter_model.safetensors")))
    with torch.no_grad():
        theirs_of_ours = loaded(**inputs).logits
    save_file({**{f"input.{k}": v for k, v in inputs.items()}, "label.labels": labels,
               "peft.logits": out.logits.contiguous(), "ours_in_peft.logits": theirs_of_ours.contiguous()},
              str(OUT / f"{name}.safetensors"))
    record = {"print_trainable_parameters": text.getvalue().strip(), "loss": float(out.loss),
              "peft_config_keys": sorted(json.loads((folder / "adapter_config.json").read_text())),
              "our_config_keys": our_config_keys, "our_keys": our_keys,
              "peft_keys": sorted(load_file(str(folder / "adapter_model.safetensors")))}
    (OUT / "prefix.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: {record['print_trainable_parameters']}; loss {record['loss']:.4f}")
