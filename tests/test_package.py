"""The package stays cheap to import and honest about what it exposes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_import_pretrained_loads_nothing_heavy():
    mods = _modules_after("import pretrained")
    for heavy in ("torch", "tokenizers", "huggingface_hub", "safetensors", "numpy", "jinja2"):
        assert heavy not in mods, f"import pretrained imported {heavy}"


def test_auto_model_does_not_import_model_files_or_hub():
    mods = _modules_after("from pretrained import AutoModel")
    assert "pretrained.models.bert" not in mods and "huggingface_hub" not in mods
    assert "transformers" not in mods


def test_public_names_resolve():
    import pretrained

    for name in pretrained.__all__:
        assert getattr(pretrained, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pretrained.Nope  # noqa: B018


def test_runtime_never_imports_the_reference():
    bad = ("transformers", "peft", "accelerate", "optimum", "sentence_transformers")
    for path in (ROOT / "pretrained").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")):
                mod = s.split()[1].split(".")[0]
                assert mod not in bad, f"{path}: {s}"
