"""Shared test helpers: float64 references and relative errors."""

from __future__ import annotations

import os

import numpy as np
import torch

#: float32 and float16 everywhere; bfloat16 only compiled on a GPU (the interpreter's
#: bf16 tl.dot is wrong)
ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if ON_GPU else [])

#: ‖out − ref‖/‖ref‖ allowed per dtype of the kernel's inputs
TOL = {torch.float32: 2e-3, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def rel_err(out, ref) -> float:
    out = np.asarray(
        out.detach().cpu().double() if isinstance(out, torch.Tensor) else out, np.float64
    )
    ref = np.asarray(
        ref.detach().cpu().double() if isinstance(ref, torch.Tensor) else ref, np.float64
    )
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert np.isfinite(out).all(), "non-finite output"
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def f64(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()
