"""Shared fixtures: import paths, small configs, random canonical weights, checkpoints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PLUGIN_ROOT.parents[1]
for path in (PLUGIN_ROOT, REPO_ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _import_specs_from_tree() -> None:
    """``mind4_specs`` lives in ``specs/``; until the distribution is installed, map it."""
    if importlib.util.find_spec("mind4_specs") is not None:
        return
    init = REPO_ROOT / "specs" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "mind4_specs", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["mind4_specs"] = module
    spec.loader.exec_module(module)


_import_specs_from_tree()

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
