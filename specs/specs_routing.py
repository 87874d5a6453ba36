"""MoE routing: top-k experts, gate weights, and (feature ``experts``) expert compute.

``route`` must pick exactly the oracle's experts in the same order (inputs
are made without near-ties, so the choice is unambiguous in every dtype) and
give gate weights that are a softmax over the selected logits only.
``experts`` is compared with the clamped-SwiGLU oracle, on inputs large
enough that the clamp at ``swiglu_limit`` is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest

from . import oracle
from .checks import assert_close, distinct_values

#: name -> (tokens N, experts E, experts per token k)
ROUTE_CASES = {"e4_k2": (7, 4, 2), "e8_k4": (5, 8, 4), "e6_k1": (6, 6, 1), "e32_k4": (3, 32, 4)}


def random_router_logits(rng: np.random.Generator, n: int, e: int) -> np.ndarray:
    return distinct_values(rng, (n, e), spacing=0.5)


@pytest.mark.parametrize("case", list(ROUTE_CASES))
def test_route_matches_oracle(moe_routing, dtype, tolerance, rng, case):
    """Same experts in the same order; weights within tolerance; each row sums to 1."""
    n, e, k = ROUTE_CASES[case]
    arrays = moe_routing.arrays
    logits = arrays.put(random_router_logits(rng, n, e), dtype)
    indices, weights = moe_routing.impl.route(logits, k)
    ref_indices, ref_weights = oracle.route(arrays.get(logits), k)

    indices = arrays.get(indices)
    assert indices.shape == (n, k), f"indices shape {indices.shape}, expected {(n, k)}"
    np.testing.assert_array_equal(
        indices, ref_indices, err_msg="route chose other experts (or order)"
    )
    weights = arrays.get(weights)
    assert_close(weights, ref_weights, tolerance, f"gate weights [{case}, {dtype}]")
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=max(tolerance, 1e-6) * 2)


def test_route_output_types(moe_routing, dtype, rng):
    """Indices are int64 and gate weights float32, as the protocol says."""
    arrays = moe_routing.arrays
    indices, weights = moe_routing.impl.route(arrays.put(random_router_logits(rng, 4, 6), dtype), 2)
    assert arrays.dtype_name(indices) == "int64"
    assert arrays.dtype_name(weights) == "float32"


#: name -> (N, H, I, E, k)
EXPERT_CASES = {"e4_k2": (6, 32, 16, 4, 2), "e8_k4": (4, 32, 32, 8, 4)}


@pytest.mark.parametrize("case", list(EXPERT_CASES))
def test_experts_match_oracle(moe_routing, dtype, tolerance, rng, case):
    """Clamped SwiGLU experts, weighted by the gates, equal the oracle's."""
    if not moe_routing.has("experts"):
        pytest.skip(f"{moe_routing.record.name!r} does not declare the 'experts' feature")
    n, h, inter, e, k = EXPERT_CASES[case]
    limit = 7.0
    arrays = moe_routing.arrays
    ref_indices, ref_weights = oracle.route(random_router_logits(rng, n, e), k)

    x = arrays.put(rng.standard_normal((n, h)), dtype)
    scale = 4.0 / np.sqrt(h)  # pre-activations of std ~4: some exceed the limit of 7
    mlp1_weight = arrays.put(rng.standard_normal((e, 2 * inter, h)) * scale, dtype)
    mlp1_bias = arrays.put(rng.standard_normal((e, 2 * inter)), dtype)
    mlp2_weight = arrays.put(rng.standard_normal((e, h, inter)) / np.sqrt(inter), dtype)
    mlp2_bias = arrays.put(rng.standard_normal((e, h)), dtype)
    indices = arrays.put(ref_indices.astype(np.int64))
    weights = arrays.put(ref_weights, "float32")

    out = moe_routing.impl.experts(
        x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, limit
    )
    ref = oracle.experts(
        arrays.get(x), ref_indices, arrays.get(weights), arrays.get(mlp1_weight),
        arrays.get(mlp1_bias), arrays.get(mlp2_weight), arrays.get(mlp2_bias), limit,
    )  # fmt: skip
    assert_close(arrays.get(out), ref, tolerance, f"experts [{case}, {dtype}]")
