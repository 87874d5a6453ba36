"""What the specs share: seeded inputs, the closeness check, and statistics.

Inputs are fresh random arrays, never zeros, drawn from a generator seeded by
the run seed and the test's id, so a failure reproduces with
``--mind4-seed N`` while every run explores new inputs.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .oracle import relative_error


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends on the run seed and a key (the test id)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def assert_close(out: np.ndarray, ref: np.ndarray, tolerance: float, what: str) -> float:
    """Fail unless ``‖out − ref‖ / ‖ref‖ <= tolerance``; returns the relative error."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape}, expected {ref.shape}"
    assert np.all(np.isfinite(out)), f"{what}: non-finite values in the output"
    err = relative_error(out, ref)
    if err > tolerance:
        worst = np.unravel_index(np.argmax(np.abs(out - ref)), ref.shape)
        raise AssertionError(
            f"{what}: relative error {err:.3e} > tolerance {tolerance:.1e}; "
            f"worst element at {tuple(int(i) for i in worst)}: got {out[worst]:.6g}, "
            f"expected {ref[worst]:.6g}"
        )
    return err


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...], spacing: float) -> np.ndarray:
    """Random values whose rows hold no near-ties: a shuffled grid ``spacing`` apart plus
    a little noise, centred on 0. Rounding to bfloat16 keeps them distinct and in order
    as long as ``spacing`` is well above bf16's step at the largest magnitude."""
    *lead, n = shape
    grid = (np.arange(n) - (n - 1) / 2) * spacing  # (n,)
    rows = rng.permuted(np.broadcast_to(grid, (*lead, n)).copy(), axis=-1)
    return rows + rng.uniform(-0.15, 0.15, size=shape) * spacing


def chi_square_critical(df: int, z: float = 3.719) -> float:
    """Upper quantile of the chi-square distribution with ``df`` degrees of freedom
    (Wilson–Hilferty approximation; ``z`` is the standard normal quantile, 3.719 for
    a significance level of 1e-4)."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` against ``probs`` and its degrees of freedom.

    Bins expected to hold fewer than 5 draws are pooled into one, as the test
    needs. Bins with probability 0 must be empty (checked by the caller).
    """
    n = counts.sum()
    expected = probs * n
    big = expected >= 5
    obs = list(counts[big]) + ([counts[~big].sum()] if (~big).any() else [])
    exp = list(expected[big]) + ([expected[~big].sum()] if (~big).any() else [])
    obs, exp = np.array(obs, np.float64), np.array(exp, np.float64)
    keep = exp > 0
    stat = float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep]))
    return stat, max(int(keep.sum()) - 1, 1)
