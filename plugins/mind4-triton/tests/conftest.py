"""Run the Triton kernels in Triton's interpreter when no CUDA GPU is present.

``TRITON_INTERPRET`` must be set before triton is first imported, so this runs
at collection time. On a CUDA machine the same tests run compiled kernels.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a test requirement
        has_cuda = False
    if not has_cuda:
        os.environ["TRITON_INTERPRET"] = "1"

# make the package importable without installation
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))


@pytest.fixture
def device() -> str:
    import torch

    return (
        "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
    )
