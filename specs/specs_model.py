"""Model-level specs: a whole backend, through the engine, on random checkpoints.

- logits of a random model equal the oracle's forward pass (bf16 and MXFP4
  experts, and a model made by ``init_checkpoint``);
- incremental decode with the KV cache equals a full recompute;
- prefill in chunks at any offset equals one-shot prefill, also after a
  session reset that reuses a shared prefix;
- a batch equals its rows run one by one (per-row cache offsets);
- greedy generation follows the oracle; seeded sampling is reproducible, and
  its frequencies follow the oracle's distribution (chi-square, fixed seed).

Reduced precision can flip a routing decision whose top-k logits nearly tie,
and then one token's output legitimately differs. So the input tokens are
drawn so that, in the oracle, every routing decision is clear by a gap of
``4 × tolerance`` (see :func:`robust_tokens`), and generated tokens are
compared only up to the first position where the oracle itself is that
close to a tie.
"""

from __future__ import annotations

import numpy as np
import pytest

from mind4_core.config import SamplingParams

from . import oracle
from .checks import assert_close, chi_square, chi_square_critical
from .models import SPEC_CONFIG
from .specs_sampler import FREQUENCY_SEED, describe, robust_top_p

LENGTH = 20  # tokens per test sequence: several sliding windows long


# ----------------------------------------------------------------------------- helpers


def routing_gaps(weights, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oracle logits of ``tokens (T,)`` and, per position, the smallest gap (over layers)
    between the k-th and (k+1)-th router logit, relative to the root mean square of that
    position's router logits: how clear the expert choice is, on the scale at which a
    backend's relative error perturbs it."""
    trace: dict = {}
    logits = oracle.forward(weights, SPEC_CONFIG, tokens[None], trace)[0]  # (T, V)
    k = SPEC_CONFIG.experts_per_token
    gaps = []
    for router_logits in trace["router_logits"]:  # (1, T, E) per layer
        ordered = -np.sort(-router_logits[0], axis=-1)
        scale = np.sqrt(np.mean(ordered**2, axis=-1)) + 1e-12  # (T,)
        gaps.append(
            (ordered[..., k - 1] - ordered[..., k]) / scale if k < ordered.shape[-1] else np.inf
        )
    return logits, np.min(np.broadcast_arrays(*gaps), axis=0)


def robust_tokens(
    weights, rng: np.random.Generator, rows: int, length: int, gap: float, prefix=()
) -> np.ndarray:
    """Random ``(rows, length)`` tokens starting with ``prefix``, each new one chosen
    (among a few tries) so that every routing decision at its position is clear by
    ``gap`` in the oracle."""
    out = np.zeros((rows, length), np.int64)
    out[:, : len(prefix)] = prefix
    for row in range(rows):
        for t in range(len(prefix), length):
            for _ in range(50):
                out[row, t] = rng.integers(SPEC_CONFIG.vocab_size)
                _, gaps = routing_gaps(weights, out[row, : t + 1])
                if gaps[t] >= gap:
                    break
    return out


def router_gap(tolerance: float) -> float:
    return 4 * tolerance


def clear_length(weights, tokens: np.ndarray, gap: float) -> int:
    """How many leading positions of every row of ``tokens (B, T)`` have clear routing
    (gap >= ``gap`` in the oracle). After the first unclear choice a backend in reduced
    precision may legitimately pick another expert, and everything later differs."""
    length = tokens.shape[1]
    for row in tokens:
        _, gaps = routing_gaps(weights, row)
        unclear = np.nonzero(gaps < gap)[0]
        length = min(length, int(unclear[0]) if len(unclear) else len(row))
    return length


def greedy_steps_checked(weights, prompt, generated, tolerance: float, what: str) -> int:
    """Check each generated token is the oracle's greedy choice; returns how many steps
    were checked. Stops at the first position where the oracle's routing is not clear
    (the rest may legitimately differ); a different token is accepted only where the
    oracle's top logits tie within ``4 × tolerance × rms(logits)``, and ends the check."""
    sequence = np.array(list(prompt) + list(generated), np.int64)
    logits, gaps = routing_gaps(weights, sequence)
    for step, token in enumerate(generated):
        position = len(prompt) - 1 + step
        if (gaps[: position + 1] < router_gap(tolerance)).any():
            return step
        row = logits[position]
        best = int(np.argmax(row))
        if token != best:
            slack = 4 * tolerance * np.sqrt(np.mean(row**2))
            assert row[token] >= row[best] - slack, (
                f"{what}: step {step} chose token {token} (oracle logit {row[token]:.4f}) where "
                f"the oracle's greedy choice is {best} ({row[best]:.4f}); generated {list(generated)}"
            )
            return step
    return len(generated)


def same_greedy(weights, prompt, a, b, tolerance: float, what: str) -> None:
    """Two greedy continuations of ``prompt`` agree, up to a tie the oracle itself shows."""
    a, b = list(a), list(b)
    if a == b:
        return
    j = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
    assert j is not None, f"{what}: one continuation is a prefix of the other: {a} vs {b}"
    logits, gaps = routing_gaps(weights, np.array(list(prompt) + a[:j], np.int64))
    if (gaps < router_gap(tolerance)).any():
        return  # an unclear routing decision precedes the divergence
    row = logits[-1]
    slack = 4 * tolerance * np.sqrt(np.mean(row**2))
    assert abs(row[a[j]] - row[b[j]]) <= slack, (
        f"{what}: the continuations part at step {j} ({a[j]} vs {b[j]}) where the oracle's "
        f"logits differ by {abs(row[a[j]] - row[b[j]]):.4f} (more than {slack:.4f}): {a} vs {b}"
    )


# ----------------------------------------------------------------------------- specs


def test_runtime_runs_in_the_requested_dtype(backend_target, spec_models, dtype):
    """``engine.load(..., dtype=D)`` gives a runtime computing in D."""
    from mind4_core import engine

    model = engine.load(
        spec_models.checkpoint("bf16").path,
        backend=backend_target.backend_name,
        device=backend_target.device,
        dtype=dtype,
        **backend_target.overrides,
    )
    assert model.dtype == dtype, f"asked for {dtype}, the runtime says it runs in {model.dtype}"


@pytest.mark.parametrize("kind", ["bf16", "mxfp4", "init"])
def test_logits_match_oracle(load_model, spec_models, dtype, tolerance, rng, kind):
    """Full forward pass (no cache) equals the oracle, for bf16 / MXFP4 / init_checkpoint models."""
    ckpt = spec_models.checkpoint(kind)
    tokens = robust_tokens(ckpt.weights, rng, 2, LENGTH, router_gap(tolerance))
    logits = load_model(ckpt.path, dtype).logits(tokens)
    assert logits.dtype == np.float32, f"Model.logits returned {logits.dtype}"
    ref = oracle.forward(ckpt.weights, SPEC_CONFIG, tokens)
    clear = clear_length(ckpt.weights, tokens, router_gap(tolerance))
    assert clear >= 1, "could not draw a first token with clear routing"
    assert_close(
        logits[:, :clear], ref[:, :clear], tolerance, f"logits [{kind} checkpoint, {dtype}]"
    )


def test_decode_equals_full_recompute(load_model, spec_models, dtype, tolerance, rng):
    """Prefill then decode token by token with the KV cache == recomputing everything."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    tokens = robust_tokens(ckpt.weights, rng, 1, LENGTH, router_gap(tolerance))[0]
    prompt = 6
    session = model.session(max_tokens=32)
    session.append(tokens[:prompt].tolist())
    steps = [session.prefill()] + [session.decode(int(t)) for t in tokens[prompt:]]
    full = model.logits(tokens[None])[0, prompt - 1 :]  # (T - prompt + 1, V)
    assert_close(np.stack(steps), full, tolerance, f"decode vs full recompute [{dtype}]")
    ref = oracle.forward(ckpt.weights, SPEC_CONFIG, tokens)[prompt - 1 :]
    assert_close(np.stack(steps), ref, tolerance, f"decode vs oracle [{dtype}]")


#: name -> chunk boundaries inside LENGTH tokens
SPLITS = {
    "1+19": [1],
    "5+5+10": [5, 10],
    "7+1+1+11": [7, 8, 9],
    "3+14+3": [3, 17],
    "ones": list(range(1, LENGTH)),
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_chunked_prefill_equals_one_shot(load_model, spec_models, dtype, tolerance, rng, split):
    """Chunks at any offset into a pre-allocated cache give the one-shot logits."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    runtime = model.runtime
    tokens = robust_tokens(ckpt.weights, rng, 2, LENGTH, router_gap(tolerance))
    cache = runtime.new_cache(2, LENGTH + 12)  # longer than needed: the tail is never written
    bounds = [0, *SPLITS[split], LENGTH]
    pieces, lasts = [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        chunk = tokens[:, start:end]
        pieces.append(runtime.to_numpy(runtime.forward(chunk, cache, start, last_only=False)))
    chunked = np.concatenate(pieces, axis=1)
    assert_close(chunked, model.logits(tokens), tolerance, f"chunked prefill {split} [{dtype}]")

    cache = runtime.new_cache(2, LENGTH)
    for start, end in zip(bounds[:-1], bounds[1:]):
        lasts.append(
            runtime.to_numpy(runtime.forward(tokens[:, start:end], cache, start, last_only=True))
        )
    assert lasts[-1].shape == (2, SPEC_CONFIG.vocab_size)
    assert_close(
        np.stack(lasts, 1), chunked[:, np.array(bounds[1:]) - 1], tolerance, f"last_only {split}"
    )


def test_reset_reuses_the_shared_prefix(load_model, spec_models, dtype, tolerance, rng):
    """After ``Session.reset`` to a sequence sharing a prefix, prefill starts at that
    offset and gives the logits of a fresh full pass."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    gap = router_gap(tolerance)
    a = robust_tokens(ckpt.weights, rng, 1, LENGTH, gap)[0]
    b = robust_tokens(ckpt.weights, rng, 1, LENGTH, gap, prefix=a[:9])[0]
    shared = next(i for i in range(LENGTH + 1) if i == LENGTH - 1 or a[i] != b[i])
    session = model.session(max_tokens=LENGTH + 4)
    session.append(a.tolist())
    session.prefill()
    reused = session.reset(b[:-1].tolist())
    assert reused == shared, f"reset reused {reused} tokens, the shared prefix has {shared}"
    steps = [session.prefill(), session.decode(int(b[-1]))]
    full = model.logits(b[None])[0, -2:]
    assert_close(np.stack(steps), full, tolerance, f"prefill after reset [{dtype}]")


def test_batch_equals_one_by_one(load_model, spec_models, dtype, tolerance, rng):
    """Rows of different lengths in one batch (right-padded, then per-row decode
    offsets) give each row's own logits."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    runtime = model.runtime
    lengths = np.array([7, 12, 4])
    rows = robust_tokens(ckpt.weights, rng, 3, 13, router_gap(tolerance))
    batch = np.where(np.arange(12) < lengths[:, None], rows[:, :12], 0)  # right-padded
    cache = runtime.new_cache(3, 16)
    logits = runtime.to_numpy(runtime.forward(batch, cache, 0, last_only=False))  # (3, 12, V)
    got = np.concatenate([logits[b, :n] for b, n in enumerate(lengths)])
    alone = np.concatenate([model.logits(rows[b : b + 1, :n])[0] for b, n in enumerate(lengths)])
    assert_close(got, alone, tolerance, f"batched prefill vs one by one [{dtype}]")

    nxt = rows[np.arange(3), lengths][:, None]  # (3, 1): each row's next token
    step = runtime.to_numpy(runtime.forward(nxt, cache, lengths, last_only=True))  # (3, V)
    alone = np.stack([model.logits(rows[b : b + 1, : n + 1])[0, -1] for b, n in enumerate(lengths)])
    assert_close(
        step, alone, tolerance, f"batched decode at per-row offsets {lengths.tolist()} [{dtype}]"
    )


def test_generate_batch_equals_one_by_one(load_model, spec_models, dtype, tolerance, rng):
    """``Model.generate_batch`` gives the greedy continuations of each prompt alone."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    rows = robust_tokens(ckpt.weights, rng, 3, 9, router_gap(tolerance))
    prompts = [rows[0, :5].tolist(), rows[1, :9].tolist(), rows[2, :2].tolist()]
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    together = model.generate_batch(prompts, params, stop_tokens=[])
    for prompt, batched in zip(prompts, together):
        alone = model.generate(prompt, params, stop_tokens=[])
        same_greedy(ckpt.weights, prompt, batched, alone, tolerance, f"generate_batch [{dtype}]")


def test_greedy_generation_matches_oracle(load_model, spec_models, dtype, tolerance, rng):
    """Temperature-0 generation picks the oracle's argmax at every step."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    prompt = robust_tokens(ckpt.weights, rng, 1, 8, router_gap(tolerance))[0].tolist()
    generated = model.generate(
        prompt, SamplingParams(temperature=0.0, max_new_tokens=10), stop_tokens=[]
    )
    assert len(generated) == 10
    greedy_steps_checked(ckpt.weights, prompt, generated, tolerance, f"greedy generation [{dtype}]")


def test_seeded_sampling_is_reproducible(load_model, spec_models, dtype, rng):
    """The same seed generates the same tokens; another seed, others."""
    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    prompt = rng.integers(0, SPEC_CONFIG.vocab_size, 6).tolist()

    def run(seed):
        params = SamplingParams(temperature=1.5, max_new_tokens=12, seed=seed)
        return model.generate(prompt, params, stop_tokens=[])

    first = run(7)
    assert run(7) == first, "the same seed generated different tokens"
    assert run(8) != first, "seeds 7 and 8 generated the same 12 tokens"


def test_sampling_frequencies_follow_oracle(backend_target, load_model, spec_models, dtype):
    """2000 tokens drawn by the model's sampler from the runtime's own logits (array
    type, dtype and device as the engine hands them over), at a fixed seed, follow the
    oracle's sampling distribution of those logits (chi-square)."""
    from .arrays import arrays_for

    ckpt = spec_models.checkpoint("bf16")
    model = load_model(ckpt.path, dtype)
    runtime = model.runtime
    rng = np.random.default_rng(FREQUENCY_SEED)
    prompt = rng.integers(0, SPEC_CONFIG.vocab_size, (1, 8))
    last = runtime.forward(prompt, runtime.new_cache(1, 8), 0, last_only=True)  # (1, V)
    logits = runtime.to_numpy(last)[0].astype(np.float64)  # (V,)
    top_p = robust_top_p(logits[None], 1.5, 20)
    params = SamplingParams(temperature=1.5, top_k=20, top_p=top_p)
    probs = oracle.sampling_probabilities(logits, params.temperature, params.top_k, params.top_p)

    if model.sampler_on_host:
        batch = np.repeat(runtime.to_numpy(last), 2000, axis=0)
    else:  # the same row 2000 times, in the runtime's array type, dtype and device
        arrays = arrays_for(backend_target.backend.array_type, backend_target.device)
        batch = arrays.put(np.repeat(arrays.get(last), 2000, axis=0), arrays.dtype_name(last))
    draws = np.asarray(model.sampler.sample(batch, params, model.sampler.generator(FREQUENCY_SEED)))
    counts = np.bincount(draws, minlength=len(probs))
    outside = np.flatnonzero((counts > 0) & (probs == 0))
    assert not len(outside), f"[{describe(params)}] drew tokens {outside.tolist()} of probability 0"
    stat, df = chi_square(counts, probs)
    assert stat <= chi_square_critical(df), (
        f"[{describe(params)}] {dtype}: chi-square {stat:.1f} > {chi_square_critical(df):.1f} "
        f"(df {df}) against the oracle's distribution of the runtime's logits"
    )
