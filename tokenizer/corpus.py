"""The default training corpus: text every Python installation carries.

``default_corpus_text()`` joins

1. the documentation topics of ``pydoc_data.topics`` (the language reference
   behind ``help("if")``), sorted by topic name, then
2. the docstrings of the standard library's own source files (modules,
   classes, functions), found by parsing each ``.py`` file with :mod:`ast`
   (nothing is imported, nothing runs), in sorted path order, skipping test
   packages and site-packages.

About 2.3 MB of English technical prose with code examples on CPython 3.11.
The result is deterministic for one Python version and standard library:
the same bytes on every run (tests pin that); it differs between versions.
"""

from __future__ import annotations

import ast
import functools
import os
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

#: directories of the standard library that are not read (tests, installed packages)
SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
)
SEPARATOR = "\n\n"


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_source_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` file of the standard library, in sorted order."""
    root = stdlib_dir() if root is None else root
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def docstrings(source: bytes) -> Iterator[str]:
    """Docstrings of a module's source in source order (module, then each class and
    function, depth first), including definitions nested in if/try/with blocks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old modules
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return
    yield from _docstrings_of(tree)


_DEFS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_BLOCKS = ("body", "orelse", "finalbody", "handlers")


def _docstrings_of(node: ast.AST) -> Iterator[str]:
    if isinstance(node, _DEFS):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    # walk statements only (docstrings never live inside expressions)
    for block in _BLOCKS:
        for child in getattr(node, block, ()):
            if isinstance(child, ast.stmt | ast.excepthandler):
                yield from _docstrings_of(child)


def pydoc_topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name].strip()


def stdlib_docstrings() -> Iterator[str]:
    for path in stdlib_source_files():
        yield from docstrings(path.read_bytes())


@functools.lru_cache(maxsize=1)
def default_corpus_text() -> str:
    """The default corpus as one string (cached; a few seconds the first time)."""
    return SEPARATOR.join([*pydoc_topics(), *stdlib_docstrings()]) + "\n"


def stdlib_source_text(limit_bytes: int | None = None) -> str:
    """The standard library's source code itself, concatenated in sorted path order
    (a larger, code-heavy corpus for benchmarks); cut at ``limit_bytes`` of UTF-8."""
    parts: list[str] = []
    size = 0
    for path in stdlib_source_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        parts.append(text)
        size += len(text.encode("utf-8"))
        if limit_bytes is not None and size >= limit_bytes:
            break
    text = "".join(parts)
    if limit_bytes is not None:
        text = text.encode("utf-8")[:limit_bytes].decode("utf-8", errors="ignore")
    return text
