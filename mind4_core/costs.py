"""What a forward pass must move and compute, and the two ceilings of a device.

A benchmark figure means little without the limit it is measured against. For
a model config these functions count

- the bytes a decode step must read at least (every dense weight once, the
  experts the batch uses, the visible KV cache, the unembedding), and
- the matmul FLOPs of a prefill (``2 · N · active parameters`` plus attention);

and :func:`measure_limits` measures, on the device at hand and at that moment,
the copy bandwidth (bytes read + written per second) and the dense matmul rate.
``mind4 bench`` reports each speed as a fraction of ``count / limit``.

Pure arithmetic on :class:`~mind4_core.config.ModelConfig`; :func:`measure_limits`
imports torch only when asked about a torch device.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .config import ModelConfig

#: bytes per weight of an MXFP4 tensor: a 4-bit code plus one scale byte per 32
MXFP4_BYTES = 0.5 + 1 / 32


def decode_step_bytes(
    cfg: ModelConfig,
    batch: int,
    context: int,
    *,
    dense_bytes: float = 2.0,
    expert_bytes: float = MXFP4_BYTES,
    kv_bytes: float = 2.0,
) -> float:
    """Bytes one decode step of ``batch`` rows at position ``context`` must move:
    dense weights (``dense_bytes`` per weight) once, the expected number of distinct
    experts under uniform routing (``E · (1 − (1 − k/E)^batch)``, ``expert_bytes`` per
    weight), float32 norms, biases and sinks, each row's visible keys and values and
    its new entry, and the unembedding."""
    H, D = cfg.hidden_size, cfg.head_dim
    Hq, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    E, k, I, V = cfg.num_experts, cfg.experts_per_token, cfg.intermediate_size, cfg.vocab_size  # noqa: E741
    qkv = (Hq + 2 * Hkv) * D
    dense = dense_bytes * (qkv * H + qkv + H * Hq * D + H + E * H) + 4 * (2 * H + Hq + E)
    expert = expert_bytes * (2 * I * H + H * I) + 4 * (2 * I + H)
    used = E * (1 - (1 - k / E) ** batch)
    kv = 0.0
    for layer in range(cfg.num_hidden_layers):
        window = cfg.window_of_layer(layer)
        visible = min(context, window) if window else context
        kv += batch * (visible + 1) * Hkv * D * 2 * kv_bytes
    embedding_rows = batch * dense_bytes * H
    return (
        cfg.num_hidden_layers * (dense + used * expert) + kv + dense_bytes * V * H + embedding_rows
    )


def prefill_flops(cfg: ModelConfig, tokens: int) -> float:
    """Matmul FLOPs of a ``tokens``-token prefill from position 0: ``2 ·`` the active
    matrix parameters per token (qkv, out, router, k experts), ``4 · heads · head_dim``
    per visible (query, key) pair, and the unembedding of the last token only."""
    H, D, Hq = cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads
    E, k, I, V = cfg.num_experts, cfg.experts_per_token, cfg.intermediate_size, cfg.vocab_size  # noqa: E741
    qkv = (Hq + 2 * cfg.num_key_value_heads) * D
    per_token = 2 * (qkv * H + H * Hq * D + E * H + k * (2 * I * H + H * I))
    attention = 0
    for layer in range(cfg.num_hidden_layers):
        window = cfg.window_of_layer(layer)
        if window:
            pairs = sum(min(t + 1, window) for t in range(tokens))
        else:
            pairs = tokens * (tokens + 1) // 2
        attention += 4 * Hq * D * pairs
    return cfg.num_hidden_layers * per_token * tokens + attention + 2 * V * H


def _best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_limits(device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """The device's copy bandwidth (GB/s, read + write) and dense matmul rate
    (TFLOP/s, in ``dtype``; float32 on a CPU) right now.

    CUDA: a 1 GiB device-to-device copy and an 8192³ matmul, each timed with CUDA
    events over ten windows of ten back-to-back calls after a warm-up; the **best**
    window is the ceiling (the strictest reference: a clock-throttled median would
    flatter every fraction measured against it), the median is reported beside it
    as ``*_median``.
    CPU: a 256 MiB NumPy copy and a 2048³ float32 matmul (NumPy's BLAS, all its
    threads), best of a few repeats. Other devices: an empty dict."""
    if device.startswith("cuda"):
        import torch

        dev = torch.device(device)
        n = 1 << 30
        a = torch.randint(0, 255, (n,), dtype=torch.uint8, device=dev)
        b = torch.empty_like(a)
        copy_best, copy_median = _cuda_seconds(torch, lambda: b.copy_(a))
        del a, b
        mm_dtype = {"float32": torch.float32, "float16": torch.float16}.get(dtype, torch.bfloat16)
        m = 8192
        x = torch.randn(m, m, device=dev, dtype=mm_dtype)
        y = torch.randn(m, m, device=dev, dtype=mm_dtype)
        mm_best, mm_median = _cuda_seconds(torch, lambda: x @ y)
        del x, y
        torch.cuda.empty_cache()
        return {
            "copy_GBps": 2 * n / copy_best / 1e9,
            "copy_GBps_median": 2 * n / copy_median / 1e9,
            "matmul_TFLOPs": 2 * m**3 / mm_best / 1e12,
            "matmul_TFLOPs_median": 2 * m**3 / mm_median / 1e12,
            "matmul_dtype": str(mm_dtype).removeprefix("torch."),
        }
    if device != "cpu":
        return {}
    n = 64 << 20  # float32 elements: 256 MiB
    src = np.random.default_rng(0).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), 5)
    m = 2048
    x = np.random.default_rng(1).random((m, m), dtype=np.float32)
    y = np.random.default_rng(2).random((m, m), dtype=np.float32)
    x @ y  # warm the BLAS
    mm_s = _best_seconds(lambda: x @ y, 3)
    return {
        "copy_GBps": 2 * 4 * n / copy_s / 1e9,
        "matmul_TFLOPs": 2 * m**3 / mm_s / 1e12,
        "matmul_dtype": "float32",
    }


def _cuda_seconds(torch: Any, fn, windows: int = 10, calls: int = 10) -> tuple[float, float]:
    """Seconds per call of ``fn`` on the current CUDA stream: the best and the median
    of ``windows`` event-timed windows of ``calls`` back-to-back calls (after a
    warm-up of one window)."""
    for _ in range(calls):
        fn()
    per_call = []
    for _ in range(windows):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / 1e3 / calls)
    return min(per_call), float(np.median(per_call))
