"""The same checks on CUDA / MPS when present (skipped on machines without them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import config, random_weights, rel_err, write
from mind4_specs import oracle
from mind4_torch.runtime import factory

from mind4_core.config import Config, RuntimeConfig, SamplingParams

DEVICES = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()),
            reason="no MPS",
        ),
    ),
]
TOL = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("storage", ["float32", "mxfp4"])
def test_model_on_device(tmp_path, monkeypatch, device, dtype, storage):
    cfg = config(
        experts_per_token=4, intermediate_size=32
    )  # k = E: no routing flips in low precision
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=5), storage=storage)
    monkeypatch.setenv("MIND4_TORCH_EXPERTS", "auto")  # packed MXFP4 on GPUs
    rt = factory(
        checkpoint=checkpoint,
        config=Config(runtime=RuntimeConfig(device=device, dtype=dtype)),
        components={},
    )
    assert rt.device.startswith(device) and rt.dtype == dtype
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, 10))
    ref = oracle.forward(stored, cfg, toks)
    full = rt.to_numpy(rt.forward(toks, None, last_only=False))
    assert rel_err(full, ref) < TOL[dtype]
    cache = rt.new_cache(3, 16)  # incremental decode
    steps = [rt.to_numpy(rt.forward(toks[:, t : t + 1], cache, t)) for t in range(10)]
    assert rel_err(np.stack(steps, 1), ref) < TOL[dtype]
    single = rt.new_cache(1, 16)  # batch 1: the decode fast path
    steps = [rt.to_numpy(rt.forward(toks[:1, t : t + 1], single, t)) for t in range(10)]
    assert rt.model._decode_step is not None
    assert rel_err(np.stack(steps, 1), ref[:1]) < TOL[dtype]
    offsets = np.array([2, 5, 9])  # rewind rows to different offsets, re-decode one token each
    out = rt.to_numpy(rt.forward(toks[np.arange(3), offsets][:, None], cache, offsets))
    assert rel_err(out, ref[np.arange(3), offsets]) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_on_device(device):
    from mind4_torch.sampler import TorchSampler

    s = TorchSampler(device=device)
    logits = torch.randn(2, 50, device=device)
    params = SamplingParams(temperature=0.8, top_k=10, top_p=0.9)
    a = s.sample(logits, params, s.generator(3))
    b = s.sample(logits, params, s.generator(3))
    np.testing.assert_array_equal(a, b)
    probs = s.probabilities(logits, params).cpu().double().numpy()
    ref = oracle.sampling_probabilities(logits.cpu().double().numpy(), 0.8, 10, 0.9)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
