"""Tests of the example plugin: its own behaviour (min-p) against a NumPy
reference built on the oracle, and the shared conformance specs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from mind4_example_minp.sampler import MinPParams, MinPSampler
from mind4_specs import oracle

from mind4_core.errors import SamplingError


def min_p_reference(logits, temperature, top_k, top_p, min_p):
    """The oracle's distribution, then min-p: drop tokens below min_p x the largest."""
    p = oracle.sampling_probabilities(logits, temperature, top_k, top_p)
    p = np.where(p >= min_p * p.max(axis=-1, keepdims=True), p, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "temperature, top_k, top_p, min_p",
    [(1.0, 0, 1.0, 0.1), (0.7, 0, 1.0, 0.3), (1.3, 8, 0.9, 0.05)],
)
def test_min_p_matches_reference(temperature, top_k, top_p, min_p):
    logits = np.random.default_rng(0).standard_normal((3, 40)) * 2
    params = MinPParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    got = MinPSampler().probabilities(torch.from_numpy(logits), params).numpy()
    ref = min_p_reference(logits, temperature, top_k, top_p, min_p)
    np.testing.assert_array_equal(got > 0, ref > 0)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_min_p_zero_is_the_standard_sampler():
    logits = np.random.default_rng(1).standard_normal((2, 30))
    params = MinPParams(temperature=0.8, top_k=10)
    got = MinPSampler().probabilities(torch.from_numpy(logits), params).numpy()
    np.testing.assert_allclose(got, oracle.sampling_probabilities(logits, 0.8, 10), atol=1e-6)


def test_draws_respect_min_p():
    logits = torch.tensor([[4.0, 3.9, 1.0, 0.0, -1.0]]).repeat(500, 1)
    sampler = MinPSampler()
    draws = sampler.sample(logits, MinPParams(min_p=0.5), sampler.generator(0))
    assert set(draws.tolist()) == {0, 1}


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", True])
def test_invalid_min_p_is_a_sampling_error(bad):
    with pytest.raises(SamplingError, match="min_p"):
        MinPParams(min_p=bad)


def test_plugin_module_does_not_import_torch():
    code = "import sys, mind4_example_minp.plugin; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_sampler_passes_the_conformance_specs():
    """The shared sampler specs, run on this plugin's sampler on its own (the nox
    conformance session runs every spec, with the torch backend)."""
    import mind4_example_minp.plugin
    from mind4_specs.runner import run_specs, spec_args

    from mind4_core.plugins import get_manager, temporary_plugin

    installed = "min_p" in get_manager().names("sampler")
    args = spec_args(components={"sampler": "min_p"}, select="sampler", seed=0, extra=("-q",))
    if installed:
        code, outcomes = run_specs(args)
    else:  # running from a source tree where the plugin is not installed
        with temporary_plugin(mind4_example_minp.plugin, "minp"):
            code, outcomes = run_specs(args)
    assert code == 0, [o for o in outcomes if o.outcome == "failed"]
    assert sum(o.outcome == "passed" for o in outcomes) >= 14
