"""Byte and FLOP counts behind the roofline fractions, and the measured ceilings."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mind4_core.checkpoint import open_checkpoint
from mind4_core.cli import cli, main
from mind4_core.convert import decode_bytes_per_token
from mind4_core.costs import MXFP4_BYTES, decode_step_bytes, measure_limits, prefill_flops
from mind4_core.presets import get_preset, init_checkpoint, parameter_count


@pytest.mark.parametrize("experts", ["mxfp4", "bf16"])
def test_decode_step_bytes_agree_with_the_stored_tensors(experts, tmp_path):
    """Batch 1 without the KV cache is the stored weights a token reads: every dense
    tensor, one embedding row, k of E experts (counted from the file's own sizes)."""
    ckpt = open_checkpoint(init_checkpoint("tiny", tmp_path / "t", seed=3, experts=experts))
    cfg = ckpt.config
    expert_bytes = MXFP4_BYTES if experts == "mxfp4" else 2.0
    no_kv = decode_step_bytes(cfg, 1, 0, dense_bytes=2.0, expert_bytes=expert_bytes, kv_bytes=0)
    stored = decode_bytes_per_token(ckpt)
    # the count takes norms, sinks and biases as float32 (as the GPU runtime holds them);
    # the file stores them in bf16: a few kB of 2.7 MB
    assert no_kv == pytest.approx(stored, rel=0.005)
    assert no_kv > stored


def test_decode_step_bytes_grow_with_context_batch_and_distinct_experts():
    cfg = get_preset("gpt-oss-20b")
    one = decode_step_bytes(cfg, 1, 2048)
    assert 3.7e9 < one < 3.8e9  # docs/triton-notes.md
    # a window layer reads at most its window: one more key costs the full layers only
    full_layers = sum(1 for n in range(cfg.num_hidden_layers) if not cfg.window_of_layer(n))
    per_key = 2 * 2 * cfg.num_key_value_heads * cfg.head_dim
    assert decode_step_bytes(cfg, 1, 2049) - one == pytest.approx(full_layers * per_key)
    # 8 rows share dense weights but touch E·(1 − (1 − k/E)^8) ≈ 21 of 32 experts per layer
    eight = decode_step_bytes(cfg, 8, 2048)
    assert 2 * one < eight < 8 * one


def test_prefill_flops_against_active_parameters():
    """Without attention, a prefill is 2 FLOPs per active matrix weight per token."""
    cfg = get_preset("gpt-oss-20b")
    T = 64
    attention = sum(
        4 * cfg.num_attention_heads * cfg.head_dim * sum(
            min(t + 1, cfg.window_of_layer(n) or t + 1) for t in range(T)
        )
        for n in range(cfg.num_hidden_layers)
    )  # fmt: skip
    unembedding = 2 * cfg.vocab_size * cfg.hidden_size  # the last token's logits only
    matmuls = prefill_flops(cfg, T) - attention - unembedding
    # every token's active weights but the unembedding (biases and norms: < 1 %)
    per_token = 2 * (parameter_count(cfg, active=True) - cfg.vocab_size * cfg.hidden_size)
    assert matmuls / T == pytest.approx(per_token, rel=0.02)
    assert prefill_flops(cfg, 2048) == pytest.approx(12.87e12, rel=1e-3)


def test_measure_limits_on_the_cpu():
    limits = measure_limits("cpu")
    assert limits["copy_GBps"] > 0.1 and limits["matmul_TFLOPs"] > 1e-4
    assert limits["matmul_dtype"] == "float32"
    assert measure_limits("meta") == {}


@pytest.mark.skipif(
    not (importlib.util.find_spec("torch") and __import__("torch").cuda.is_available()),
    reason="needs a CUDA GPU (runs on the GPU machine)",
)
def test_measure_limits_on_a_gpu():
    limits = measure_limits("cuda", "bfloat16")
    # the best window is the ceiling: never below the median of the same windows
    assert limits["copy_GBps"] >= limits["copy_GBps_median"] > 50
    assert limits["matmul_TFLOPs"] >= limits["matmul_TFLOPs_median"] > 1
    assert limits["matmul_dtype"] == "bfloat16"


def test_bench_reports_fractions_and_batch_sizes(tiny_checkpoint, capsys):
    out = CliRunner().invoke(
        cli,
        ["bench", "-c", str(tiny_checkpoint), "-d", "cpu", "--dtype", "float32",
         "--prompt-tokens", "16", "--decode-tokens", "2", "--contexts", "8", "--batch", "1,3",
         "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert {"decode_tok_s@8", "decode_tok_s@8_b3", "decode_frac_bw@8_b3"} <= set(result)
    fractions = [result["decode_frac_bw@8"], result["decode_frac_bw@8_b3"]]
    fractions.append(result["prefill_frac_matmul"])
    assert all(np.isfinite(f) and 0 < f < 5 for f in fractions)
    assert main(["bench", "-c", str(tiny_checkpoint), "--batch", "0"]) == 1
    assert "batch sizes must be positive" in capsys.readouterr().err
