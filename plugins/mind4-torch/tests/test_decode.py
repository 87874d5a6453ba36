"""The decode fast path's pieces against float64 references: the two-halves
matrix-vector product, the batched expert pairs, and the huge-page weight arena.
(The whole fast path against the readable model: test_model.py.)"""

from __future__ import annotations

import mmap

import numpy as np
import pytest
import torch
from helpers import rel_err
from mind4_specs import oracle
from mind4_torch.decode import Experts, MatVec
from mind4_torch.runtime import WeightArena, input_major


def randn(*shape, scale=1.0):
    return torch.randn(*shape) * scale


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("split", [True, False])
def test_matvec_is_a_linear_layer(bias, split):
    w, b, x, residual = input_major(randn(48, 20)), randn(48), randn(1, 20), randn(1, 48)
    f = MatVec(w, b if bias else None, split=split)
    expected = np64(x) @ np64(w).T + (np64(b) if bias else 0)  # (1, 48)
    with torch.inference_mode():
        assert rel_err(np64(f(x)), expected) < 1e-6
        assert rel_err(np64(f.add_to(residual, x)), np64(residual) + expected) < 1e-6
        w.mul_(2)  # the product holds views: in-place updates are seen
        assert rel_err(np64(f(x)), 2 * expected - (np64(b) if bias else 0)) < 1e-6


def test_matvec_splits_only_input_major_float32_weights(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert MatVec(input_major(randn(8, 6)), None).split
    assert not MatVec(randn(8, 6), None).split  # output-major: halves are not contiguous
    assert not MatVec(input_major(randn(8, 5)), None).split  # odd input
    assert not MatVec(input_major(randn(8, 6)).half(), None).split
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert not MatVec(input_major(randn(8, 6)), None).split


@pytest.mark.parametrize("E", [6, 50])  # views kept per pair, or made each time (many pairs)
@pytest.mark.parametrize(
    "chosen", [[3], [1, 4], [4, 1], [0, 5], [5, 2, 0], [2, 0, 3, 5], [5, 4, 3, 2, 1, 0]]
)
def test_experts_in_batched_pairs_match_the_oracle(chosen, E):
    """Any order and spacing of the chosen experts; the SwiGLU clamps are exercised."""
    H, I = 16, 12  # noqa: E741
    w1, b1 = input_major(randn(E, 2 * I, H, scale=1.5)), randn(E, 2 * I)
    w2, b2 = input_major(randn(E, H, I, scale=0.3)), randn(E, H)
    x, residual = randn(1, H), randn(1, H)
    gates = torch.softmax(randn(1, len(chosen)), dim=-1)
    with torch.inference_mode():
        experts = Experts(w1, b1, w2, b2, 7.0, split=True)
        assert (experts.views is None) == (E == 50)
        split = experts(x, residual, list(chosen), gates)
        again = experts(x, residual, list(chosen), gates)  # views reused
        plain = Experts(w1, b1, w2, b2, 7.0, split=False)(x, residual, list(chosen), gates)
    torch.testing.assert_close(split, again, rtol=0, atol=0)
    h = np.einsum("eoh,h->eo", np64(w1), np64(x)[0])[chosen]
    assert (np.abs(h) > 7).any()  # both clamps matter
    ref = np64(residual) + oracle.experts(
        np64(x), np.array([chosen]), np64(gates), *map(np64, (w1, b1, w2, b2)), 7.0
    )
    assert rel_err(np64(split), ref) < 1e-6
    assert rel_err(np64(plain), ref) < 1e-6


def test_weight_arena_lays_out_tensors_apart_and_input_major():
    shapes = [((3, 5), torch.float32), ((4, 6, 2), torch.float32), ((7,), torch.bfloat16)]
    arena = WeightArena(WeightArena.size_of(shapes))
    tensors = [arena.take(s, d, input_major=len(s) >= 2) for s, d in shapes]
    del arena  # the tensors keep the block alive
    for t, (shape, dtype) in zip(tensors, shapes, strict=True):
        assert tuple(t.shape) == shape and t.dtype == dtype
        assert t.data_ptr() % WeightArena.ALIGN == 0
        t.copy_(torch.randn(shape))
    assert tensors[0].transpose(-1, -2).is_contiguous()  # input-major
    assert tensors[1].stride() == (12, 1, 6)
    ends = [t.data_ptr() + t.numel() * t.element_size() for t in tensors]
    assert all(end <= nxt.data_ptr() for end, nxt in zip(ends, tensors[1:]))  # no overlap
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux: the block starts on a huge page
        assert tensors[0].data_ptr() % WeightArena.HUGE_PAGE == 0


def test_cpu_inference_weights_live_in_one_block(tmp_path):
    """load_transformer copies every dense weight once into one arena, input-major
    where the decode path wants it; fine-tuning loads keep ordinary tensors."""
    from helpers import config, random_weights, write
    from mind4_torch.runtime import load_transformer

    cfg = config()
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=3))
    model = load_transformer(checkpoint)
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1
    qkv = model.block[0].attn.qkv.weight
    assert qkv.t().is_contiguous()
    np.testing.assert_array_equal(qkv.numpy(), stored["block.0.attn.qkv.weight"])
    trainable = load_transformer(checkpoint, fast_layout=False)
    assert len({p.untyped_storage().data_ptr() for p in trainable.parameters()}) > 1
