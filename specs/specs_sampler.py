"""Samplers: the distribution they draw from, the draws themselves, and seeds.

- with the ``probabilities`` feature, the exact distribution is compared with
  :func:`mind4_specs.oracle.sampling_probabilities` (its support must match
  exactly: top-k and top-p keep precisely the oracle's tokens);
- draws are tested for frequency against the oracle's distribution with a
  chi-square test at a fixed seed (significance 1e-4), and tokens outside the
  support must never be drawn;
- the same seed gives the same draws; temperature 0 is argmax (lowest index
  on ties).

Parameters a sampler does not declare in its features (``temperature``,
``top_k``, ``top_p``) are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from mind4_core.config import SamplingParams

from . import oracle
from .checks import chi_square, chi_square_critical, distinct_values

#: name -> (temperature, top_k, top_p); top_p "auto" picks a value far from every boundary
CASES = {
    "t1": (1.0, 0, 1.0),
    "t0.6": (0.6, 0, 1.0),
    "t1.7": (1.7, 0, 1.0),
    "top_k": (1.0, 5, 1.0),
    "top_p": (0.8, 0, "auto"),
    "top_k_top_p": (1.3, 6, "auto"),
}
FREQUENCY_SEED = 20240601
FREQUENCY_DRAWS = 4000


def needs(sampler, temperature: float, top_k: int, top_p) -> None:
    """Skip unless the sampler declares every parameter the case uses."""
    used = {"temperature": temperature != 1.0, "top_k": top_k > 0, "top_p": top_p != 1.0}
    missing = [f for f, on in used.items() if on and not sampler.has(f)]
    if missing:
        pytest.skip(f"{sampler.record.name!r} does not declare {', '.join(missing)}")


def robust_top_p(logits: np.ndarray, temperature: float, top_k: int) -> float:
    """A top_p whose distance to every row's cumulative-mass boundary is largest,
    so rounding cannot change which tokens are kept."""
    p = oracle.sampling_probabilities(logits, temperature, top_k)  # (B, V)
    boundaries = np.cumsum(-np.sort(-p, axis=-1), axis=-1).ravel()
    candidates = np.linspace(0.3, 0.9, 61)
    distance = np.min(np.abs(candidates[:, None] - boundaries[None, :]), axis=-1)
    return float(candidates[np.argmax(distance)])


def describe(params: SamplingParams) -> str:
    return f"temperature={params.temperature:g} top_k={params.top_k} top_p={params.top_p:.3g}"


def make_params(logits: np.ndarray, temperature: float, top_k: int, top_p) -> SamplingParams:
    if top_p == "auto":
        top_p = robust_top_p(logits, temperature, top_k)
    return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)


def random_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Logits in [-2.5, 2.5] without near-ties (distinct in every dtype)."""
    return distinct_values(rng, (rows, vocab), spacing=5.0 / vocab)


@pytest.mark.parametrize("case", list(CASES))
def test_probabilities_match_oracle(sampler, dtype, tolerance, rng, case):
    """``probabilities(logits, params)`` is the oracle's distribution."""
    if not sampler.has("probabilities"):
        pytest.skip(f"{sampler.record.name!r} does not declare the 'probabilities' feature")
    needs(sampler, *CASES[case])
    arrays = sampler.arrays
    logits = arrays.put(random_logits(rng, 4, 50), dtype)
    params = make_params(arrays.get(logits), *CASES[case])
    ref = oracle.sampling_probabilities(
        arrays.get(logits), params.temperature, params.top_k, params.top_p
    )
    p = arrays.get(sampler.impl.probabilities(logits, params))

    assert p.shape == ref.shape, f"probabilities shape {p.shape}, expected {ref.shape}"
    kept, ref_kept = p > 0, ref > 0
    for row in range(len(ref)):
        assert (kept[row] == ref_kept[row]).all(), (
            f"row {row} [{describe(params)}]: kept {kept[row].sum()} tokens, the oracle keeps {ref_kept[row].sum()}; "
            f"differing token ids {np.flatnonzero(kept[row] != ref_kept[row]).tolist()}"
        )
    err = oracle.relative_error(p, ref)
    assert err <= tolerance, (
        f"probabilities [{describe(params)}]: relative error {err:.3e} > {tolerance:.1e}"
    )


@pytest.mark.parametrize("case", list(CASES))
def test_frequencies_match_oracle(sampler, dtype, case):
    """4000 draws at a fixed seed follow the oracle's distribution (chi-square, p = 1e-4)."""
    needs(sampler, *CASES[case])
    arrays = sampler.arrays
    rng = np.random.default_rng(FREQUENCY_SEED)
    row = random_logits(rng, 1, 12)
    logits = arrays.put(np.repeat(row, FREQUENCY_DRAWS, axis=0), dtype)  # (draws, V)
    params = make_params(arrays.get(logits)[:1], *CASES[case])
    probs = oracle.sampling_probabilities(
        arrays.get(logits)[0], params.temperature, params.top_k, params.top_p
    )

    draws = np.asarray(sampler.impl.sample(logits, params, sampler.impl.generator(FREQUENCY_SEED)))
    assert draws.shape == (FREQUENCY_DRAWS,), f"sample returned shape {draws.shape}"
    counts = np.bincount(draws, minlength=len(probs))
    outside = np.flatnonzero((counts > 0) & (probs == 0))
    assert not len(outside), (
        f"[{describe(params)}] drew tokens {outside.tolist()} that have probability 0"
    )
    stat, df = chi_square(counts, probs)
    critical = chi_square_critical(df)
    assert stat <= critical, (
        f"[{describe(params)}] frequencies {counts.tolist()} do not follow the oracle's "
        f"{np.round(probs, 4).tolist()}: chi-square {stat:.1f} > {critical:.1f} (df {df})"
    )


def test_seeded_draws_are_reproducible(sampler, dtype, rng):
    """The same seed gives the same draws; another seed gives others; draws move on."""
    arrays = sampler.arrays
    logits = arrays.put(random_logits(rng, 64, 16) * 0.3, dtype)  # flat: draws vary a lot
    params = SamplingParams(temperature=1.0)
    impl = sampler.impl
    first = np.asarray(impl.sample(logits, params, impl.generator(1234)))
    again = np.asarray(impl.sample(logits, params, impl.generator(1234)))
    other = np.asarray(impl.sample(logits, params, impl.generator(4321)))
    np.testing.assert_array_equal(first, again, err_msg="same seed, different draws")
    assert (first != other).any(), "seeds 1234 and 4321 drew the same 64 tokens"
    generator = impl.generator(99)
    a = np.asarray(impl.sample(logits, params, generator))
    b = np.asarray(impl.sample(logits, params, generator))
    assert (a != b).any(), (
        "two calls with one generator drew the same 64 tokens: its state does not advance"
    )


def test_temperature_zero_is_argmax(sampler, dtype, rng):
    """Temperature 0 draws the argmax, the lowest index on ties; probabilities are one-hot."""
    arrays = sampler.arrays
    logits = random_logits(rng, 3, 20)
    logits[1, [4, 9]] = 3.0  # a tie at the top: token 4 wins
    logits = arrays.put(logits, dtype)
    params = SamplingParams(temperature=0.0)
    expected = np.argmax(arrays.get(logits), axis=-1)
    assert expected[1] == 4
    draws = np.asarray(sampler.impl.sample(logits, params, sampler.impl.generator(0)))
    np.testing.assert_array_equal(draws, expected)
    if sampler.has("probabilities"):
        p = arrays.get(sampler.impl.probabilities(logits, params))
        np.testing.assert_array_equal(p, np.eye(20)[expected])
