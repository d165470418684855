"""Checkpoints that lose nothing and are never half-written.

A checkpoint ``<output_dir>/checkpoint-<step>/`` holds the model (``save_pretrained``: config.json
+ model.safetensors, or the adapter files of a LoRA model), ``optimizer.pt``, ``scheduler.pt``,
``rng_state.pth`` (python, numpy, torch CPU and CUDA generators; one file per rank in
multi-process runs), ``scaler.pt`` with fp16, and ``trainer_state.json``.

Everything is written into ``tmp-checkpoint-<step>/`` first and renamed in one step, so a crash
part-way leaves only complete ``checkpoint-*`` folders; leftover ``tmp-checkpoint-*`` folders are
deleted when the next run starts. Old checkpoints are rotated out only after the new one is in
place, each renamed to ``tmp-checkpoint-*`` before it is deleted; a re-save of a step moves the
old copy aside and, if killed before the new one is in, the next start puts the old one back. All ``.pt``/``.pth`` files hold plain tensors and numbers and are read back with
``torch.load(weights_only=True)``.

Example::

    >>> from pretrained.training.checkpoint import latest_checkpoint
    >>> latest_checkpoint("no-such-dir") is None
    True
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..io.loading import _slots
from .callbacks import TrainerState
from .distributed import barrier, gather_objects, rank, world_size

logger = logging.getLogger("pretrained")

PREFIX = "checkpoint"
TMP_PREFIX = "tmp-checkpoint"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
SCALER_NAME = "scaler.pt"
TRAINER_STATE_NAME = "trainer_state.json"
ARGS_NAME = "training_args.json"
_STEP = re.compile(rf"^{PREFIX}-(\d+)$")
_ASIDE = re.compile(rf"^{TMP_PREFIX}-(\d+)-old$")   # a complete checkpoint moved aside by a re-save


# --- finding ----------------------------------------------------------------------------------
def sorted_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest step first (temporary folders excluded)."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = sorted_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def remove_temp_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Clean up after a crash: a complete checkpoint moved aside by a re-save of its step
    (``tmp-checkpoint-<step>-old``) goes back under its name when the new one never arrived;
    every other ``tmp-checkpoint-*`` (an unfinished save, a half-deleted rotated checkpoint) is
    deleted. Returns the names deleted."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    for p in root.iterdir():
        m = _ASIDE.match(p.name)
        if p.is_dir() and m and not (root / f"{PREFIX}-{m.group(1)}").exists():
            os.replace(p, root / f"{PREFIX}-{m.group(1)}")   # the only complete copy: keep it
            logger.warning("a save of step %s was interrupted; %s-%s is the earlier complete copy, "
                           "put back", m.group(1), PREFIX, m.group(1))
    removed = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(TMP_PREFIX):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


# --- writing ----------------------------------------------------------------------------------
def write_atomically(run_dir: str | os.PathLike, step: int, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_folder)``, then rename the folder to ``checkpoint-<step>``."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}-{step}"
    final = root / f"{PREFIX}-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_tree(tmp)
    except Exception as e:  # noqa: BLE001 - a full disk raises OSError, or safetensors' own error
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError) and type(e).__name__ != "SafetensorError":
            raise
        last = latest_checkpoint(root)
        raise CheckpointError(
            f"saving {PREFIX}-{step} failed ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            + (f"{last} is the last complete checkpoint" if last else "no complete checkpoint was saved yet")
            + ". Free disk space (or lower save_total_limit) and resume from it") from e
    if final.exists():  # a rerun that saves the same step again: swap, then drop the old one
        old = root / f"{TMP_PREFIX}-{step}-old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    return final


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rotate_checkpoints(run_dir: str | os.PathLike, limit: int | None, best: str | None = None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``limit``; never the newest one, never ``best``.

    With ``limit=1`` and a best checkpoint older than the newest, both are kept (as the
    reference does), so resuming and loading the best model both stay possible.
    """
    ckpts = sorted_checkpoints(run_dir)
    if limit is None or len(ckpts) <= limit:
        return []
    keep = {ckpts[-1].resolve()}
    if best is not None and Path(best).exists():
        keep.add(Path(best).resolve())
    deletable = [p for p in ckpts if p.resolve() not in keep]
    n_delete = max(0, len(ckpts) - max(limit, len(keep)))
    removed = deletable[:n_delete]
    for p in removed:
        # renamed first (one atomic step), then deleted: a kill midway leaves a tmp-* folder
        # that the next start removes, never a half-deleted folder under a checkpoint's name
        doomed = p.with_name(f"{TMP_PREFIX}-{p.name[len(PREFIX) + 1:]}-deleting")
        os.replace(p, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return removed


# --- RNG --------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors, tuples and numbers only (weights_only-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], path: str) -> None:
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the RNG state in {path!r} is malformed ({type(e).__name__}: {e}); "
                              "the checkpoint is damaged: resume from another checkpoint, or pass "
                              "resume_model_only=True to keep only the model weights") from None


def rng_file(folder: Path, rank: int, world_size: int) -> Path:
    return folder / ("rng_state.pth" if world_size <= 1 else f"rng_state_{rank}.pth")


# --- reading ----------------------------------------------------------------------------------
def load_tensors(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(weights_only=True)`` with an error that names the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"the checkpoint has no {what} file {path!r}; it was saved "
                              "incompletely or by another tool: resume from another checkpoint, "
                              "or pass resume_model_only=True to keep only the model weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(
            f"cannot read the {what} file {path!r} ({type(e).__name__}: {str(e)[:200]}); the "
            "file is damaged or not a tensor file: resume from another checkpoint, or pass "
            "resume_model_only=True to keep only the model weights") from None


def load_model_weights(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load the weights a checkpoint holds into ``model`` (in place), all or nothing."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if hasattr(model, "load_adapter_weights") and (folder / "adapter_model.safetensors").exists():
        model.load_adapter_weights(folder)
        return
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    try:
        if single.exists():
            state = load_file(str(single))
        elif index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = {k: v for f in files for k, v in load_file(str(folder / f)).items()}
        else:
            raise CheckpointError(f"the checkpoint {str(folder)!r} has no model weights "
                                  "(model.safetensors)")
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read the model weights in {str(folder)!r} "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    result = model.load_state_dict(state, strict=False)
    # A tensor with several names (tied or aliased weights) is saved once, under one of them.
    loaded = {name for slot in _slots(model) if any(n in state for n in slot) for name in slot}
    missing = [k for k in result.missing_keys if k not in loaded]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"the weights in {str(folder)!r} do not fit {type(model).__name__}: "
                              f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def save_model_weights(model: nn.Module, folder: Path) -> None:
    """``save_pretrained`` when the model has it, else its state dict as model.safetensors."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file

    seen, state = set(), {}
    for k, t in model.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            state[k] = t.detach().contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


# --- the Trainer's checkpoints ------------------------------------------------------------
def save_checkpoint(trainer: Any) -> None:
    """Write a complete checkpoint of the trainer's run (model, optimizer, schedule, RNG of
    every rank, trainer state) atomically, then rotate old ones; only rank 0 writes."""
    args, state = trainer.args, trainer.state
    rngs = gather_objects(rng_state())
    if args.should_save:
        step = state.global_step
        if state.best_global_step is not None:
            state.best_model_checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.best_global_step}")
        state.stateful_callbacks = {type(cb).__name__: cb.state() for cb in trainer.callback_handler.callbacks
                                    if hasattr(cb, "state") and hasattr(cb, "load_state")}

        def write(tmp: Path) -> None:
            save_model_weights(trainer.model, tmp)
            if not args.save_only_model:
                torch.save(trainer.optimizer.state_dict(), tmp / OPTIMIZER_NAME)
                torch.save(trainer.lr_scheduler.state_dict(), tmp / SCHEDULER_NAME)
                if trainer.scaler is not None:
                    torch.save(trainer.scaler.state_dict(), tmp / SCALER_NAME)
                for r, s in enumerate(rngs):
                    torch.save(s, rng_file(tmp, r, len(rngs)))
            state.save_to_json(str(tmp / TRAINER_STATE_NAME))
            (tmp / ARGS_NAME).write_text(args.to_json_string())

        write_atomically(args.output_dir, step, write)
        rotate_checkpoints(args.output_dir, args.save_total_limit, state.best_model_checkpoint)
    barrier()


def restore_checkpoint(trainer: Any, folder: Path, model_only: bool, total_batch: int) -> tuple | None:
    """Load a checkpoint into the trainer: weights and, unless ``model_only``, optimizer,
    schedule, state and callbacks; returns (RNG state, path) to restore at the first batch."""
    load_model_weights(trainer.model, folder)
    if model_only:
        logger.warning("resuming from %s with the model weights only: optimizer, schedule, RNG "
                       "and data position start afresh", folder)
        return None
    state = TrainerState.load_from_json(str(folder / TRAINER_STATE_NAME))
    state.is_local_process_zero, state.is_world_process_zero = trainer.state.is_local_process_zero, rank() == 0
    if state.train_batch_size not in (None, total_batch):
        logger.warning("the checkpoint was trained with a total batch size of %s, this run uses %s: "
                       "the data order after resuming differs from the interrupted run",
                       state.train_batch_size, total_batch)
    for cb in trainer.callback_handler.callbacks:
        saved = state.stateful_callbacks.get(type(cb).__name__)
        if saved is not None and hasattr(cb, "load_state"):
            cb.load_state(saved)
    opt_path, sched_path = folder / OPTIMIZER_NAME, folder / SCHEDULER_NAME
    for obj, path, what in ((trainer.optimizer, opt_path, "optimizer"), (trainer.lr_scheduler, sched_path, "scheduler")):
        data = load_tensors(path, what)
        try:
            obj.load_state_dict(data)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"the {what} state in {str(path)!r} does not fit this run "
                                  f"({e}); was it saved for another model or trainable set?") from None
    if trainer.scaler is not None and (folder / SCALER_NAME).exists():
        trainer.scaler.load_state_dict(load_tensors(folder / SCALER_NAME, "scaler"))
    trainer.state = state
    path = rng_file(folder, rank(), world_size())
    if not path.exists():
        logger.warning("%s is missing (saved with another number of processes?): random state "
                       "not restored, dropout and masking will differ from the interrupted run", path)
        return None
    return load_tensors(path, "RNG state"), str(path)


__all__ = ["sorted_checkpoints", "latest_checkpoint", "remove_temp_checkpoints", "write_atomically",
           "rotate_checkpoints", "rng_state", "set_rng_state", "load_tensors", "load_model_weights",
           "save_model_weights", "save_checkpoint", "restore_checkpoint"]
