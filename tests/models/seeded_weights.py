"""Seeded random weights for checkpoints too big to commit (DETR on timm's full-width ResNets: a
resnet18 backbone alone is 45 MB): the golden script and the tests make the same tensors from a
recipe (seed, key -> shape, optional scales), so only the recipe (KBs) is committed.

Each tensor comes from its own numpy PCG64 stream seeded by (seed, crc32(key)), so the order of
the keys does not matter; numpy keeps these streams stable across releases, and the recipe holds a
fingerprint of the result that :func:`check_fingerprint` compares (a changed stream fails there, by
name, not as a parity failure). Used by scripts/golden_detr_timm.py (the reference's venv) and
tests/test_detr_timm.py; depends only on numpy and torch.

Example::

    >>> sd = seeded_state_dict({"conv.weight": [4, 3, 3, 3], "bn.running_var": [4]}, seed=1)
    >>> sd["conv.weight"].shape, bool((sd["bn.running_var"] >= 0.5).all())
    (torch.Size([4, 3, 3, 3]), True)
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def seeded_array(seed: int, name: str, shape: list[int]) -> np.ndarray:
    """Standard normal float32 values of ``shape``, from the stream of (seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.standard_normal(tuple(shape), dtype=np.float32)


def seeded_tensor(seed: int, name: str, shape: list[int], low: float | None = None) -> torch.Tensor:
    """:func:`seeded_array` as a tensor; with ``low``, uniform in [low, low + 1) instead."""
    if low is None:
        return torch.from_numpy(seeded_array(seed, name, shape))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return torch.from_numpy(rng.random(tuple(shape), dtype=np.float32) + np.float32(low))


def seeded_state_dict(shapes: dict[str, list[int]], seed: int,
                      scales: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """A state dict of float32 tensors with sane magnitudes: matrices and kernels normal with
    std 1/sqrt(fan in), norm scales 1 + 0.1 N, biases and running means 0.1 N, running variances
    uniform in [0.5, 1.5); ``scales`` multiplies the tensors whose key starts with a prefix."""
    out = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros(shape, dtype=torch.long)
            continue
        if leaf == "running_var":
            t = seeded_tensor(seed, key, shape, low=0.5)
        elif len(shape) >= 2:
            t = seeded_tensor(seed, key, shape) / math.sqrt(math.prod(shape[1:]))
        elif leaf == "weight":
            t = 1.0 + 0.1 * seeded_tensor(seed, key, shape)
        else:
            t = 0.1 * seeded_tensor(seed, key, shape)
        for prefix, factor in (scales or {}).items():
            if key.startswith(prefix):
                t = t * factor
        out[key] = t.contiguous()
    return out


def fingerprint(state: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sums that tell whether two processes made the same tensors."""
    floats = [t.double() for t in state.values() if t.is_floating_point()]
    return {"sum": float(sum(t.sum() for t in floats)), "abs_sum": float(sum(t.abs().sum() for t in floats)),
            "count": int(sum(t.numel() for t in floats))}


def check_fingerprint(state: dict[str, torch.Tensor], want: dict[str, float]) -> None:
    got = fingerprint(state)
    assert got["count"] == want["count"], (got, want)
    for key in ("sum", "abs_sum"):
        assert abs(got[key] - want[key]) <= 1e-6 * max(1.0, abs(want[key])), (key, got, want)


def recipe_state_dict(recipe: dict) -> dict[str, torch.Tensor]:
    """The state dict of a recipe (``seed``, ``shapes``, ``scales``) written by the golden script."""
    return seeded_state_dict(recipe["shapes"], recipe["seed"], recipe.get("scales"))


def materialize(fixture: Path, target: Path) -> Path:
    """``target`` made a loadable checkpoint folder: the fixture's json files and a
    model.safetensors from its ``weights.json`` recipe (fingerprint checked)."""
    target.mkdir(parents=True, exist_ok=True)
    recipe = json.loads((fixture / "weights.json").read_text())
    for name in ("config.json", "preprocessor_config.json"):
        if (fixture / name).exists():
            (target / name).write_text((fixture / name).read_text())
    state = recipe_state_dict(recipe)
    check_fingerprint(state, recipe["fingerprint"])
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target
