"""Make ``mind4_evals`` (folder ``evals/``) importable before packaging is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, Path(__file__).resolve().parent):  # the repo, and evals_fakes.py
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

if importlib.util.find_spec("mind4_evals") is None:  # pragma: no cover - depends on install
    spec = importlib.util.spec_from_file_location(
        "mind4_evals",
        ROOT / "evals" / "__init__.py",
        submodule_search_locations=[str(ROOT / "evals")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["mind4_evals"] = module
    spec.loader.exec_module(module)
