"""What the golden scripts share (run with the reference's venv; ``scripts/`` is on ``sys.path``
both when a script runs alone and under make_goldens.py)."""

from __future__ import annotations

import torch


def ref_load(cls, folder, **kw):
    """The reference's model from ``folder``, refusing any missing, mismatched or unexpected key."""
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    if info["missing_keys"] or info["mismatched_keys"] or info["unexpected_keys"]:
        raise SystemExit(f"{folder}: the reference did not load cleanly: {info}")
    return model.eval()


def classification_loss_cases(config, seed: int, rows: int) -> dict[str, dict]:
    """Labels for every loss a classification head has: single-label, multi-label by problem_type
    and by float labels, regression by problem_type (or by num_labels=1)."""
    g = torch.Generator().manual_seed(seed + 1)
    n = config.num_labels
    if n == 1:
        return {"regression": {"labels": torch.randn(rows, generator=g)}}
    multi = (torch.rand(rows, n, generator=g) < 0.5).float()
    return {
        "single": {"labels": torch.randint(0, n, (rows,), generator=g)},
        "multi_label": {"labels": multi, "config": {"problem_type": "multi_label_classification"}},
        "multi_label_inferred": {"labels": multi},   # float labels, no problem_type
        "regression": {"labels": torch.randn(rows, n, generator=g), "config": {"problem_type": "regression"}},
    }
