"""Checkpoints: exact resume (bit-identical to an uninterrupted run), atomic writes, rotation,
damaged files (BAD_INPUTS.md C6, R1-R5)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pretrained.errors import CheckpointError
from pretrained.models.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification
from pretrained.training import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments
from pretrained.training.checkpoint import latest_checkpoint, sorted_checkpoints

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from test_training_trainer import Tok, one_thread  # noqa: E402,F401  (one_thread: autouse fixture)


def data(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": [2] + torch.randint(5, 60, (int(3 + i % 4),), generator=g).tolist() + [3],
             "label": i % 3} for i in range(n)]


def model(mlm=False):
    # dropout stays on: resuming must restore the RNG for the run to be identical
    torch.manual_seed(123)
    cfg = BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, num_labels=3)
    return (BertForMaskedLM if mlm else BertForSequenceClassification).from_config(cfg)


def make_args(out, **kw):
    base = dict(output_dir=str(out), disable_tqdm=True, per_device_train_batch_size=3, num_train_epochs=3,
                learning_rate=3e-3, warmup_steps=2, save_steps=2, logging_steps=1, seed=11)
    base.update(kw)
    return TrainingArguments(**base)


class StopAt(TrainerCallback):
    """Simulate a crash right after optimizer step ``k``."""

    def __init__(self, k):
        self.k = k

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.k:
            raise KeyboardInterrupt


def losses_after(trainer, step):
    return [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h and h["step"] > step]


def run(out, stop=None, resume=None, mlm=False, **kw):
    m = model(mlm)
    if resume is not None:
        with torch.no_grad():  # a different starting point: everything must come from the checkpoint
            for p in m.parameters():
                p.add_(1.0)
    collator = DataCollatorForLanguageModeling(Tok(), mlm_probability=0.3) if mlm else None
    trainer = Trainer(model=m, args=make_args(out, **kw), train_dataset=data(), data_collator=collator,
                      processing_class=Tok(), callbacks=[StopAt(stop)] if stop else None)
    if stop:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    else:
        trainer.train(resume_from_checkpoint=resume)
    return trainer, m


@pytest.mark.parametrize("kw, stop, saved", [
    (dict(), 7, 6),                                          # mid-epoch (4 steps per epoch)
    (dict(gradient_accumulation_steps=3, save_steps=3), 4, 3),  # 3+1 micro-batches per epoch
    (dict(mlm=True), 7, 6),                                  # masking draws from the RNG
    (dict(save_steps=4, lr_scheduler_type="cosine"), 6, 4),  # checkpoint at an epoch boundary
])
def test_resume_is_bit_identical(tmp_path, kw, stop, saved):
    full, full_model = run(tmp_path / "full", **kw)
    run(tmp_path / "cut", stop=stop, **kw)
    assert latest_checkpoint(tmp_path / "cut").name == f"checkpoint-{saved}"
    resumed, resumed_model = run(tmp_path / "cut", resume=True, **kw)
    assert losses_after(resumed, saved) == losses_after(full, saved) and losses_after(full, saved)
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.state.global_step == full.state.global_step


def test_checkpoint_contents(tmp_path):
    run(tmp_path, max_steps=2)
    ckpt = tmp_path / "checkpoint-2"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.pt", "rng_state.pth", "scheduler.pt",
                     "trainer_state.json", "training_args.json"]
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt"):
        torch.load(ckpt / name, weights_only=True)  # plain tensors and numbers only
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and len(state["log_history"]) == 2
    BertForSequenceClassification.from_pretrained(ckpt)  # the model part is a normal save


def test_crash_during_save_leaves_only_complete_checkpoints(tmp_path, monkeypatch):
    import pretrained.training.trainer as trainer_mod

    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *a, **k):
        if str(path).endswith("optimizer.pt") and "checkpoint-4" in str(path):
            raise OSError("disk full (simulated)")
        calls["n"] += 1
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(trainer_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full.*checkpoint-2 is the last complete checkpoint"):
        run(tmp_path)
    monkeypatch.setattr(trainer_mod.torch, "save", real_save)
    assert not (tmp_path / "tmp-checkpoint-4").exists()   # the half-written folder was removed
    assert [p.name for p in sorted_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    resumed, _ = run(tmp_path, resume=True)  # resumes from the last complete one, cleans up
    assert not (tmp_path / "tmp-checkpoint-4").exists()
    assert resumed.state.global_step == 12


def test_rotation_keeps_the_newest(tmp_path):
    run(tmp_path, save_total_limit=2)
    assert [p.name for p in sorted_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-12"]


def test_rotation_never_runs_before_the_new_checkpoint_is_complete(tmp_path, monkeypatch):
    import pretrained.training.trainer as trainer_mod

    real_save = torch.save

    def failing_save(obj, path, *a, **k):
        if "checkpoint-6" in str(path) and str(path).endswith("scheduler.pt"):
            raise OSError("killed (simulated)")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(trainer_mod.torch, "save", failing_save)
    with pytest.raises(OSError):
        run(tmp_path, save_total_limit=1)
    assert [p.name for p in sorted_checkpoints(tmp_path)] == ["checkpoint-4"]


@pytest.mark.parametrize("name, garbage", [
    ("optimizer.pt", b"not a torch file"),
    ("rng_state.pth", b"\x80\x02garbage"),
    ("scheduler.pt", b""),
    ("trainer_state.json", b"{truncated"),
])
def test_damaged_checkpoint_file_is_named(tmp_path, name, garbage):
    run(tmp_path, max_steps=2)
    (tmp_path / "checkpoint-2" / name).write_bytes(garbage)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        run(tmp_path, resume=True, max_steps=4)


def test_resume_model_only(tmp_path, caplog):
    run(tmp_path, max_steps=2)
    (tmp_path / "checkpoint-2" / "optimizer.pt").write_bytes(b"junk")
    m = model()
    trainer = Trainer(model=m, args=make_args(tmp_path, max_steps=2, save_strategy="no"), train_dataset=data(),
                      processing_class=Tok())
    with caplog.at_level("WARNING", logger="pretrained"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"), resume_model_only=True)
    assert "model weights only" in caplog.text and trainer.state.global_step == 2


def test_resume_errors(tmp_path):
    trainer = Trainer(model=model(), args=make_args(tmp_path), train_dataset=data())
    with pytest.raises(CheckpointError, match="no checkpoint-\\* folder"):
        trainer.train(resume_from_checkpoint=True)
    with pytest.raises(CheckpointError, match="is not a folder"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "nope"))


def test_resume_with_another_batch_size_warns(tmp_path, caplog):
    run(tmp_path, max_steps=2)
    with caplog.at_level("WARNING", logger="pretrained"):
        run(tmp_path, resume=True, max_steps=3, per_device_train_batch_size=2)
    assert "data order after resuming differs" in caplog.text


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_training_checkpoint import model, data, make_args, Tok
    from pretrained.training import Trainer, TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == int(os.environ.get("KILL_AT", "0")):
                os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no flush: a real crash

    out, resume = sys.argv[1], sys.argv[2] == "resume"
    m = model()
    trainer = Trainer(model=m, args=make_args(out), train_dataset=data(), callbacks=[Kill()],
                      processing_class=Tok())
    trainer.train(resume_from_checkpoint=True if resume else None)
    torch.save(m.state_dict(), os.path.join(out, "final.pt"))
""")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def go(out, mode, kill_at=0):
        return subprocess.run([sys.executable, str(script), str(out), mode], env={**env, "KILL_AT": str(kill_at)},
                              capture_output=True, text=True, timeout=300)

    killed = go(tmp_path / "run", "fresh", kill_at=7)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-6"
    resumed = go(tmp_path / "run", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full = go(tmp_path / "full", "fresh")
    assert full.returncode == 0, full.stderr[-2000:]
    a = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "full" / "final.pt", weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_a_kill_while_rotating_leaves_no_half_deleted_checkpoint(tmp_path, monkeypatch):
    """Rotation renames a checkpoint before deleting it: killed midway, what is left is a tmp-*
    folder the next start removes, never a damaged folder under a checkpoint's name."""
    import pretrained.training.checkpoint as ck

    for step in (2, 4, 6):
        ck.write_atomically(tmp_path, step, lambda f: (f / "model.safetensors").write_bytes(b"w"))

    def killed(path, *a, **k):
        raise KeyboardInterrupt   # the process dies before the files are gone

    monkeypatch.setattr(ck.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        ck.rotate_checkpoints(tmp_path, limit=2)
    monkeypatch.undo()
    assert [p.name for p in ck.sorted_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    assert ck.remove_temp_checkpoints(tmp_path) == ["tmp-checkpoint-2-deleting"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_a_kill_while_saving_the_same_step_again_keeps_the_complete_copy(tmp_path, monkeypatch):
    """Re-saving step 4 moves the old checkpoint-4 aside, then moves the new one in: killed in
    between, the next start puts the old, complete one back instead of deleting both."""
    import pretrained.training.checkpoint as ck

    ck.write_atomically(tmp_path, 4, lambda f: (f / "model.safetensors").write_bytes(b"old"))
    real = ck.os.replace
    calls = []

    def killed_after_first(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        ck.write_atomically(tmp_path, 4, lambda f: (f / "model.safetensors").write_bytes(b"new"))
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint-4").exists()   # both copies are in temporary names now
    ck.remove_temp_checkpoints(tmp_path)
    assert (tmp_path / "checkpoint-4" / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]
