"""Make ``mind4_tokenizer`` importable from the source tree (folder ``tokenizer/``)
when the distribution is not installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if importlib.util.find_spec("mind4_tokenizer") is None:
    spec = importlib.util.spec_from_file_location(
        "mind4_tokenizer",
        ROOT / "tokenizer" / "__init__.py",
        submodule_search_locations=[str(ROOT / "tokenizer")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["mind4_tokenizer"] = module
    spec.loader.exec_module(module)


@pytest.fixture()
def no_tiktoken_cache(monkeypatch):
    """``tiktoken.load.load_tiktoken_bpe`` copies every file it reads into its cache
    folder; an empty TIKTOKEN_CACHE_DIR turns that off so tests leave /tmp alone."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
