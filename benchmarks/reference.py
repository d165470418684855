"""Which python runs the reference (transformers) in the benchmarks, checked before any work."""

from __future__ import annotations

import subprocess
import sys

HOW = ("a python with transformers installed, e.g.: python3 -m venv ref && ref/bin/pip install "
       "torch==2.13.0 'transformers>=5,<6' && pass --ref-python ref/bin/python")


def reference_python(given: str | None) -> str:
    """``given`` if it imports transformers; else, with none given, this interpreter if it does;
    else exit at once with what to do (not halfway through a run with a raw FileNotFoundError)."""
    candidate = given or sys.executable
    try:
        ok = subprocess.run([candidate, "-c", "import transformers"], capture_output=True,
                            timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        where = f"--ref-python {given} cannot import transformers" if given else \
            "no --ref-python given and this python has no transformers"
        sys.exit(f"{where}; the reference needs {HOW}")
    return candidate
