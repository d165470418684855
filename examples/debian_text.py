"""Real English and French text from Debian's package descriptions, for translation and
summarization.

Debian publishes every package's description (a one-line synopsis and a long description) in
English, and translations of many of them, in ``dists/bookworm/main/i18n/Translation-<lang>``.
The French file has ~21k descriptions; the same ``Description-md5`` (the hash of the English
original) in both files pairs an English text with its French translation:

* translation pairs: English synopsis -> French synopsis ("Lightweight Qt5 plain-text editor" ->
  "éditeur de texte simple, léger et en Qt5");
* summarization pairs: English long description -> its synopsis.

The two files are downloaded once over http from deb.debian.org (apt checks Debian's files by
their signed Release file, which names the same compressed files), pinned by the sha256 recorded
below and cached under ``~/.cache/pretrained/data/`` (``$XDG_CACHE_HOME`` moves it). Debian
updates them at point releases: the hash then no longer matches, and the error says how to accept
the new files (``DEBIAN_TEXT_ACCEPT_CHANGED=1`` or ``--accept-changed``), which changes the data.

The split is a pure function of the package name (sha256, 90/5/5), so every run, and every
machine, puts each package in the same split; pairs that repeat an identical text are kept once,
so no test pair is also a training pair.

Usage::

    python examples/debian_text.py            # download (once), print counts and samples

Example (on the committed sample, no network)::

    >>> import sys; sys.path.insert(0, "examples")
    >>> from debian_text import parse_stanzas
    >>> text = "Package: nano\\nDescription-md5: 0a1b\\nDescription-en: small editor\\n nano is\\n small.\\n .\\n Easy.\\n"
    >>> [(d.package, d.synopsis, d.long) for d in parse_stanzas(text, "en")]
    [('nano', 'small editor', 'nano is small.\\nEasy.')]
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import lzma
import os
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_URL = "http://deb.debian.org/debian/dists/bookworm/main/i18n/"
# What deb.debian.org served on 2026-12-06 (bookworm's Release file lists the same sizes and
# md5s: Translation-en.xz 6107304 bytes, Translation-fr.bz2 2728394 bytes). Debian offers English
# only as .xz and French only as .bz2; both decompress with the standard library.
SOURCES = {
    "en": ("Translation-en.xz", "a3d4a0bfd8e9242810b0885eda7c1a6e05dac15b333ddbaab03ba56f2dfa4bf0"),
    "fr": ("Translation-fr.bz2", "3248f0206d704300067e35cc2d4380dc1f1b418b5b9f446c3d42424b98d0abad"),
}
# What the pinned files give (checked by the slow test): stanzas, and pairs per split.
EXPECTED = {"en_stanzas": 63956, "fr_stanzas": 21420,
            "translation": {"train": 17317, "validation": 926, "test": 966},
            "summarization": {"train": 54526, "validation": 3000, "test": 3079}}
SPLITS = (("train", 90), ("validation", 95), ("test", 100))  # cumulative percent of packages
ACCEPT_ENV = "DEBIAN_TEXT_ACCEPT_CHANGED"


class ArchiveChangedError(RuntimeError):
    """The downloaded file is not the pinned one: Debian has updated it."""


@dataclass(frozen=True)
class Description:
    """One stanza: the package, the md5 of the English original, and the text in ``lang``."""

    package: str
    md5: str
    lang: str
    synopsis: str
    long: str  # paragraphs joined by "\n", the lines of a paragraph by spaces


def data_dir() -> Path:
    """``$XDG_CACHE_HOME/pretrained/data`` (else ``~/.cache/pretrained/data``)."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(home).expanduser() / "pretrained" / "data"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(lang: str, folder: Path | None = None, accept_changed: bool | None = None,
             base_url: str = BASE_URL) -> Path:
    """The pinned ``Translation-<lang>`` file, downloaded once into ``folder`` and hash-checked.

    A cached file is checked too (a truncated or edited one is downloaded again). With
    ``accept_changed`` (default: ``$DEBIAN_TEXT_ACCEPT_CHANGED`` set to 1) a file with another
    hash is kept, and its hash printed for the new pin."""
    name, pinned = SOURCES[lang]
    folder = Path(folder) if folder is not None else data_dir()
    if accept_changed is None:
        accept_changed = os.environ.get(ACCEPT_ENV, "") not in ("", "0")
    target = folder / name
    if target.exists():
        got = sha256_file(target)
        if got == pinned or accept_changed:
            return target
    folder.mkdir(parents=True, exist_ok=True)
    # to a temporary file in the same folder, then one rename: an interrupted download never
    # leaves a half file under the real name
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base_url + name, timeout=60) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        got = sha256_file(Path(tmp))
        if got != pinned and not accept_changed:
            raise ArchiveChangedError(
                f"{base_url}{name} has sha256 {got}, not the pinned {pinned}: Debian has updated "
                f"the file (it does at point releases), so the pairs and their counts will differ "
                f"from the recorded ones. To use the new file, run with {ACCEPT_ENV}=1 (or "
                f"--accept-changed), and record the new hash in SOURCES in {__file__}")
        if got != pinned:
            print(f"note: using {name} with sha256 {got} (pinned: {pinned})", file=sys.stderr)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_text(path: Path) -> str:
    """A Translation file's text, decompressed by its suffix (.xz, .bz2, or plain)."""
    path = Path(path)
    opener = {".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "rb") as f:
        return f.read().decode("utf-8")


def _long_description(lines: list[str]) -> str:
    """deb822 long description: " ." is an empty line between paragraphs; lines starting with
    two spaces are verbatim in the original (lists, commands); here they become a line each, as
    a flat text for models."""
    paragraphs, current = [], []
    for line in lines:
        body = line[1:]
        if body.strip() == ".":
            if current:
                paragraphs.append(" ".join(current))
            current = []
        elif body.startswith(" "):  # verbatim: keep the line on its own
            if current:
                paragraphs.append(" ".join(current))
            paragraphs.append(" ".join(body.split()))
            current = []
        elif body.strip():
            current.append(body.strip())
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(p for p in paragraphs if p)


def parse_stanzas(text: str, lang: str) -> Iterator[Description]:
    """The descriptions of one Translation file; stanzas without a package, an md5 or a
    ``Description-<lang>`` field are skipped."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        cont: list[str] = []
        key = None
        for line in stanza.splitlines():
            if line[:1].isspace():
                if key == f"Description-{lang}":
                    cont.append(line)
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        synopsis = fields.get(f"Description-{lang}", "")
        if fields.get("Package") and fields.get("Description-md5") and synopsis:
            yield Description(fields["Package"], fields["Description-md5"], lang, synopsis,
                              _long_description(cont))


def split_of(package: str) -> str:
    """'train' (90%), 'validation' (5%) or 'test' (5%), fixed by the package name."""
    bucket = int(hashlib.sha256(package.encode()).hexdigest(), 16) % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def translation_pairs(en: list[Description], fr: list[Description]) -> Iterator[dict[str, str]]:
    """English -> French synopsis pairs, matched by ``Description-md5``, in package order.

    Each yields ``{"en", "fr", "package", "split"}``. One pair per English synopsis (several
    packages share one text; the first package by name decides the split), so an identical pair
    never lands in two splits."""
    english = {d.md5: d for d in sorted(en, key=lambda d: d.package)}
    seen: set[str] = set()
    for d in sorted(fr, key=lambda d: d.package):
        source = english.get(d.md5)
        if source is None or source.synopsis in seen:
            continue
        seen.add(source.synopsis)
        yield {"en": source.synopsis, "fr": d.synopsis, "package": d.package,
               "split": split_of(d.package)}


def summarization_pairs(en: list[Description]) -> Iterator[dict[str, str]]:
    """English long description -> synopsis pairs ``{"document", "summary", "package",
    "split"}``, in package order; descriptions without a long part are skipped, and each
    document is kept once."""
    seen: set[str] = set()
    for d in sorted(en, key=lambda d: d.package):
        if not d.long or d.long in seen:
            continue
        seen.add(d.long)
        yield {"document": d.long, "summary": d.synopsis, "package": d.package,
               "split": split_of(d.package)}


def by_split(pairs: Iterator[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {name: [] for name, _ in SPLITS}
    for p in pairs:
        out[p["split"]].append(p)
    return out


def load(task: str, folder: Path | None = None, en_path: Path | None = None,
         fr_path: Path | None = None) -> dict[str, list[dict[str, str]]]:
    """``task`` "translation" or "summarization": the pairs by split, from the given files or
    the pinned downloads (fetched when not cached)."""
    en = list(parse_stanzas(read_text(en_path or download("en", folder)), "en"))
    if task == "summarization":
        return by_split(summarization_pairs(en))
    if task != "translation":
        raise ValueError(f"task={task!r}: expected 'translation' or 'summarization'")
    fr = list(parse_stanzas(read_text(fr_path or download("fr", folder)), "fr"))
    return by_split(translation_pairs(en, fr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accept-changed", action="store_true",
                        help="keep files whose sha256 differs from the pinned one")
    parser.add_argument("--folder", default=None, help=f"cache folder (default {data_dir()})")
    a = parser.parse_args()
    folder = Path(a.folder) if a.folder else None
    paths = {lang: download(lang, folder, accept_changed=a.accept_changed or None) for lang in SOURCES}
    for lang, path in paths.items():
        print(f"{path}  sha256 {sha256_file(path)}")
    en = list(parse_stanzas(read_text(paths["en"]), "en"))
    fr = list(parse_stanzas(read_text(paths["fr"]), "fr"))
    print(f"stanzas: {len(en)} en, {len(fr)} fr")
    for task, pairs in (("translation", by_split(translation_pairs(en, fr))),
                        ("summarization", by_split(summarization_pairs(en)))):
        print(task, {k: len(v) for k, v in pairs.items()})
        print("  e.g.", pairs["test"][0])


if __name__ == "__main__":
    main()
