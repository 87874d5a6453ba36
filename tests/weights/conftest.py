"""Fixtures for the weight-format tests: small random checkpoints in each layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mind4_core.checkpoint import Checkpoint
from mind4_core.config import ModelConfig
from mind4_core.presets import init_checkpoint

#: GQA, YaRN on (f = 4, with a ramp inside the head), a window of 4 on even layers,
#: an odd number of layers; hidden/intermediate multiples of 32 for MXFP4
SMALL = ModelConfig(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    vocab_size=96,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=32,
    max_context_length=128,
    sliding_window=4,
    rope_theta=500.0,
    rope_scaling_factor=4.0,
    rope_ntk_alpha=1.0,
    rope_ntk_beta=8.0,
)


@pytest.fixture
def make_canonical(tmp_path: Path) -> Callable[..., Path]:
    """``make_canonical(experts="float32", dtype="float32", config=SMALL, name=...)``."""

    def make(
        experts: str = "float32",
        dtype: str = "float32",
        config: ModelConfig = SMALL,
        name: str | None = None,
        seed: int = 0,
    ) -> Path:
        out = tmp_path / (name or f"canonical-{experts}-{dtype}-{seed}")
        return init_checkpoint(config, out, seed=seed, experts=experts, dtype=dtype)

    return make


def assert_same_tensors(a: Checkpoint, b: Checkpoint) -> None:
    """Same names, storage and bits (MXFP4 pairs compared as stored)."""
    assert a.names() == b.names()
    for name in a.names():
        assert a.dtype(name) == b.dtype(name), name
        assert tuple(a.shape(name)) == tuple(b.shape(name)), name
        if a.is_mxfp4(name):
            for x, y in zip(a.mxfp4(name), b.mxfp4(name)):
                np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name), err_msg=name)
