"""Attention: causal GQA with per-head sinks, sliding window and cache offset.

The component (``mind4_attention`` record) is compared with
:func:`mind4_specs.oracle.attention` on fresh random inputs, in prefill,
chunked-prefill and decode shapes, with and without a window, with one offset
for the batch and with one per row, against caches longer than what has been
written (keys past a query must be masked, whatever they hold).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from . import oracle
from .checks import assert_close

#: name -> shapes and masking of one case (B batch, T queries, S cache length)
CASES = {
    "prefill": dict(B=2, T=9, S=9, Hq=4, Hkv=2, D=16, window=None, offset=0),
    "prefill_window": dict(B=2, T=9, S=9, Hq=4, Hkv=2, D=16, window=4, offset=0),
    "mha_window": dict(B=1, T=7, S=7, Hq=3, Hkv=3, D=8, window=2, offset=0),
    "mqa": dict(B=2, T=6, S=6, Hq=4, Hkv=1, D=16, window=None, offset=0),
    "chunk_offset": dict(B=2, T=3, S=11, Hq=4, Hkv=2, D=16, window=None, offset=5),
    "chunk_offset_window": dict(B=2, T=4, S=12, Hq=4, Hkv=2, D=16, window=3, offset=6),
    "decode": dict(B=2, T=1, S=16, Hq=4, Hkv=2, D=16, window=None, offset=10),
    "decode_window": dict(B=2, T=1, S=16, Hq=4, Hkv=2, D=16, window=4, offset=10),
    "decode_row_offsets": dict(B=3, T=1, S=12, Hq=4, Hkv=2, D=16, window=None, offset=[2, 7, 11]),
    "chunk_row_offsets_window": dict(B=2, T=2, S=12, Hq=4, Hkv=2, D=16, window=3, offset=[3, 8]),
}


def run_case(attention, rng: np.random.Generator, case: dict):
    """Call the component on a random case; return (its output, the oracle's)."""
    B, T, S, Hq, Hkv, D = (case[k] for k in ("B", "T", "S", "Hq", "Hkv", "D"))
    arrays = attention.arrays
    q = arrays.put(rng.standard_normal((B, T, Hq, D)), attention.dtype)
    k = arrays.put(rng.standard_normal((B, S, Hkv, D)), attention.dtype)
    v = arrays.put(rng.standard_normal((B, S, Hkv, D)), attention.dtype)
    sinks = arrays.put(rng.standard_normal(Hq) + 1.0, "float32")
    sm_scale = 1.25 / math.sqrt(D)  # not the default, so a hard-coded scale shows
    offset = case["offset"]
    offset_arg = arrays.put(np.array(offset, np.int64)) if isinstance(offset, list) else offset

    out = attention.impl(
        q, k, v, sinks, sm_scale=sm_scale, window=case["window"], offset=offset_arg
    )
    ref = oracle.attention(
        arrays.get(q),
        arrays.get(k),
        arrays.get(v),
        arrays.get(sinks),
        sm_scale=sm_scale,
        window=case["window"],
        offset=np.array(offset),
    )
    return out, ref


@pytest.mark.parametrize("case", list(CASES))
def test_matches_oracle(attention, dtype, tolerance, rng, case):
    """Output equals the oracle's within the backend's tolerance for ``dtype``."""
    out, ref = run_case(attention, rng, CASES[case])
    assert_close(attention.arrays.get(out), ref, tolerance, f"attention [{case}, {dtype}]")


def test_output_shape_and_dtype(attention, dtype, rng):
    """``out`` has q's shape and dtype."""
    out, ref = run_case(attention, rng, CASES["chunk_offset"])
    assert tuple(out.shape) == ref.shape
    assert attention.arrays.dtype_name(out) == dtype, (
        f"attention returned {attention.arrays.dtype_name(out)} for {dtype} inputs"
    )


def test_masked_keys_do_not_leak(attention, dtype, tolerance, rng):
    """Keys past the query and outside the window carry huge values: none may leak."""
    B, T, S, Hq, Hkv, D, offset, window = 1, 2, 10, 2, 1, 8, 4, 3
    arrays = attention.arrays
    q = rng.standard_normal((B, T, Hq, D))
    k = rng.standard_normal((B, S, Hkv, D))
    v = rng.standard_normal((B, S, Hkv, D))
    visible = oracle.attention_mask(T, S, offset, window)[0].any(axis=0)  # (S,)
    k[:, ~visible] *= 30.0  # large scores if they are not masked
    v[:, ~visible] = 1e3
    q, k, v = (arrays.put(a, dtype) for a in (q, k, v))
    sinks = arrays.put(rng.standard_normal(Hq), "float32")
    out = attention.impl(q, k, v, sinks, sm_scale=0.3, window=window, offset=offset)
    ref = oracle.attention(
        arrays.get(q), arrays.get(k), arrays.get(v), arrays.get(sinks),
        sm_scale=0.3, window=window, offset=offset,
    )  # fmt: skip
    assert_close(arrays.get(out), ref, tolerance, f"attention with poisoned masked keys [{dtype}]")
