"""The whole model: logits vs the float64 oracle, KV-cache decode, chunked prefill,
per-row offsets, bad input. Runs the SPEC_CONFIG model (2 layers, H=64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mind4_core.checkpoint import open_checkpoint
from mind4_core.config import Config, RuntimeConfig
from mind4_core.errors import ContextOverflowError, Mind4Error
from mind4_specs import oracle
from mind4_specs.models import SPEC_CONFIG, write_spec_checkpoint
from mind4_triton.runtime import factory

from helpers import rel_err

TOL = {"float32": 1e-4, "float16": 1e-2}


@pytest.fixture(scope="module", params=["mxfp4", "bf16"])
def spec_model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"spec-{request.param}")
    return write_spec_checkpoint(path, seed=3, dtype="float32", experts=request.param)


def runtime_for(spec, device, dtype="float32"):
    config = Config(runtime=RuntimeConfig(device=device, dtype=dtype))
    return factory(checkpoint=open_checkpoint(spec.path), config=config, components={})


def test_full_forward_matches_oracle(spec_model, device):
    rt = runtime_for(spec_model, device)
    tokens = np.random.default_rng(0).integers(0, SPEC_CONFIG.vocab_size, (2, 11))
    logits = rt.to_numpy(rt.forward(tokens, None, 0, last_only=False))
    ref = oracle.forward(spec_model.weights, SPEC_CONFIG, tokens)
    assert logits.shape == ref.shape and logits.dtype == np.float32
    assert rel_err(logits, ref) < TOL["float32"]


def test_decode_with_cache_equals_recompute(spec_model, device):
    rt = runtime_for(spec_model, device)
    tokens = np.random.default_rng(1).integers(0, SPEC_CONFIG.vocab_size, (1, 9))
    ref = oracle.forward(spec_model.weights, SPEC_CONFIG, tokens)[0]  # (T, V)
    cache = rt.new_cache(1, 16)
    out = [rt.to_numpy(rt.forward(tokens[:, :4], cache, 0))[0]]  # chunk prefill, last position
    for t in range(4, 9):
        out.append(rt.to_numpy(rt.forward(tokens[:, t : t + 1], cache, t))[0])
    assert rel_err(np.stack(out), ref[3:]) < TOL["float32"]


def test_one_token_chunks_with_all_logits(spec_model, device):
    """``T == 1`` with ``last_only=False`` keeps the time axis (the decode graph path)."""
    rt = runtime_for(spec_model, device)
    tokens = np.random.default_rng(5).integers(0, SPEC_CONFIG.vocab_size, (1, 4))
    cache = rt.new_cache(1, 8)
    pieces = [
        rt.to_numpy(rt.forward(tokens[:, t : t + 1], cache, t, last_only=False)) for t in range(4)
    ]
    assert all(p.shape == (1, 1, SPEC_CONFIG.vocab_size) for p in pieces)
    ref = oracle.forward(spec_model.weights, SPEC_CONFIG, tokens)
    assert rel_err(np.concatenate(pieces, axis=1), ref) < TOL["float32"]


def test_batch_rows_at_different_offsets(spec_model, device):
    """Row 0 decodes at position 6, row 1 at position 2 (its cache holds fewer tokens)."""
    rt = runtime_for(spec_model, device)
    rng = np.random.default_rng(2)
    a = rng.integers(0, SPEC_CONFIG.vocab_size, 7)
    b = rng.integers(0, SPEC_CONFIG.vocab_size, 3)
    cache = rt.new_cache(2, 10)
    prompt = np.zeros((2, 6), np.int64)
    prompt[0], prompt[1, :2] = a[:6], b[:2]
    rt.forward(prompt, cache, 0)  # row 1 padded: its padding is overwritten below
    logits = rt.to_numpy(rt.forward(np.array([[a[6]], [b[2]]]), cache, [6, 2]))
    ref_a = oracle.forward(spec_model.weights, SPEC_CONFIG, a)[-1]
    ref_b = oracle.forward(spec_model.weights, SPEC_CONFIG, b)[-1]
    assert rel_err(logits, np.stack([ref_a, ref_b])) < TOL["float32"]


def test_bad_input_is_a_clear_error(spec_model, device):
    rt = runtime_for(spec_model, device)
    cache = rt.new_cache(1, 4)
    with pytest.raises(Mind4Error, match="outside the vocabulary"):
        rt.forward(np.array([[SPEC_CONFIG.vocab_size]]), cache, 0)
    with pytest.raises(ContextOverflowError, match="KV cache holds 4"):
        rt.forward(np.array([[1, 2]]), cache, 3)
    with pytest.raises(Mind4Error, match="shape"):
        rt.forward(np.array([1, 2]), cache, 0)
    with pytest.raises(Mind4Error, match="tokens have 2"):
        rt.forward(np.array([[1], [2]]), cache, 0)
    with pytest.raises(ContextOverflowError):
        rt.new_cache(1, SPEC_CONFIG.max_context_length + 1)


def test_runtime_float16_close_to_oracle(spec_model, device):
    rt = runtime_for(spec_model, device, "float16")
    tokens = np.random.default_rng(4).integers(0, SPEC_CONFIG.vocab_size, (1, 8))
    logits = rt.to_numpy(rt.forward(tokens, None, 0, last_only=False))
    ref = oracle.forward(spec_model.weights, SPEC_CONFIG, tokens)
    assert rel_err(logits, ref) < TOL["float16"]
    assert torch.float16 == rt.layers[0].qkv_w.dtype
