"""Run the tests against the working tree (the package is not installed)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The test models are tiny: one intra-op thread is faster than two (no thread hand-off per op),
# and leaves the other core to a parallel worker.
torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _cpu_suite(request):
    """The goldens are CPU numbers and the tests build CPU inputs, while pipelines and the Trainer
    move to a GPU when there is one (as the reference's do): on a machine with CUDA, every test
    module but tests/test_cuda.py runs as on a CPU-only machine (subprocesses too). Module scope,
    so that module-scoped fixtures (pipelines built once per file) are made after it."""
    if request.path.name == "test_cuda.py" or not torch.cuda.is_available():
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)
        mp.setattr(torch.cuda, "device_count", lambda: 0)
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        yield
