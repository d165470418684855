"""Spoken digits made with espeak-ng: "zero" .. "nine" said by ~100 voice variants in 8 English
accents, at many speeds and pitches, as 16 kHz mono WAV files with a manifest.

The split is by VOICE: espeak-ng's voice variants (``espeak-ng --voices=variant``: ``f3``,
``klatt2``, ``m7``, ``Alex``, ``whisper``...; their timbre, formants, breathiness) are assigned to
``test`` (16 variants) and ``validation`` (12) by a hash of their names, the rest (with the
default voice) to ``train``. No test or validation voice is ever heard in training; the accents
(``en``, ``en-us``, ``en-gb-scotland``, ``en-gb-x-rp``, ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``,
``en-029``, ``en-us-nyc``: pronunciation rules) are shared by all splits. Each (voice, digit) is
said ``takes`` times (4), each take in a different accent, at a speed of 100-220 words per
minute and a pitch of 15-85, drawn from a generator seeded by the voice, the digit and the take,
so the data set is the same on every machine with the same espeak-ng.

Each clip is espeak-ng's 22.05 kHz output resampled to 16 kHz (soxr, by
``pretrained.audio.load_audio``), with the silence espeak-ng adds around the word cut to 50 ms,
stored as 16-bit PCM. Everything lands in ``~/.cache/pretrained/data/spoken-digits/`` (under
``$XDG_CACHE_HOME`` when set): ``wav/<split>/<voice>/<word>-<take>.wav`` and
``manifest.jsonl`` (one JSON object per clip: ``path`` relative to the folder, ``label``,
``word``, ``voice``, ``accent``, ``speed``, ``pitch``, ``split``, ``seconds``), plus
``info.json`` (espeak-ng's version, the voices of each split, counts). The folder is written
under a temporary name and renamed when complete; a folder made with other settings is remade.

Usage::

    python examples/spoken_digits.py            # makes the data set (about a minute), prints counts
    python examples/spoken_digits.py --force    # remakes it

    >>> import sys; sys.path.insert(0, "examples")      # doctest: +SKIP
    >>> import spoken_digits                             # doctest: +SKIP
    >>> data = spoken_digits.load()                      # doctest: +SKIP
    >>> data["test"][0]["word"], data["test"][0]["split"]   # doctest: +SKIP
    ('zero', 'test')
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
N_TEST_VOICES, N_VALIDATION_VOICES = 16, 12
TAKES = 4
SPEEDS, PITCHES = (100, 220), (15, 85)
RATE = 16000
MARGIN_S = 0.05
VERSION = 1  # bump when anything above changes the files


def default_folder() -> Path:
    from pretrained.io.paths import cache_home

    return cache_home() / "pretrained" / "data" / "spoken-digits"


def espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"espeak-ng is needed to make the spoken digits ({e}); on Debian: apt install "
                           "espeak-ng") from None
    return out.strip()


def variants() -> list[str]:
    """espeak-ng's voice variants (file names, as ``-v en+<name>`` takes them), sorted."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[4][3:] for line in out.splitlines()[1:] if len(line.split()) >= 5
             and line.split()[4].startswith("!v/")}
    return sorted(names)


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def split_voices(names: list[str]) -> dict[str, list[str]]:
    """Variants by split: the first 16 by hash of the name are test, the next 12 validation."""
    ranked = sorted(names, key=lambda n: _hash("voice", n))
    test, validation = ranked[:N_TEST_VOICES], ranked[N_TEST_VOICES:N_TEST_VOICES + N_VALIDATION_VOICES]
    train = ["default"] + sorted(set(names) - set(test) - set(validation))
    return {"train": train, "validation": sorted(validation), "test": sorted(test)}


def plan(voices: dict[str, list[str]]) -> list[dict]:
    """Every clip to make: split, voice, word, take, accent, speed, pitch."""
    rows = []
    for split, names in voices.items():
        for voice in names:
            for label, word in enumerate(LABELS):
                rng = np.random.default_rng(_hash("clip", voice, word) % 2**63)
                first = int(rng.integers(len(ACCENTS)))
                for take in range(TAKES):
                    rows.append({"split": split, "voice": voice, "word": word, "label": label, "take": take,
                                 "accent": ACCENTS[(first + take * 3) % len(ACCENTS)],  # 4 different accents
                                 "speed": int(rng.integers(SPEEDS[0], SPEEDS[1] + 1)),
                                 "pitch": int(rng.integers(PITCHES[0], PITCHES[1] + 1))})
    return rows


def trim(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """Cut the silence around the word, keeping ``MARGIN_S`` on each side."""
    loud = np.nonzero(np.abs(samples) > 0.01 * max(float(np.abs(samples).max()), 1e-6))[0]
    if loud.size == 0:
        return samples
    margin = int(MARGIN_S * rate)
    return samples[max(0, loud[0] - margin): loud[-1] + margin + 1]


def synthesize(row: dict, folder: Path) -> dict:
    import soundfile as sf

    from pretrained.audio import load_audio

    voice = row["accent"] if row["voice"] == "default" else f"{row['accent']}+{row['voice']}"
    rel = Path("wav") / row["split"] / row["voice"] / f"{row['word']}-{row['take']}.wav"
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(row["speed"]), "-p", str(row["pitch"]), "-w", tmp.name,
                        row["word"]], check=True, capture_output=True)
        samples = trim(load_audio(tmp.name, RATE))
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / rel), samples, RATE, subtype="PCM_16")
    return {"path": str(rel), **{k: row[k] for k in ("label", "word", "voice", "accent", "speed", "pitch", "split")},
            "seconds": round(len(samples) / RATE, 3)}


def settings() -> dict:
    return {"version": VERSION, "labels": LABELS, "accents": ACCENTS, "takes": TAKES, "speeds": SPEEDS,
            "pitches": PITCHES, "rate": RATE, "n_test_voices": N_TEST_VOICES,
            "n_validation_voices": N_VALIDATION_VOICES}


def make(folder: str | os.PathLike | None = None, force: bool = False, workers: int = 2) -> Path:
    """Make the data set in ``folder`` (default :func:`default_folder`) unless it is there with
    these settings; returns the folder."""
    folder = Path(folder) if folder is not None else default_folder()
    info_path = folder / "info.json"
    if not force and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("settings") == json.loads(json.dumps(settings())):
            return folder
    version = espeak_version()
    voices = split_voices(variants())
    rows = plan(voices)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        with ThreadPoolExecutor(workers) as pool:
            made = list(pool.map(lambda r: synthesize(r, work), rows))
        with open(work / "manifest.jsonl", "w") as f:
            for m in made:
                f.write(json.dumps(m) + "\n")
        counts = {s: sum(m["split"] == s for m in made) for s in voices}
        info = {"settings": settings(), "espeak_ng": version, "voices": voices, "clips": counts,
                "seconds": {"mean": round(float(np.mean([m["seconds"] for m in made])), 3),
                            "max": max(m["seconds"] for m in made)}}
        (work / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def load(folder: str | os.PathLike | None = None, make_if_missing: bool = True) -> dict[str, list[dict]]:
    """The manifest rows by split (``path`` made absolute); makes the data set when absent."""
    folder = Path(folder) if folder is not None else default_folder()
    if make_if_missing:
        make(folder)
    elif not (folder / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"no spoken digits in {folder}: run python examples/spoken_digits.py")
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    with open(folder / "manifest.jsonl") as f:
        for line in f:
            row = json.loads(line)
            row["path"] = str(folder / row["path"])
            out[row["split"]].append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=None)
    parser.add_argument("--force", action="store_true")
    a = parser.parse_args()
    folder = make(a.folder, force=a.force)
    info = json.loads((folder / "info.json").read_text())
    print(json.dumps({"folder": str(folder), "clips": info["clips"], "seconds": info["seconds"],
                      "voices": {k: len(v) for k, v in info["voices"].items()},
                      "test_voices": info["voices"]["test"], "espeak_ng": info["espeak_ng"]}, indent=2))


if __name__ == "__main__":
    main()
