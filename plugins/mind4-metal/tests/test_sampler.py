"""The metal sampler against the oracle's sampling distribution, seeded
reproducibility, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from mind4_specs import oracle

from mind4_core.config import SamplingParams
from mind4_core.errors import SamplingError

pytestmark = pytest.mark.needs_native


@pytest.fixture
def sampler():
    from mind4_metal.sampler import MetalSampler

    return MetalSampler(device="cpu", dtype="float32")


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.83), (0.9, 12, 0.61), (2.0, 1, 1.0)],
)
def test_probabilities_match_oracle(sampler, temperature, top_k, top_p):
    logits = np.random.default_rng().normal(0, 3, size=(3, 50)).astype(np.float32)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    got = sampler.probabilities(logits, params)
    want = oracle.sampling_probabilities(logits, temperature, top_k, top_p)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_draws_follow_the_distribution(sampler):
    logits = np.random.default_rng().normal(0, 1, size=(1, 6)).astype(np.float32)
    params = SamplingParams(temperature=0.8, top_k=5, top_p=0.95, seed=7)
    gen = sampler.generator(params.seed)
    draws = np.array([sampler.sample(logits, params, gen)[0] for _ in range(6000)])
    want = oracle.sampling_probabilities(logits[0], 0.8, 5, 0.95)
    counts = np.bincount(draws, minlength=6)
    assert (counts[want == 0] == 0).all()
    expected = want * len(draws)
    keep = want > 0
    chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
    assert chi2 < 40, (counts, expected)


def test_seeds(sampler):
    logits = np.random.default_rng().normal(0, 1, size=(2, 40)).astype(np.float32)
    params = SamplingParams(temperature=1.0, seed=3)

    def run(seed):
        gen = sampler.generator(seed)
        return [sampler.sample(logits, params, gen).tolist() for _ in range(20)]

    assert run(3) == run(3)
    assert run(3) != run(4)
    out = sampler.sample(logits, params, None)
    assert out.dtype == np.int64 and out.shape == (2,)


def test_bad_input(sampler):
    params = SamplingParams()
    with pytest.raises(SamplingError, match="NaN"):
        sampler.sample(np.array([[0.0, np.nan]], np.float32), params, sampler.generator(0))
    with pytest.raises(SamplingError, match="shape"):
        sampler.sample(np.zeros((1, 2, 3), np.float32), params, None)
    with pytest.raises(SamplingError, match="seed"):
        sampler.generator(True)
