"""Run the tests against the working tree (the package is not installed)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The test models are tiny: one intra-op thread is faster than two (no thread hand-off per op),
# and leaves the other core to a parallel worker.
torch.set_num_threads(1)
