"""The capture record and how the core opens a capture: no torch needed."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from mind4_core.engine import load
from mind4_core.lab import (
    CAPTURE_KINDS,
    Capture,
    LabError,
    capture,
    capture_kinds,
    residual_names,
)

from .conftest import LAB


def test_routing_is_put_together_by_position_and_row():
    rng = np.random.default_rng(0)
    rec = Capture(LAB, ["routing"])
    first = rng.integers(0, 4, (2 * 5, 2)), rng.random((2 * 5, 2))  # two rows of 5 tokens
    rec.begin_forward(2, 5, [0, 0])
    rec.add_routing(1, *first)
    second = rng.integers(0, 4, (2, 2)), rng.random((2, 2))  # one token per row
    rec.begin_forward(2, 1, [5, 3])  # row 1 goes back to position 3 (a reset)
    rec.add_routing(1, *second)
    row0 = rec.routing(1, row=0)
    assert list(row0.positions) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(row0.experts[:5], first[0][:5])
    np.testing.assert_array_equal(row0.experts[5], second[0][0])
    row1 = rec.routing(1, row=1)
    assert list(row1.positions) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(row1.experts[3], second[0][1])  # the later pass wins
    np.testing.assert_allclose(row1.weights[4], first[1][9].astype(np.float32))
    assert rec.forward_passes == 2 and list(rec.positions(1)) == [0, 1, 2, 3, 4]


def test_attention_is_laid_out_over_absolute_key_positions():
    rng = np.random.default_rng(1)
    Hq = LAB.num_attention_heads
    rec = Capture(LAB, ["attention"], attention_layers=[0])
    rec.begin_forward(1, 4, 0)
    prefill = rng.random((1, Hq, 4, 4)).astype(np.float32) / 8
    rec.add_attention(0, prefill, key_offset=0)
    rec.begin_forward(1, 1, 7)  # a decode step at position 7 given keys 3..7 (a window cut)
    decode = rng.random((1, Hq, 1, 5)).astype(np.float32) / 8
    rec.add_attention(0, decode, key_offset=4)
    amap = rec.attention(0)
    assert list(amap.positions) == [0, 1, 2, 3, 7] and amap.window == LAB.sliding_window
    assert amap.probs.shape == (Hq, 5, 8)
    np.testing.assert_array_equal(amap.probs[:, :4, :4], prefill[0])
    np.testing.assert_array_equal(amap.probs[:, 4, 3:8], decode[0, :, 0])
    assert not amap.probs[:, 4, :3].any() and not amap.probs[:, :4, 4:].any()
    np.testing.assert_allclose(amap.sink, 1 - amap.probs.sum(-1), atol=1e-6)


def test_residuals_come_back_in_stream_order():
    rng = np.random.default_rng(2)
    names = residual_names(LAB.num_hidden_layers)
    assert names[:3] == ["embedding", "block.0.attn", "block.0.mlp"] and len(names) == 7
    rec = Capture(LAB, ["residual"])
    rec.begin_forward(1, 3, 0)
    values = {n: rng.standard_normal((1, 3, LAB.hidden_size)) for n in reversed(names)}
    for n, x in values.items():
        rec.add_residual(n, x)
    positions, streams = rec.residuals()
    assert list(streams) == names and list(positions) == [0, 1, 2]
    np.testing.assert_allclose(streams["block.1.attn"], values["block.1.attn"][0], rtol=1e-6)


def test_reading_what_was_not_captured_says_what_was():
    rec = Capture(LAB, ["routing"])
    with pytest.raises(LabError, match="before begin_forward"):
        rec.add_routing(0, np.zeros((1, 2)), np.ones((1, 2)))
    rec.begin_forward(1, 1, 0)
    with pytest.raises(
        LabError, match="no attention of layer 1 was captured; layers captured: none"
    ):
        rec.attention(1)
    with pytest.raises(LabError, match="no residual stream was captured"):
        rec.residuals()
    with pytest.raises(
        LabError, match=r"layer 3 is out of range: the model has 3 layers \(valid: 0..2\)"
    ):
        rec.routing(3)


# ----------------------------------------------------------------------------- opening


def test_a_backend_without_capture_names_those_with_it(oracle_backend, lab_checkpoint):
    model = load(lab_checkpoint, backend="oracle")
    assert capture_kinds(model) == frozenset()
    with pytest.raises(LabError) as err:
        with capture(model, ["routing"]):
            pass
    message = str(err.value)
    assert "backend 'oracle' cannot capture routing: it implements no capture" in message
    assert "backends installed here that do: torch" in message


class _Partial:
    """A runtime offering only routing through its own methods."""

    capture_kinds = frozenset({"routing"})

    def __init__(self):
        self.model_config = LAB
        self.opened = 0

    @contextlib.contextmanager
    def capture(self, record):
        self.opened += 1
        record.begin_forward(1, 1, 0)
        record.add_routing(0, [[1, 0]], [[0.75, 0.25]])
        yield


def test_runtime_methods_are_used_and_missing_kinds_named():
    runtime = _Partial()
    with capture(runtime, ["routing"]) as rec:
        pass
    assert runtime.opened == 1 and list(rec.routing(0).experts[0]) == [1, 0]
    with pytest.raises(LabError, match="cannot capture attention, residual: it captures routing"):
        with capture(runtime, ["routing", "attention", "residual"]):
            pass


def test_bad_requests(torch_model):
    with pytest.raises(LabError, match="unknown capture kind.*gradients.*known: routing"):
        with capture(torch_model, ["gradients"]):
            pass
    with pytest.raises(LabError, match="layer 7 is out of range: the model has 3 layers"):
        with capture(torch_model, attention_layers=[7]):
            pass
    assert capture_kinds(torch_model) == frozenset(CAPTURE_KINDS)
