"""examples/debian_text.py: parsing Debian's Translation files, the pairs, the split, the pinned
download (on a hand-written sample in tests/fixtures/debian; no network)."""

import bz2
import hashlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import debian_text as dt  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "debian"


@pytest.fixture(scope="module")
def sample():
    en = list(dt.parse_stanzas(dt.read_text(FIX / "Translation-en"), "en"))
    fr = list(dt.parse_stanzas(dt.read_text(FIX / "Translation-fr"), "fr"))
    return en, fr


def test_parse_synopsis_long_paragraphs_and_verbatim_lines(sample):
    en, fr = sample
    assert [d.package for d in en] == ["gedit-lite", "gedit-lite-data", "chess-fun", "libfoo-doc",
                                       "zzz-untranslated", "chess-fun-alt"]
    first = en[0]
    assert (first.md5, first.lang, first.synopsis) == ("1" * 32, "en", "Lightweight Qt5 plain-text editor")
    # " ." separates paragraphs; lines of a paragraph are joined; "  * x" lines stay lines
    assert first.long == ("A small editor for plain text files, with syntax highlighting.\n"
                          "Features:\n* tabs\n* search and replace\nIt starts fast.")
    assert en[3].long == ""  # a synopsis alone
    assert fr[0].synopsis == "jeu d'échecs pour les enfants" and fr[0].lang == "fr"
    assert fr[0].long == "Jouer aux échecs contre l'ordinateur."


def test_parse_skips_incomplete_stanzas_and_other_languages():
    text = ("Package: a\nDescription-en: no md5\n\n"
            "Description-md5: 00\nDescription-en: no package\n\n"
            "Package: b\nDescription-md5: 01\nDescription-de: Deutsch\n Text\n\n"
            "Package: c\nDescription-md5: 02\nDescription-en: kept\n")
    assert [(d.package, d.synopsis) for d in dt.parse_stanzas(text, "en")] == [("c", "kept")]


def test_translation_pairs_matched_by_md5_once_per_text(sample):
    pairs = list(dt.translation_pairs(*sample))
    # gedit-lite-data repeats gedit-lite's md5, chess-fun-alt repeats chess-fun's English
    # synopsis: each text once. zzz-untranslated has no French, 'orphan' no English.
    assert pairs == [
        {"en": "chess game for kids", "fr": "jeu d'échecs pour les enfants", "package": "chess-fun",
         "split": "train"},
        {"en": "Lightweight Qt5 plain-text editor", "fr": "éditeur de texte simple, léger et en Qt5",
         "package": "gedit-lite", "split": "train"},
        {"en": "documentation for libfoo", "fr": "documentation pour libfoo", "package": "libfoo-doc",
         "split": "validation"},
    ]


def test_summarization_pairs_long_to_synopsis(sample):
    pairs = list(dt.summarization_pairs(sample[0]))
    assert [(p["package"], p["summary"]) for p in pairs] == [
        ("chess-fun", "chess game for kids"), ("chess-fun-alt", "chess game for kids"),
        ("gedit-lite", "Lightweight Qt5 plain-text editor"),
        ("zzz-untranslated", "a package nobody translated")]
    assert pairs[0]["document"] == "Play chess against the computer."


def test_split_is_a_fixed_function_of_the_package_name():
    assert dt.split_of("libfoo-doc") == "validation" and dt.split_of("2ping") == "test"
    assert dt.split_of("chess-fun") == "train"
    names = [f"pkg{i}" for i in range(2000)]
    counts = {s: sum(dt.split_of(n) == s for n in names) for s in ("train", "validation", "test")}
    assert 1700 < counts["train"] < 1900 and 50 < counts["validation"] < 150 and 50 < counts["test"] < 150
    by = dt.by_split(dt.translation_pairs(*[list(dt.parse_stanzas(dt.read_text(FIX / f"Translation-{lang}"),
                                                                   lang)) for lang in ("en", "fr")]))
    assert {k: len(v) for k, v in by.items()} == {"train": 2, "validation": 1, "test": 0}


def test_load_from_given_files():
    out = dt.load("translation", en_path=FIX / "Translation-en", fr_path=FIX / "Translation-fr")
    assert [p["package"] for p in out["train"]] == ["chess-fun", "gedit-lite"]
    out = dt.load("summarization", en_path=FIX / "Translation-en")
    assert len(out["train"]) == 4
    with pytest.raises(ValueError, match="task="):
        dt.load("parsing", en_path=FIX / "Translation-en")


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """A compressed 'Translation-fr.bz2' served from a file:// URL, pinned by its real hash."""
    served = tmp_path / "mirror"
    served.mkdir()
    data = bz2.compress((FIX / "Translation-fr").read_bytes())
    (served / "Translation-fr.bz2").write_bytes(data)
    monkeypatch.setitem(dt.SOURCES, "fr", ("Translation-fr.bz2", hashlib.sha256(data).hexdigest()))
    monkeypatch.delenv(dt.ACCEPT_ENV, raising=False)
    return served.as_uri() + "/"


def test_download_checks_the_hash_caches_and_refetches_a_damaged_copy(tmp_path, archive):
    cache = tmp_path / "cache"
    path = dt.download("fr", cache, base_url=archive)
    assert path == cache / "Translation-fr.bz2"
    assert dt.read_text(path) == (FIX / "Translation-fr").read_text()
    assert [p.name for p in cache.iterdir()] == ["Translation-fr.bz2"]  # no temporary left
    path.write_bytes(b"truncated")
    assert dt.download("fr", cache, base_url=archive).read_bytes() != b"truncated"
    # a cached good copy is used without the server
    assert dt.download("fr", cache, base_url="file:///nonexistent/") == path


def test_download_of_a_changed_archive_says_so_and_how_to_accept_it(tmp_path, archive, monkeypatch):
    monkeypatch.setitem(dt.SOURCES, "fr", ("Translation-fr.bz2", "0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(dt.ArchiveChangedError, match="Debian has updated.*DEBIAN_TEXT_ACCEPT_CHANGED=1"):
        dt.download("fr", cache, base_url=archive)
    assert not any(cache.iterdir())  # nothing kept under the real name
    monkeypatch.setenv(dt.ACCEPT_ENV, "1")
    assert dt.download("fr", cache, base_url=archive).exists()


@pytest.mark.slow
def test_real_pinned_files_when_cached():
    """The real files, only where they are already cached (the test never downloads)."""
    paths = [dt.data_dir() / dt.SOURCES[lang][0] for lang in ("en", "fr")]
    if not all(p.exists() for p in paths):
        pytest.skip(f"not cached: run python examples/debian_text.py to fetch {paths}")
    if [dt.sha256_file(p) for p in paths] != [dt.SOURCES[lang][1] for lang in ("en", "fr")]:
        pytest.skip("the cached files are not the pinned ones")
    en = list(dt.parse_stanzas(dt.read_text(paths[0]), "en"))
    fr = list(dt.parse_stanzas(dt.read_text(paths[1]), "fr"))
    assert (len(en), len(fr)) == (dt.EXPECTED["en_stanzas"], dt.EXPECTED["fr_stanzas"])
    pairs = dt.by_split(dt.translation_pairs(en, fr))
    assert {k: len(v) for k, v in pairs.items()} == dt.EXPECTED["translation"]
    summaries = dt.by_split(dt.summarization_pairs(en))
    assert {k: len(v) for k, v in summaries.items()} == dt.EXPECTED["summarization"]
    test_packages = {p["package"] for p in pairs["test"]}
    assert not test_packages & {p["package"] for p in pairs["train"]}
    assert not {p["en"] for p in pairs["test"]} & {p["en"] for p in pairs["train"]}
