"""The evals on the real engine: torch backend, a tiny random checkpoint, the
mind4-8k encoding and mind4_tokenizer's harmony format. Also the issue's bar
"two backends, same checkpoint, greedy -> identical scores" at test scale:
torch (float32) against the core tests' float64 oracle backend."""

from __future__ import annotations

import importlib.util

import pytest
from mind4_evals.samplers import EngineSampler
from mind4_evals.suite import make_eval, run_suite

from mind4_core.config import ModelConfig
from mind4_core.presets import init_checkpoint

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("mind4_torch") is None,
    reason="needs torch and the mind4-torch plugin (pip install plugins/mind4-torch)",
)

# small enough to run in seconds, long enough context for the eval prompts (~60 tokens)
EVAL_MICRO = ModelConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    vocab_size=8192,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=256,
    max_context_length=256,
    sliding_window=16,
    rope_theta=10000.0,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return init_checkpoint(
        EVAL_MICRO,
        tmp_path_factory.mktemp("evals") / "ckpt",
        seed=3,
        dtype="float32",
        tokenizer="mind4-8k",
    )


def _suite(limit=4):
    return [
        make_eval("basic", limit=2, window=128),
        make_eval("abcd", limit=limit),
        make_eval("gpqa", limit=limit),
        make_eval("aime", limit=limit),
    ]


def test_torch_engine_runs_every_eval_deterministically(checkpoint, tmp_path):
    sampler = EngineSampler.load(
        str(checkpoint),
        backend="torch",
        device="cpu",
        dtype="float32",
        max_new_tokens=8,
        batch_size=4,
    )
    assert sampler.tokenizer.name == "mind4-8k"
    first = run_suite(_suite(), sampler, out_dir=tmp_path / "a", seed=0)
    for name, r in first.results.items():
        assert r.n_failed == 0, (name, [e.error for e in r.examples if e.failed])
        assert r.n == (2 if name == "basic" else 4)
    basic = first.results["basic"]
    assert 1.0 < basic.score < 20.0 and basic.metrics["smoke_ok"] in (0.0, 1.0)
    assert all(e.completion_tokens > 0 for e in first.results["abcd"].examples)
    # same seed, same backend -> the same results, and batching changes nothing
    sampler.batch_size = 1
    again = run_suite(_suite(), sampler, seed=0)
    assert again.deterministic_dict()["evals"] == first.deterministic_dict()["evals"]
    assert (tmp_path / "a" / "report.html").is_file()


def test_torch_and_oracle_backends_agree_under_greedy_decoding(checkpoint, oracle_backend):
    runs = {}
    for backend in ("torch", "oracle"):
        sampler = EngineSampler.load(
            str(checkpoint),
            backend=backend,
            device="cpu",
            dtype="float32",
            max_new_tokens=8,
            batch_size=4,
        )
        runs[backend] = run_suite(_suite(limit=3), sampler, seed=0)
    for name in ("abcd", "gpqa", "aime"):
        t, o = runs["torch"].results[name], runs["oracle"].results[name]
        assert [e.meta.get("raw") for e in t.examples] == [e.meta.get("raw") for e in o.examples]
        assert t.score == o.score
    bt, bo = runs["torch"].results["basic"].score, runs["oracle"].results["basic"].score
    assert abs(bt - bo) / bo < 1e-5
