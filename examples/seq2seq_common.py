"""What examples/train_translator.py and examples/train_summarizer.py share: a tokenizer trained
here with the ``tokenizers`` library, tokenized pairs, decoding generated ids, a wall-clock
budget for training and a learning-rate schedule over that budget.

The tokenizer is a SentencePiece-style Unigram model (NFKC, "▁" marks word starts, so decoding
restores the spaces exactly) with three special tokens at fixed ids, T5's convention: ``<pad>``
0, ``</s>`` 1, ``<unk>`` 2; every encoded text ends with ``</s>``. It is saved as
``tokenizer.json`` + ``tokenizer_config.json``, which ``pretrained.AutoTokenizer`` loads.

Example::

    >>> import sys, tempfile; sys.path.insert(0, "examples")
    >>> from seq2seq_common import train_tokenizer
    >>> tok = train_tokenizer(["a small text editor", "un petit éditeur de texte"] * 20, 60,
    ...                       tempfile.mkdtemp())
    >>> ids = tok("a small editor")["input_ids"]
    >>> ids[-1] == tok.eos_token_id == 1, tok.decode(ids, skip_special_tokens=True)
    (True, 'a small editor')
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrained import AutoTokenizer
from pretrained.training import TrainerCallback

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2


def train_tokenizer(texts: list[str], vocab_size: int, folder: str | Path, max_length: int = 512) -> Any:
    """Train a Unigram tokenizer on ``texts``, save it in ``folder``, load it with
    ``pretrained.AutoTokenizer``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                      max_piece_length=12, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    # every sequence ends with </s>: the encoder sees where the text stops, the decoder learns
    # to stop
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
              "unk_token": "<unk>", "model_max_length": max_length, "padding_side": "right"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    return loaded


def encode_pairs(tok: Any, sources: list[str], targets: list[str], max_source: int,
                 max_target: int) -> list[dict[str, list[int]]]:
    """``{"input_ids", "attention_mask", "labels"}`` per pair, truncated (keeping ``</s>``)."""
    src = tok(sources, truncation=True, max_length=max_source)
    tgt = tok(targets, truncation=True, max_length=max_target)
    return [{"input_ids": i, "attention_mask": m, "labels": lab}
            for i, m, lab in zip(src["input_ids"], src["attention_mask"], tgt["input_ids"])]


def decode(tok: Any, ids: Any) -> list[str]:
    """Texts of generated ids or labels (-100 read as padding)."""
    ids = np.where(np.asarray(ids) == -100, tok.pad_token_id, np.asarray(ids))
    return [t.strip() for t in tok.batch_decode(ids.tolist(), skip_special_tokens=True)]


class TimeBudget(TrainerCallback):
    """Stop training once ``minutes`` of wall time have passed (the step in flight finishes),
    so a run on a busy machine still ends in time; the schedule was set for ``max_steps``."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.start = None
        self.stopped_at = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.time()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if time.time() - self.start > self.seconds:
            control.should_training_stop = True
            self.stopped_at = state.global_step


class WallClockCosine(torch.optim.lr_scheduler.LambdaLR):
    """Linear warmup over ``warmup_steps``, then a cosine decay to 0 over the *wall time* of
    ``minutes`` (not over steps). On a shared machine the steps a budget allows vary several
    fold from run to run; decaying by time still ends every run at a small learning rate, where
    a step schedule cut short by :class:`TimeBudget` would stop at a large one."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, minutes: float) -> None:
        self.seconds, self.t0, self.warmup_steps = minutes * 60, None, warmup_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if self.t0 is None or step <= 1:  # construction, then again at the first training step
            self.t0 = time.time()
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        done = min(1.0, (time.time() - self.t0) / self.seconds)
        return warm * 0.5 * (1.0 + math.cos(math.pi * done))


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
