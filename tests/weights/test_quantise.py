"""``mxfp4.quantise`` (what ``mind4 convert --experts mxfp4`` uses) agrees bit for bit with the
oracle, dequantised values included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mind4_specs import oracle

from mind4_core.checkpoint import bf16_bits_to_float32, to_bf16_bits
from mind4_core.mxfp4 import quantise as quantise_mxfp4


def _check(x: np.ndarray) -> None:
    blocks, scales, values = quantise_mxfp4(x)
    ref_blocks, ref_scales = oracle.mxfp4_encode(x)
    np.testing.assert_array_equal(blocks, ref_blocks)
    np.testing.assert_array_equal(scales, ref_scales)
    np.testing.assert_array_equal(values, oracle.mxfp4_decode(ref_blocks, ref_scales))


def test_gaussian_and_bf16_weights():
    rng = np.random.default_rng(7)
    x = (0.02 * rng.standard_normal((3, 40, 96))).astype(np.float32)
    _check(x)
    _check(bf16_bits_to_float32(to_bf16_bits(x)))  # bf16 data hits exact ties often


def test_every_tie_goes_to_the_even_code():
    midpoints = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    row = np.array([6.0, *midpoints, *(-m for m in midpoints), 0.0, -0.0], np.float32)
    x = np.concatenate([row, np.zeros(32 - len(row), np.float32)])[None]  # (1, 32)
    blocks, scales, values = quantise_mxfp4(x)
    assert scales[0, 0] == 127  # amax 6 -> scale 1
    np.testing.assert_array_equal(values[0, 1:8], [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0])
    np.testing.assert_array_equal(values[0, 8:15], [-0.0, -1, -1, -2, -2, -4, -4])
    _check(x * np.float32(2.0**-20))
    _check(x * np.float32(2.0**20))


def test_zero_blocks_and_tiny_values():
    x = np.zeros((2, 64), np.float32)
    x[1, 33] = 1e-40  # subnormal
    x[1, 40] = -3e-39
    _check(x)
    assert quantise_mxfp4(x)[1][0, 0] == 0  # an all-zero block: the smallest scale


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.sampled_from([32, 64, 96])),
        elements=st.floats(-(2.0**100), 2.0**100, width=32),
    )
)
def test_matches_the_oracle_on_any_finite_input(x):
    _check(x)
