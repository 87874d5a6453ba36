"""Test setup: import mind4_metal from this checkout (not an older installed
copy) and make sure its native module exists, building it in place once
(`python build_ffi.py --inplace`, ~30 s) when it does not."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN_DIR))
for name in [m for m in sys.modules if m == "mind4_metal" or m.startswith("mind4_metal.")]:
    del sys.modules[name]


def _native_ready() -> bool:
    importlib.invalidate_caches()
    try:
        return importlib.util.find_spec("mind4_metal._native") is not None
    except ImportError:
        return False


if not _native_ready() and shutil.which("cmake"):
    subprocess.run(
        [sys.executable, str(PLUGIN_DIR / "build_ffi.py"), "--inplace"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    for name in [m for m in sys.modules if m == "mind4_metal" or m.startswith("mind4_metal.")]:
        del sys.modules[name]

NATIVE = _native_ready()


def pytest_collection_modifyitems(config, items):
    if NATIVE:
        return
    skip = pytest.mark.skip(
        reason="mind4_metal._native is not built (needs CMake and a C compiler)"
    )
    for item in items:
        if "needs_native" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_native: needs the compiled mind4_metal._native")
