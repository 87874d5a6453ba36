"""Shared fixtures: tiny random checkpoints and an oracle-backed backend.

The ``oracle`` backend runs the NumPy float64 reference (``mind4_specs.oracle``)
behind the Runtime protocol, so the core's engine and CLI are tested without
torch or any other plugin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mind4_core import hookimpl
from mind4_core.config import ModelConfig
from mind4_core.presets import init_checkpoint
from mind4_core.records import BackendRecord

MICRO = ModelConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    vocab_size=8192,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=64,
    max_context_length=64,
    sliding_window=8,
    rope_theta=10000.0,
)


class OracleRuntime:
    """Runtime protocol over the float64 oracle: recomputes the whole row each call."""

    device = "cpu"
    dtype = "float32"

    def __init__(self, *, checkpoint, config, components):
        from mind4_specs import oracle

        self.oracle = oracle
        self.model_config = checkpoint.config
        self.weights = {n: checkpoint.float32(n).astype(np.float64) for n in checkpoint.names()}
        self.calls: list[tuple[int, int]] = []  # (batch, new tokens) per forward, for tests

    def new_cache(self, batch_size: int, max_tokens: int) -> np.ndarray:
        return np.full((batch_size, max_tokens), -1, dtype=np.int64)

    def forward(self, tokens, cache, offset=0, *, last_only=True):
        tokens = np.asarray(tokens, dtype=np.int64)
        B, T = tokens.shape
        self.calls.append((B, T))
        if cache is None:
            logits = self.oracle.forward(self.weights, self.model_config, tokens)
        else:
            offsets = np.broadcast_to(np.asarray(offset, dtype=np.int64), (B,))
            rows = []
            for b in range(B):
                o = int(offsets[b])
                cache[b, o : o + T] = tokens[b]
                rows.append(
                    self.oracle.forward(self.weights, self.model_config, cache[b, : o + T])[o:]
                )
            logits = np.stack(rows)
        return logits[:, -1] if last_only else logits

    def to_numpy(self, x):
        return np.asarray(x, dtype=np.float32)


class OraclePlugin:
    @hookimpl
    def mind4_backends(self):
        return [
            BackendRecord(
                name="oracle",
                factory="tests.conftest:OracleRuntime",
                array_type="numpy",
                devices={"cpu"},
                dtypes={"float32"},
                components={"sampler": "numpy"},
            )
        ]


@pytest.fixture
def oracle_backend():
    from mind4_core.plugins import temporary_plugin

    with temporary_plugin(OraclePlugin(), "oracle-test") as manager:
        yield manager


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer random model, float32 dense weights, bf16 experts."""
    return init_checkpoint(
        MICRO,
        tmp_path_factory.mktemp("micro") / "ckpt",
        seed=1,
        dtype="float32",
        tokenizer="mind4-8k",
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return init_checkpoint(
        "tiny", tmp_path_factory.mktemp("tiny") / "ckpt", seed=0, dtype="float32"
    )
