"""Logits equal transformers' GptOssForCausalLM with the same weights (skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import config, random_weights, rel_err, write
from mind4_torch.runtime import factory

from mind4_core.config import Config, RuntimeConfig

pytest.importorskip("transformers")


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),  # GQA, window 5, YaRN x4
        dict(rope_scaling_factor=32.0, initial_context_length=256, max_context_length=512),
        dict(rope_scaling_factor=1.0, num_key_value_heads=1),
    ],
)
def test_logits_equal_transformers(tmp_path, overrides):
    from mind4_torch.hf import to_transformers

    cfg = config(**overrides)
    checkpoint, _ = write(tmp_path, cfg, random_weights(cfg, seed=21))
    rt = factory(
        checkpoint=checkpoint, config=Config(runtime=RuntimeConfig(device="cpu")), components={}
    )
    hf = to_transformers(rt)
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 17))
    with torch.inference_mode():
        theirs = hf(torch.from_numpy(toks)).logits.numpy()
    ours = rt.to_numpy(rt.forward(toks, None, last_only=False))
    assert rel_err(ours, theirs) < 1e-5
