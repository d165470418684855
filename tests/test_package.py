"""The package stays cheap to import and honest about what it exposes."""

from __future__ import annotations

import ast
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


# --- the import graph -------------------------------------------------------------------------
# Every `import` / `from ... import` in a file counts, at module level or inside a function: a
# function-level import is still an import, only a later one. A circle through one works or
# fails depending on which module is imported first and on call order (a half-initialised module
# hands out AttributeErrors), and it means the two modules are one layer split across two files.
# Only `if TYPE_CHECKING:` blocks are left out: they never run (annotations only, e.g. a mixin's
# `self: Tokenizer`), so they cannot take part in an import. Importing `a.b.c` from outside
# `a.b` also runs `a/b/__init__.py`, so that counts as an import of `a.b` too.


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (``pretrained.x.y`` names)."""
    mods: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(n) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and _is_type_checking(node.test)
                     for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # `from a import b` imports the module a.b when there is one, else a name of a
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target not in mods or target == mod:
                    continue
                graph[mod].add(target)
                parts = target.split(".")
                for i in range(2, len(parts)):  # the packages above it that it runs
                    parent = ".".join(parts[:i])
                    if mod != parent and not mod.startswith(parent + "."):
                        graph[mod].add(parent)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = _import_graph(ROOT / "pretrained")
    assert "pretrained.generation.search" in graph and graph["pretrained.generation.search"]
    assert _cycles(graph) == []


def test_nothing_in_the_package_imports_the_top_package():
    # pretrained/__init__.py is the lazy public face; modules import each other directly, so
    # that importing one never depends on what __init__ resolves (or on its being finished)
    graph = _import_graph(ROOT / "pretrained")
    assert [m for m, targets in sorted(graph.items()) if "pretrained" in targets] == []


# The layering docs/architecture.md states ("Import rules"): area -> areas it must never import (at
# run time; `if TYPE_CHECKING:` imports are annotations only). An area is a module or folder under
# pretrained/ ("io", "io.paths"); a module obeys the most specific area it is in, and an entry covers
# everything under it.
_NEVER = {
    "models": {"backends", "generation", "tokenization", "pipelines", "training", "peft", "gguf"},
    "layers": {"models", "backends", "generation", "tokenization", "pipelines", "modeling"},
    "backends": {"models", "generation", "tokenization", "pipelines", "modeling"},
    "gguf": {"models", "tokenization", "generation", "pipelines", "modeling", "auto"},
    "generation": {"models", "pipelines", "tokenization", "backends"},
    "tokenization": {"models", "modeling", "generation", "pipelines", "backends"},
    "cache": {"models", "layers", "generation", "modeling"},
    "quantization": {"models", "backends", "generation", "tokenization", "pipelines", "training", "peft",
                     "gguf", "modeling", "auto"},
    # storage -> tensors: below every model, format and device concern (gguf/ and quantization/ read
    # through it, so it never reads them)
    "io": {"models", "layers", "backends", "generation", "tokenization", "pipelines", "training", "peft",
           "gguf", "quantization", "modeling", "auto", "processing", "vision", "audio", "dispatch",
           "offload", "placement", "cli"},
    "io.paths": {"*"},
    "_version": {"*"},
    "errors": {"*"},
    "heap": {"*"},   # malloc_trim for whoever frees much: it stays a leaf
    # processors turn inputs into tensors for any model; pipelines and training call them
    "processing": {"models", "modeling", "pipelines", "training", "generation", "backends", "peft", "quantization"},
    "vision": {"processing", "models", "pipelines"},  # reading pictures only
    "audio": {"processing", "models", "pipelines"},   # reading audio only
}
# ... and the few that may import only what is listed (a package above a listed module counts:
# importing io.hub runs io/__init__.py)
_ONLY = {"gguf": {"errors", "io.hub"}, "backends": {"layers", "errors", "quantization", "heap"}, "cache": {"errors"}}


def _under(name: str, area: str) -> bool:
    return name == area or name.startswith(area + ".")


def _area(name: str, table: dict[str, set[str]]) -> str | None:
    """The most specific area of ``table`` that the module ``name`` (relative to pretrained.) is in."""
    found = [area for area in table if _under(name, area)]
    return max(found, key=len) if found else None


def test_area_rules_pick_the_most_specific_area():
    assert _area("io.paths", _NEVER) == "io.paths" and _area("io.hub", _NEVER) == "io"
    assert _area("audio.io", _NEVER) == "audio" and _area("auto", _NEVER) is None


def test_import_rules():
    graph = _import_graph(ROOT / "pretrained")
    rel = {m: m.partition(".")[2] for m in graph}
    broken = []
    for mod, targets in sorted(graph.items()):
        area = _area(rel[mod], _NEVER)
        if area is None:
            continue
        never = _NEVER[area]
        for target in sorted(targets):
            t = rel.get(target, "")
            if not _under(t, area) and ("*" in never or any(_under(t, n) for n in never)):
                broken.append(f"{mod} imports {target}")
    for mod, targets in sorted(graph.items()):
        area = _area(rel[mod], _ONLY)
        if area is None:
            continue
        allowed = _ONLY[area] | {area}
        broken += [f"{mod} imports {t}" for t in sorted(targets)
                   if not any(_under(rel[t], a) or a.startswith(rel[t] + ".") for a in allowed)]
    # setup.py loads backends/build.py on its own, before the package is installed
    broken += [f"pretrained.backends.build imports {t}" for t in graph["pretrained.backends.build"]]
    assert broken == []


def test_processors_keep_their_old_public_paths():
    """The processors moved from pretrained.vision / pretrained.audio to pretrained.processing; the
    names those packages gave still resolve there, to the same objects."""
    import pretrained
    import pretrained.audio
    import pretrained.processing
    import pretrained.vision

    for package in (pretrained.vision, pretrained.audio):
        for name in package.__all__:
            if name not in ("load_image", "convert_to_rgb", "load_audio"):
                assert getattr(package, name) is getattr(pretrained.processing, name), name
    for name in ("AutoImageProcessor", "AutoFeatureExtractor", "AutoProcessor"):
        assert getattr(pretrained, name) is getattr(pretrained.processing, name)


def test_docs_stand_alone_in_a_clone():
    """Nothing in the README or docs/ points outside the repository (../shared was the workplace's)."""
    root = Path(__file__).resolve().parent.parent
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        assert "../shared" not in path.read_text(), path.name


def test_a_benchmark_without_the_reference_says_so_before_any_work(tmp_path):
    """No --ref-python and no transformers here: one clear line at once, not a raw
    FileNotFoundError halfway through a run."""
    root = Path(__file__).resolve().parent.parent
    code = "import transformers"
    has_reference = subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    if has_reference:
        pytest.skip("this python has transformers: the benchmark would run")
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_gguf_load.py")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0 and "--ref-python" in out.stderr and "Traceback" not in out.stderr


MAX_LINES = 600  # house rule: no source file over 600 lines (split it along a natural seam)
_LINE_LIMITED_DIRS = ("pretrained", "tests", "scripts", "benchmarks", "examples")


def _files_over(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``"path (n lines)"`` for every .py/.c/.h file under ``root``'s source folders longer than ``limit``.

    >>> _files_over(ROOT)
    []
    """
    offenders = []
    for folder in _LINE_LIMITED_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".c", ".h") or not path.is_file() or "__pycache__" in path.parts:
                continue
            n = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
            if n > limit:
                offenders.append(f"{path.relative_to(root)} ({n} lines)")
    return offenders


def test_the_line_count_check_names_a_long_file(tmp_path):
    """The check itself can fail: a 601-line file is named, a 600-line one and other suffixes are not."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "long.py").write_text("x = 1\n" * 601)
    (tmp_path / "scripts" / "ok.c").write_text("int x;\n" * 600)
    (tmp_path / "scripts" / "notes.md").write_text("text\n" * 900)
    assert _files_over(tmp_path) == ["scripts/long.py (601 lines)"]


def test_no_source_file_is_over_600_lines():
    """Every .py, .c and .h file under pretrained/, tests/, scripts/, benchmarks/ and examples/ has at
    most 600 lines (the message names the offenders)."""
    offenders = _files_over(ROOT)
    assert not offenders, f"over {MAX_LINES} lines, split them: " + ", ".join(offenders)
