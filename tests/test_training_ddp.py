"""Data-parallel training with torchrun (2 CPU processes, gloo): the same weights as one
process with twice the gradient accumulation; only rank 0 writes; evaluation gathers every
example once."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parent.parent

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import torch
    torch.set_num_threads(1)
    from pretrained.models.bert import BertConfig, BertForSequenceClassification
    from pretrained.training import Trainer, TrainingArguments

    def build():
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, num_labels=3, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        return BertForSequenceClassification.from_config(cfg)

    def data(n):
        g = torch.Generator().manual_seed(1)
        return [{{"input_ids": torch.randint(5, 64, (6,), generator=g).tolist(), "label": i % 3}}
                for i in range(n)]

    def run(out, batch, accumulation):
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch,
                                 gradient_accumulation_steps=accumulation, num_train_epochs=2,
                                 learning_rate=5e-3, weight_decay=0.01, warmup_steps=1, save_steps=3,
                                 logging_steps=1, disable_tqdm=True, per_device_eval_batch_size=2)
        model = build()
        trainer = Trainer(model=model, args=args, train_dataset=data(16), eval_dataset=data(7))
        trainer.train()
        metrics = trainer.evaluate()
        pred = trainer.predict(data(7))
        return model, metrics, pred

    if __name__ == "__main__":
        out = sys.argv[1]
        model, metrics, pred = run(out, 2, 1)
        if int(os.environ.get("RANK", "0")) == 0:
            torch.save(model.state_dict(), os.path.join(out, "final.pt"))
            json.dump({{"eval_loss": metrics["eval_loss"], "world": int(os.environ["WORLD_SIZE"]),
                       "pred_shape": list(pred.predictions.shape)}}, open(os.path.join(out, "metrics.json"), "w"))
""")


@pytest.mark.slow
def test_two_processes_equal_one_with_double_accumulation(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    sys.path.insert(0, str(tmp_path))
    try:
        import ddp_train
    finally:
        sys.path.remove(str(tmp_path))
    torch.set_num_threads(1)
    single, metrics, pred = ddp_train.run(str(tmp_path / "single"), 2, 2)
    ddp = torch.load(out / "final.pt", weights_only=True)
    diff = max(float((ddp[k] - v).abs().max()) for k, v in single.state_dict().items())
    assert diff < 1e-5
    got = json.loads((out / "metrics.json").read_text())
    assert got["world"] == 2 and got["pred_shape"] == [7, 3] == list(pred.predictions.shape)
    assert got["eval_loss"] == pytest.approx(metrics["eval_loss"], abs=1e-5)
    # rank 0 wrote the checkpoints, with each rank's RNG state
    ckpt = out / "checkpoint-3"
    assert (ckpt / "rng_state_0.pth").exists() and (ckpt / "rng_state_1.pth").exists()
    assert not list(out.glob("tmp-checkpoint-*"))


DIES = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tmp!r})
    from ddp_train import build, data
    from pretrained.training import Trainer, TrainerCallback, TrainingArguments

    class Die(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if os.environ["RANK"] == "1" and state.global_step == 2:
                os._exit(3)  # a crashed worker: no goodbye to the process group

    args = TrainingArguments(output_dir=sys.argv[1], per_device_train_batch_size=2, max_steps=20,
                             save_strategy="no", disable_tqdm=True, ddp_timeout=20)
    Trainer(model=build(), args=args, train_dataset=data(16), callbacks=[Die()]).train()
""")


@pytest.mark.slow
def test_a_dead_worker_does_not_hang_the_others(tmp_path):
    """Without torchrun's supervision (plain processes), rank 0 must fail, not wait forever."""
    import socket

    (tmp_path / "ddp_train.py").write_text(SCRIPT.format(repo=str(REPO)))
    script = tmp_path / "dies.py"
    script.write_text(DIES.format(tmp=str(tmp_path)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes[1] == 3
    assert codes[0] != 0  # an error (connection closed / timeout), not a hang
