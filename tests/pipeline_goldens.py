"""Shared helpers for the pipeline tests: the reference's goldens and how to compare with them.

The goldens (tests/fixtures/goldens/pipelines/<task>.json) are written by
scripts/golden_pipelines.py from the reference library's pipelines on the tiny checkpoints in
tests/fixtures/models/pipe-bert-*.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDENS = FIX / "goldens" / "pipelines"
SCORE_ATOL = 1e-4


def model_path(name: str) -> str:
    return str(FIX / "models" / name)


def cases(filename: str) -> list[dict]:
    return json.loads((GOLDENS / filename).read_text(encoding="utf-8"))["cases"]


def case_ids(filename: str, *, errors: bool = False) -> list[str]:
    return [c["name"] for c in cases(filename) if ("error" in c) == errors]


def case(filename: str, name: str) -> dict:
    return next(c for c in cases(filename) if c["name"] == name)


@lru_cache(maxsize=64)
def _pipe(task: str, model: str, init_json: str):
    from pretrained.pipelines import pipeline

    return pipeline(task, model=model_path(model), **json.loads(init_json))


def get_pipe(task: str, c: dict):
    return _pipe(task, c["model"], json.dumps(c["init"], sort_keys=True))


def run(task: str, c: dict, **overrides: Any) -> Any:
    """Our pipeline's output for a golden case (the same init, inputs and call)."""
    pipe = get_pipe(task, c)
    kwargs = {**c["kwargs"], **overrides}
    if c["kind"] == "generator":
        out = pipe((x for x in c["inputs"]), **kwargs)
        assert not isinstance(out, list), "a generator input must give a generator back"
        return list(out)
    if c["kind"] == "keywords":
        return pipe(**c["inputs"], **kwargs)
    return pipe(c["inputs"], **kwargs)


def to_plain(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return {"tensor_shape": list(x.shape), "values": x.tolist()}
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def assert_same(ours: Any, ref: Any, where: str = "output", atol: float = SCORE_ATOL) -> None:
    """Same structure, same strings/ints/bools, floats within ``atol``."""
    ours = to_plain(ours)
    if isinstance(ref, dict):
        assert isinstance(ours, dict), f"{where}: expected a dict, got {type(ours).__name__}: {ours!r}"
        assert list(ours) == list(ref), f"{where}: keys {list(ours)} != reference {list(ref)}"
        for k in ref:
            assert_same(ours[k], ref[k], f"{where}[{k!r}]", atol)
    elif isinstance(ref, list):
        assert isinstance(ours, list), f"{where}: expected a list, got {type(ours).__name__}: {ours!r}"
        assert len(ours) == len(ref), f"{where}: length {len(ours)} != reference {len(ref)}\nours {ours}\nref  {ref}"
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, f"{where}[{i}]", atol)
    elif isinstance(ref, float) and not isinstance(ref, bool):
        assert isinstance(ours, (float, int)) and not isinstance(ours, bool), f"{where}: {ours!r} is not a number"
        assert math.isclose(ours, ref, abs_tol=atol), f"{where}: {ours} != reference {ref}"
    else:
        assert type(ours) is type(ref) and ours == ref, f"{where}: {ours!r} != reference {ref!r}"
