"""``mind4 bench``: prefill and decode speed and peak memory of any backend.

Measures through the same :class:`~mind4_core.protocols.Runtime` calls the
engine uses, so every backend is timed the same way:

- prefill: one forward pass over ``prompt_tokens`` tokens into a fresh cache
  (after an untimed one of the same length);
- decode: ``decode_tokens`` single-token steps starting at each position in
  ``contexts`` (the cache is filled up to that position first, the last two
  steps untimed so a backend can compile or capture a graph), reported as
  tokens/s per position, so the cost of a longer context is visible;
- peak memory: the process's peak resident set (CPU) and, on a CUDA device,
  the peak of torch's allocator;
- with ``limits`` (the default): the device's copy bandwidth and matmul rate
  measured now (:func:`mind4_core.costs.measure_limits`), and each speed as a
  fraction of what it must move or compute (``decode_frac_bw@POS``: the bytes of
  :func:`~mind4_core.costs.decode_step_bytes` per step over the copy bandwidth;
  ``prefill_frac_matmul``: :func:`~mind4_core.costs.prefill_flops` over the matmul
  rate).

``batch`` may list several sizes (``"1,8"``): decode is measured at each; keys of
sizes after the first carry ``_b<size>``.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .costs import MXFP4_BYTES, decode_step_bytes, measure_limits, prefill_flops
from .engine import load
from .errors import ContextOverflowError, InputError
from .presets import get_preset, init_checkpoint, parameter_count

_DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}


def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _reset_peak_device(device: str) -> None:
    """Start the CUDA allocator's peak afresh (``--compare`` runs backends in one process)."""
    if str(device).startswith(("cuda", "auto")) and "torch" in sys.modules:
        import gc

        import torch

        if not torch.cuda.is_available():
            return
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_device_mib(device: str) -> float | None:
    """Peak of torch's CUDA allocator (both GPU backends allocate through it)."""
    if not str(device).startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    return torch.cuda.max_memory_allocated(torch.device(device)) / (1024 * 1024)


def _weight_bytes(checkpoint: Any, dtype: str) -> tuple[float, float]:
    """Bytes per dense weight (the run's dtype) and per expert weight (as stored:
    MXFP4 stays packed in the backends that read it directly; the minimum to move)."""
    dense = _DTYPE_BYTES.get(dtype, 2.0)
    expert = dense
    for name in checkpoint.names():
        if ".mlp.mlp1" in name:
            expert = MXFP4_BYTES if checkpoint.is_mxfp4(name) else min(dense, expert)
            break
    return dense, expert


def _sync(runtime: Any) -> None:
    sync = getattr(runtime, "synchronize", None)
    if sync is not None:
        sync()


#: untimed decode steps just before each measured position
WARM_STEPS = 2


def _fill(
    runtime: Any, cache: Any, rng: np.random.Generator, vocab: int, upto: int, batch: int
) -> None:
    start = 0
    while start < upto:
        n = min(512, upto - start)
        runtime.forward(rng.integers(0, vocab, size=(batch, n)), cache, start, last_only=True)
        start += n


def run_bench(
    *,
    preset: str = "small",
    checkpoint: str | None = None,
    backend: str = "torch",
    device: str = "auto",
    dtype: str | None = None,
    experts: str | None = None,
    prompt_tokens: int = 512,
    decode_tokens: int = 64,
    contexts: str = "200,2000",
    batch: int | str = 1,
    threads: int | None = None,
    limits: bool = True,
) -> dict[str, Any]:
    batches = [int(b) for b in str(batch).split(",") if b.strip()]
    if not batches or min(batches) < 1:
        raise InputError(f"--batch: batch sizes must be positive integers, e.g. 1,8; got {batch!r}")
    batch = batches[0]
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MIND4_NUM_THREADS"] = str(threads)
    positions = [int(c) for c in str(contexts).split(",") if c.strip()]
    if not positions or min(positions) < WARM_STEPS:
        raise InputError(
            f"--contexts: positions must be at least {WARM_STEPS} (the untimed steps before "
            f"each measurement), e.g. 200,2000; got {contexts!r}"
        )
    with tempfile.TemporaryDirectory(prefix="mind4-bench-") as tmp:
        if checkpoint is None:
            experts = experts or ("mxfp4" if preset.startswith("gpt-oss") else "bf16")
            checkpoint = str(
                init_checkpoint(
                    preset,
                    Path(tmp) / preset,
                    seed=0,
                    experts=experts,
                    dtype="float32" if dtype == "float32" else "bfloat16",
                )
            )
            name = preset
        else:
            name = Path(checkpoint).name
        _reset_peak_device(device)
        t0 = time.perf_counter()
        model = load(checkpoint, backend=backend, device=device, dtype=dtype)
        load_s = time.perf_counter() - t0
        runtime, cfg = model.runtime, model.model_config
        capacity = max([prompt_tokens, *positions]) + decode_tokens + 1
        if capacity > cfg.max_context_length:
            raise ContextOverflowError(
                f"the benchmark needs {capacity} positions (prompt, contexts and decode tokens) "
                f"but the model holds {cfg.max_context_length}; lower --contexts or --prompt-tokens"
            )
        rng = np.random.default_rng(0)

        # warm-up (compilation, allocator, caches)
        cache = runtime.new_cache(batch, capacity)
        warm = max(1, min(16, capacity - 5))  # a prefill, then up to 4 decode steps
        runtime.forward(rng.integers(0, cfg.vocab_size, size=(batch, warm)), cache, 0)
        for i in range(min(4, capacity - warm)):
            runtime.forward(rng.integers(0, cfg.vocab_size, size=(batch, 1)), cache, warm + i)
        _sync(runtime)

        # prefill: once untimed at the measured length (a JIT backend compiles the kernels
        # of this shape then), then timed into a fresh cache
        prompt = rng.integers(0, cfg.vocab_size, size=(batch, prompt_tokens))
        runtime.forward(prompt, runtime.new_cache(batch, capacity), 0, last_only=True)
        cache = runtime.new_cache(batch, capacity)
        _sync(runtime)
        t0 = time.perf_counter()
        runtime.forward(prompt, cache, 0, last_only=True)
        _sync(runtime)
        prefill_s = time.perf_counter() - t0

        # decode at each position, for each batch size
        decode: dict[str, float] = {}

        def label(pos: int, b: int) -> str:  # sizes after the first carry their size
            return f"{pos}" if b == batch else f"{pos}_b{b}"

        for b in batches:
            for pos in positions:
                cache = runtime.new_cache(b, capacity)
                _fill(runtime, cache, rng, cfg.vocab_size, pos - WARM_STEPS, b)
                token = rng.integers(0, cfg.vocab_size, size=(b, 1))
                for step in range(WARM_STEPS):  # untimed: compiles, captures decode graphs
                    runtime.forward(token, cache, pos - WARM_STEPS + step, last_only=True)
                _sync(runtime)
                t0 = time.perf_counter()
                for step in range(decode_tokens):
                    runtime.forward(token, cache, pos + step, last_only=True)
                _sync(runtime)
                decode[label(pos, b)] = b * decode_tokens / (time.perf_counter() - t0)
            cache = None

        result: dict[str, Any] = {
            "preset": name,
            "backend": model.backend,
            "device": model.device,
            "dtype": model.dtype,
            "parameters": parameter_count(cfg),
            "active_parameters": parameter_count(cfg, active=True),
            "batch": batch,
            "load_s": load_s,
            "prefill_tokens": prompt_tokens,
            "prefill_tok_s": batch * prompt_tokens / prefill_s,
            "ttft_s": prefill_s,
        }
        for key, rate in decode.items():
            result[f"decode_tok_s@{key}"] = rate
        if len(positions) >= 2:
            result["decode_slowdown"] = (
                decode[label(positions[0], batch)] / decode[label(positions[-1], batch)]
            )
        if limits:
            measured = measure_limits(str(model.device), str(model.dtype))
            result["limits"] = measured
            if measured:
                dense, expert = _weight_bytes(model.checkpoint, str(model.dtype))
                kv = _DTYPE_BYTES.get(str(model.dtype), 2.0)
                for b in batches:
                    for pos in positions:
                        step_s = b / decode[label(pos, b)]
                        moved = decode_step_bytes(
                            cfg, b, pos + decode_tokens // 2,
                            dense_bytes=dense, expert_bytes=expert, kv_bytes=kv,
                        )  # fmt: skip
                        result[f"decode_frac_bw@{label(pos, b)}"] = (
                            moved / step_s / 1e9 / measured["copy_GBps"]
                        )
                result["prefill_frac_matmul"] = (
                    batch * prefill_flops(cfg, prompt_tokens) / prefill_s / 1e12
                ) / measured["matmul_TFLOPs"]
        result["peak_rss_mib"] = _peak_rss_mib()
        peak_device = _peak_device_mib(str(model.device))
        if peak_device is not None:
            result["peak_device_mib"] = peak_device
        result["threads"] = threads or os.cpu_count()
        result["machine"] = f"{platform.machine()} {platform.system()} {os.cpu_count()} cores"
        result["date"] = time.strftime("%Y-%m-%d")
        return result


def run_compare(
    backends: list[str],
    *,
    preset: str = "small",
    checkpoint: str | None = None,
    dtype: str | None = None,
    experts: str | None = None,
    backend: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """:func:`run_bench` for each backend on one checkpoint (made once from ``preset``
    when none is given). A backend that cannot run here gives a row with ``error``."""
    from .errors import Mind4Error

    if not backends:
        raise Mind4Error("--compare needs at least one backend name, e.g. --compare torch,triton")
    results = []
    with tempfile.TemporaryDirectory(prefix="mind4-bench-") as tmp:
        name = Path(checkpoint).name if checkpoint else preset
        if checkpoint is None:
            experts = experts or ("mxfp4" if preset.startswith("gpt-oss") else "bf16")
            storage = "float32" if dtype == "float32" else "bfloat16"
            checkpoint = str(
                init_checkpoint(preset, Path(tmp) / preset, seed=0, experts=experts, dtype=storage)
            )
        for name_ in backends:
            try:
                result = run_bench(checkpoint=checkpoint, backend=name_, dtype=dtype, **options)
            except Mind4Error as exc:
                result = {"backend": name_, "error": str(exc)}
            result["preset"] = name
            results.append(result)
    return results


def print_compare(results: list[dict[str, Any]]) -> None:
    """One table: a row per measure, a column per backend."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mind4 bench --compare: {results[0].get('preset', '')}")
    table.add_column("measure")
    for r in results:
        table.add_column(
            f"{r['backend']}\n{r.get('device', '')} {r.get('dtype', '')}", justify="right"
        )
    keys: list[str] = []
    for r in results:
        keys += [
            k for k in r if k not in keys and k not in ("backend", "device", "dtype", "preset")
        ]
    for key in keys:
        cells = []
        for r in results:
            value = r.get(key, "-")
            cells.append(f"{value:,.2f}" if isinstance(value, float) else str(value))
        table.add_row(key, *cells)
    Console().print(table)


__all__ = ["get_preset", "print_compare", "run_bench", "run_compare"]
