# ruff: noqa: B023  (timing lambdas are called inside their loop iteration)
"""Benchmarks of the Triton backend (and the torch backend beside it) on one GPU.

    python -m mind4_triton.bench --preset gpt-oss-20b --torch --json out.json

Random weights are made directly on the GPU (MXFP4 experts, nothing written to
disk). Printed figures, each with its fraction of the measured limit:

- the limits: device-to-device copy bandwidth (bytes read + written) and the
  bf16 matmul rate (8192³ on random data), measured here, now, by
  :func:`mind4_core.costs.measure_limits` (the same ceilings as ``mind4 bench``);
- decode tokens/s at batch 1 and 8 (a 2048-token context; CUDA-graph replay,
  greedy sampling on the GPU, one host round trip per step as the engine
  does), against ``bytes that must move per step / copy bandwidth``;
- prefill tokens/s of a 2048-token prompt, against ``FLOPs / matmul rate``;
- time to first token (prefill + sampling + copy of the token to the host);
- peak GPU memory with an 8192-token context (prefill in 2048-token chunks,
  then decode).

``--kernels`` times the main kernels alone at the model's shapes (the table
behind ``docs/triton-notes.md``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
from typing import Any

import numpy as np
import torch
import triton

from mind4_core.config import ModelConfig, SamplingParams
from mind4_core.costs import MXFP4_BYTES, decode_step_bytes, measure_limits, prefill_flops
from mind4_core.presets import get_preset

from .kernels import gemv as gemv_kernels
from .kernels import moe as moe_kernels
from .kernels.attention import attention
from .kernels.sampling import SamplerState, sample_tokens
from .runtime import TritonRuntime, random_weights

GiB = 1 << 30


def median_ms(fn, warmup: int = 3, reps: int = 10) -> float:
    """Median wall time of ``fn()`` in ms (synchronised; for host-driven loops)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def gpu_ms(fn, rep_ms: int = 200) -> float:
    """Median device time of ``fn()`` in ms (CUDA events, triton.testing.do_bench)."""
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def graph_ms(fn, calls: int = 10) -> float:
    """Device time of one ``fn()`` replayed from a CUDA graph of ``calls`` calls: no
    Python launch overhead, as in the decode graph."""
    fn()  # compile, allocate
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return gpu_ms(graph.replay) / calls


# ----------------------------------------------------------------------------- limits


# ----------------------------------------------------------------------------- kernels alone


def bench_kernels(
    cfg: ModelConfig, limits: dict, device: str = "cuda", which: str = "all"
) -> list[dict]:
    """Time the kernels alone at the model's shapes; the fastest correct variant of each
    kind becomes the runtime's configuration for this process. ``which="prefill"`` or
    ``"decode"``: those MoE variants only."""
    rows: list[dict] = []
    dev, bf16 = device, torch.bfloat16
    H, I, E, k = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.experts_per_token
    g = torch.Generator(device=dev).manual_seed(0)
    w1 = moe_kernels.MXFP4Weight.of(
        torch.randint(0, 256, (E, 2 * I, H // 32, 16), generator=g, device=dev, dtype=torch.uint8),
        torch.full((E, 2 * I, H // 32), 119, device=dev, dtype=torch.uint8),
    )
    w2 = moe_kernels.MXFP4Weight.of(
        torch.randint(0, 256, (E, H, I // 32, 16), generator=g, device=dev, dtype=torch.uint8),
        torch.full((E, H, I // 32), 119, device=dev, dtype=torch.uint8),
    )
    b1 = torch.randn(E, 2 * I, device=dev) * 0.02
    b2 = torch.randn(E, H, device=dev) * 0.02
    expert_bytes = MXFP4_BYTES * (2 * I * H + H * I)  # one expert's mlp1 + mlp2, packed

    def moe_case(N: int, cfg_e: moe_kernels.ExpertConfig, label: str):
        x = torch.randn(N, H, device=dev, dtype=bf16)
        # 8 routings taken in turn, so that consecutive calls read other experts from DRAM
        # (one routing replayed would find the experts in the 50 MB L2, as a real step won't)
        routings = [
            torch.stack([torch.randperm(E, device=dev)[:k] for _ in range(N)]).to(torch.int32)
            for _ in range(8)
        ]
        turn = itertools.cycle(routings)
        idx = routings[0]
        gates = torch.softmax(torch.randn(N, k, device=dev), -1)
        timer = graph_ms if N <= 64 else gpu_ms
        try:
            t = timer(
                lambda: moe_kernels.expert_rows(x, next(turn), gates, w1, b1, w2, b2, 7.0, cfg_e)
            )
        except Exception as exc:  # a variant this compiler or card cannot build: record, go on
            rows.append(
                {"kernel": f"moe {label}", "N": N, "config": cfg_e._asdict(), "ok": False,
                 "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            )  # fmt: skip
            return
        # every variant must give the reference variant's numbers (a variant that is fast
        # but wrong on this card — e.g. subnormal codes flushed to zero — is never chosen)
        out = moe_kernels.expert_rows(x, idx, gates, w1, b1, w2, b2, 7.0, cfg_e)
        ref = moe_kernels.expert_rows(x, idx, gates, w1, b1, w2, b2, 7.0, EC(16, 32, 64, 32, 64))
        err = float((out - ref).norm() / ref.norm())
        used = len(torch.unique(idx))
        flops = 2 * N * k * (2 * I * H + H * I)
        rows.append(
            {
                "kernel": f"moe {label}",
                "N": N,
                "config": cfg_e._asdict(),
                "ms": t,  # grouping + mlp1 + mlp2
                "rel_err_vs_tile": err,
                "ok": err < 1e-2,
                "GBps": used * expert_bytes / t / 1e6,
                "TFLOPs": flops / t / 1e9,
                "frac_bw": used * expert_bytes / t / 1e6 / limits["copy_GBps"],
                "frac_mm": flops / t / 1e9 / limits["matmul_TFLOPs"],
            }
        )

    EC = moe_kernels.ExpertConfig
    decode_configs = [
        EC(16, 32, 128, 64, 128, 4, 3),  # v1: tile decode + tl.dot
        EC(16, 32, 32, 64, 32, 4, 3, fp16_groups=True),  # v2: scale groups, fp16 bits
        EC(1, 8, 512, 8, 512, 2, 2, gemv=True),  # v3: GEMV, fp16 codes
        EC(1, 4, 256, 4, 256, 1, 3, gemv=True, f32_codes=True),  # v4-v6: float32 codes
        EC(1, 4, 256, 8, 256, 1, 3, gemv=True, f32_codes=True),
        # codes straight from int32 words (session 3)
        EC(1, 4, 256, 4, 256, 1, 3, gemv=True, words=True),
        EC(1, 4, 256, 8, 256, 1, 3, gemv=True, words=True),
        EC(1, 4, 512, 4, 512, 1, 3, gemv=True, words=True),
        EC(1, 8, 256, 8, 256, 2, 3, gemv=True, words=True),
        EC(1, 2, 256, 4, 256, 1, 4, gemv=True, words=True),
    ]
    for c in decode_configs if which in ("all", "decode") else ():
        for N in (1, 8):
            moe_case(N, c, "decode")
    prefill_configs = [
        EC(128, 64, 64, 128, 64, 8, 4, f32_codes=True),  # run 4's choice (byte decode)
        # codes decoded from int32 words (run 20's choice first)
        *(
            EC(*tiles, words=True)
            for tiles in [
                (64, 64, 64, 64, 64, 4, 3), (64, 64, 64, 64, 64, 4, 2),
                (64, 64, 64, 128, 64, 4, 3), (128, 64, 64, 128, 64, 8, 3),
            ]
        ),
    ]  # fmt: skip
    for c in prefill_configs if which in ("all", "prefill") else ():
        moe_case(2048, c, "prefill")

    # the fastest of each kind becomes the runtime's configuration for this run
    def best(kernel, N, gemv=None):
        cands = [
            r
            for r in rows
            if r["kernel"] == kernel
            and r["N"] == N
            and (gemv is None or r["config"]["gemv"] == gemv)
            and r["ok"]
        ]
        return min(cands, key=lambda r: r["ms"])

    if which in ("all", "decode"):
        moe_kernels.TUNED["gemv"] = EC(**best("moe decode", 1, gemv=True)["config"])
        if not best("moe decode", 1)["config"]["gemv"]:  # the tile kernels win even at batch 1
            moe_kernels.GEMV_MAX_PAIRS = 0
        moe_kernels.TUNED["decode"] = EC(**best("moe decode", 8, gemv=False)["config"])
    if which in ("all", "prefill"):
        moe_kernels.TUNED["prefill"] = EC(**best("moe prefill", 2048)["config"])
    rows.append(
        {
            "kernel": "chosen",
            "gemv": moe_kernels.TUNED["gemv"]._asdict(),
            "gemv_max_pairs": moe_kernels.GEMV_MAX_PAIRS,
            "decode": moe_kernels.TUNED["decode"]._asdict(),
            "prefill": moe_kernels.TUNED["prefill"]._asdict(),
        }
    )

    if which != "all":
        return rows

    # attention: decode over a long context, prefill 2048
    Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    sinks = torch.randn(Hq, device=dev)
    for S in (2048, 8192):
        kc = torch.randn(1, Hkv, S, D, device=dev, dtype=bf16).transpose(1, 2)
        vc = torch.randn(1, Hkv, S, D, device=dev, dtype=bf16).transpose(1, 2)
        q = torch.randn(1, 1, Hq, D, device=dev, dtype=bf16)
        off = torch.tensor([S - 1], device=dev, dtype=torch.int32)
        for splits in (None, 1, 4, 16):
            t = graph_ms(
                lambda: attention(
                    q, kc, vc, sinks, sm_scale=0.125, window=None, offset=off, num_splits=splits
                )
            )
            nbytes = 2 * S * Hkv * D * 2
            rows.append(
                {
                    "kernel": f"attention decode S={S} splits={splits or 'auto'}",
                    "ms": t,
                    "GBps": nbytes / t / 1e6,
                    "frac_bw": nbytes / t / 1e6 / limits["copy_GBps"],
                }
            )
    T = 2048
    q = torch.randn(1, T, Hq, D, device=dev, dtype=bf16)
    kc = torch.randn(1, Hkv, T, D, device=dev, dtype=bf16).transpose(1, 2)
    vc = torch.randn(1, Hkv, T, D, device=dev, dtype=bf16).transpose(1, 2)
    for window in (None, 128):
        for bm, bn in ((128, 64), (64, 64), (128, 128)):
            t = gpu_ms(
                lambda: attention(
                    q,
                    kc,
                    vc,
                    sinks,
                    sm_scale=0.125,
                    window=window,
                    offset=0,
                    block_m=bm,
                    block_n=bn,
                )
            )
            pairs = sum(min(i + 1, window) if window else i + 1 for i in range(T))
            flops = 4 * Hq * D * pairs
            rows.append(
                {
                    "kernel": f"attention prefill T={T} window={window} BM={bm} BN={bn}",
                    "ms": t,
                    "TFLOPs": flops / t / 1e9,
                    "frac_mm": flops / t / 1e9 / limits["matmul_TFLOPs"],
                }
            )

    # matvecs of decode: cuBLAS against the Triton GEMV; the faster serves this run
    GC = gemv_kernels.GemvConfig
    gemv_configs = [GC(2, 512, 2), GC(4, 512, 4), GC(4, 256, 4), GC(1, 4096, 4), GC(2, 4096, 8),
                    GC(1, 1024, 2), GC(2, 1024, 4), GC(1, 2048, 4)]  # fmt: skip
    for name, (n_out, n_in, has_bias) in {
        "qkv": (cfg.qkv_dim, H, True),
        "out": (H, Hq * D, True),
        "unembedding": (cfg.vocab_size, H, False),
    }.items():
        nbytes = 2 * n_out * n_in
        # copies taken in turn so that each call streams its matrix from DRAM, not L2
        copies = [
            torch.randn(n_out, n_in, device=dev, dtype=bf16)
            for _ in range(max(2, -(-256_000_000 // nbytes)))
        ]
        bias = torch.randn(n_out, device=dev, dtype=bf16) if has_bias else None
        x = torch.randn(1, n_in, device=dev, dtype=bf16)
        turn = itertools.cycle(copies)
        t_cublas = graph_ms(lambda: torch.nn.functional.linear(x, next(turn), bias))
        timed = [(t_cublas, None)]
        for gc_ in gemv_configs:
            timed.append((graph_ms(lambda: gemv_kernels.gemv(x, next(turn), bias, gc_)), gc_))
        for t, gc_ in timed:
            rows.append(
                {
                    "kernel": f"linear M=1 {name} "
                    + ("cuBLAS" if gc_ is None else str(tuple(gc_))),
                    "ms": t,
                    "GBps": nbytes / t / 1e6,
                    "frac_bw": nbytes / t / 1e6 / limits["copy_GBps"],
                }
            )
        _, cfg_best = min(timed, key=lambda tc: tc[0])
        if cfg_best is not None:
            gemv_kernels.TUNED[(n_out, n_in)] = cfg_best
        copies = bias = None
    rows.append(
        {"kernel": "chosen gemv", "tuned": {str(k): v for k, v in gemv_kernels.TUNED.items()}}
    )
    return rows


# ----------------------------------------------------------------------------- whole model


GREEDY = SamplingParams(temperature=0.0)


def greedy(logits: torch.Tensor) -> np.ndarray:
    """Argmax on the GPU (the sampler kernel), then the token to the host."""
    return sample_tokens(logits, GREEDY, SamplerState(0)).cpu().numpy()


def bench_runtime(
    rt,
    cfg: ModelConfig,
    limits: dict,
    *,
    prompt: int = 2048,
    decode: int = 64,
    batches=(1, 8),
    memory_context: int = 8192,
    name: str = "triton",
) -> dict:
    out: dict[str, Any] = {"backend": name}
    rng = np.random.default_rng(0)
    V = cfg.vocab_size

    # prefill + time to first token (batch 1)
    tokens = rng.integers(0, V, (1, prompt))
    cache = rt.new_cache(1, prompt + decode + 1)
    rt.forward(tokens, cache, 0)  # compile / warm up
    torch.cuda.synchronize()

    def ttft():
        logits = rt.forward(tokens, cache, 0)
        return greedy(logits)

    t = median_ms(ttft, warmup=1, reps=5)
    prefill_t = median_ms(lambda: rt.forward(tokens, cache, 0), warmup=1, reps=5)
    flops = prefill_flops(cfg, prompt)
    out["prefill_tokens"] = prompt
    out["prefill_ms"] = prefill_t
    out["prefill_tok_s"] = prompt / prefill_t * 1e3
    out["prefill_TFLOPs"] = flops / prefill_t / 1e9
    out["prefill_frac_matmul"] = out["prefill_TFLOPs"] / limits["matmul_TFLOPs"]
    out["ttft_ms"] = t
    # where the wall time goes: the host's time to launch the pass (no synchronisation),
    # and the device's time from the pass's first kernel to its last (CUDA events)
    launch, device = [], []
    for _ in range(5):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        rt.forward(tokens, cache, 0)
        end.record()
        launch.append((time.perf_counter() - t0) * 1e3)
        end.synchronize()
        device.append(start.elapsed_time(end))
    out["prefill_launch_ms"] = float(np.median(launch))
    out["prefill_device_ms"] = float(np.median(device))

    # decode at batch sizes, context = prompt
    for B in batches:
        tokens_b = rng.integers(0, V, (B, prompt))
        cache_b = cache if B == 1 else rt.new_cache(B, prompt + decode + 1)
        logits = rt.forward(tokens_b, cache_b, 0)
        token = greedy(logits)[:, None]
        rt.forward(token, cache_b, prompt)  # capture the graph (if any)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(decode):
            logits = rt.forward(token, cache_b, prompt + i)
            token = greedy(logits)[:, None]  # one host round trip per step, as the engine
        torch.cuda.synchronize()
        step_ms = (time.perf_counter() - start) * 1e3 / decode
        nbytes = decode_step_bytes(cfg, B, prompt + decode // 2)
        out[f"decode_b{B}_step_ms"] = step_ms
        out[f"decode_b{B}_tok_s"] = B * 1e3 / step_ms
        out[f"decode_b{B}_GBps"] = nbytes / step_ms / 1e6
        out[f"decode_b{B}_frac_bw"] = out[f"decode_b{B}_GBps"] / limits["copy_GBps"]
        graphs = getattr(cache_b, "graphs", None)
        if graphs and B in graphs:  # device time of the step alone
            g = graphs[B].graph
            out[f"decode_b{B}_graph_ms"] = gpu_ms(g.replay)
            out[f"decode_b{B}_graph_frac_bw"] = (
                nbytes / out[f"decode_b{B}_graph_ms"] / 1e6 / limits["copy_GBps"]
            )
        cache_b = None
    cache = None
    gc.collect()
    torch.cuda.empty_cache()

    # peak memory with an 8192-token context
    torch.cuda.reset_peak_memory_stats()
    cache = rt.new_cache(1, memory_context)
    tokens = rng.integers(0, V, (1, memory_context - 16))
    for start in range(0, tokens.shape[1], 2048):
        chunk = tokens[:, start : start + 2048]
        logits = rt.forward(chunk, cache, start)
    token = greedy(logits)[:, None]
    for i in range(8):
        logits = rt.forward(token, cache, tokens.shape[1] + i)
        token = greedy(logits)[:, None]
    torch.cuda.synchronize()
    out["peak_GiB_ctx8192"] = torch.cuda.max_memory_allocated() / GiB
    return out


def profile_step(rt, cfg: ModelConfig, T: int = 1, steps: int = 3) -> list[dict]:
    """Device time per kernel name of eager steps (torch.profiler): a decode step at a
    2048 context (``T = 1``) or a prefill of ``T`` tokens from position 0."""
    from torch.profiler import ProfilerActivity, profile

    cache = rt.new_cache(1, 2100)
    rng = np.random.default_rng(3)
    if T == 1:
        rt.forward(rng.integers(0, cfg.vocab_size, (1, 2048)), cache, 0)
    tokens = torch.from_numpy(rng.integers(0, cfg.vocab_size, (1, T))).to("cuda")
    offsets = torch.tensor([2048 if T == 1 else 0], device="cuda", dtype=torch.int32)
    rt._forward(tokens, cache, offsets, True)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            rt._forward(tokens, cache, offsets, True)
        torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages():
        us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        if us:
            rows.append(
                {
                    "kernel_name": evt.key[:90],
                    "us_per_step": us / steps,
                    "calls_per_step": evt.count / steps,
                }
            )
    rows.sort(key=lambda r: -r["us_per_step"])
    total = sum(r["us_per_step"] for r in rows)
    return [{"kernel_name": "TOTAL", "us_per_step": total}] + rows[:25]


class DeviceCheckpoint:
    """Random weights on the GPU served through the Checkpoint API (host arrays), so
    another backend's loader can read the very same model."""

    def __init__(self, config: ModelConfig, weights: dict):
        from pathlib import Path

        self.config, self._w, self.path, self.format, self.tokenizer = (
            config,
            weights,
            Path("<gpu>"),
            "canonical",
            None,
        )

    def names(self):
        return list(self._w)

    def is_mxfp4(self, name):
        return isinstance(self._w[name], moe_kernels.MXFP4Weight)

    def dtype(self, name):
        if self.is_mxfp4(name):
            return "MXFP4"
        return {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}[
            self._w[name].dtype
        ]

    def shape(self, name):
        w = self._w[name]
        return tuple(w.shape)

    def tensor(self, name):
        w = self._w[name]
        if w.dtype == torch.bfloat16:
            return w.view(torch.int16).cpu().numpy().view(np.uint16)
        return w.cpu().numpy()

    def mxfp4(self, name):
        w = self._w[name]
        return w.blocks.cpu().numpy(), w.scales.cpu().numpy()

    def float32(self, name):
        w = self._w[name]
        if self.is_mxfp4(name):
            return moe_kernels.dequantize(w).cpu().numpy()
        return w.float().cpu().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gpt-oss-20b")
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument(
        "--kernels",
        nargs="?",
        const="all",
        choices=["all", "prefill", "decode"],
        help="time the kernels alone too (all, or the prefill or decode MoE variants only)",
    )
    parser.add_argument(
        "--torch", action="store_true", help="the torch backend on the same weights"
    )
    parser.add_argument(
        "--torch-probe", action="store_true", help="compare the torch backend's logits only"
    )
    parser.add_argument("--profile", action="store_true", help="per-kernel times of a decode step")
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args(argv)

    cfg = get_preset(args.preset)
    props = torch.cuda.get_device_properties(0)
    result: dict[str, Any] = {
        "device": props.name,
        "sms": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "preset": args.preset,
    }
    result["limits"] = limits = measure_limits("cuda", "bfloat16")
    print(json.dumps(result), flush=True)
    if args.kernels:
        result["kernels"] = bench_kernels(cfg, limits, which=args.kernels)
        for row in result["kernels"]:
            print(json.dumps(row), flush=True)

    weights = random_weights(cfg, "cuda", torch.bfloat16, seed=0)
    probe = np.random.default_rng(1).integers(0, cfg.vocab_size, (1, 32))
    if not args.no_triton:
        torch.cuda.reset_peak_memory_stats()
        rt = TritonRuntime(cfg, weights, device="cuda", dtype=torch.bfloat16)
        result["triton_weights_GiB"] = torch.cuda.memory_allocated() / GiB
        result["triton"] = bench_runtime(rt, cfg, limits, prompt=args.prompt, decode=args.decode)
        print(json.dumps(result["triton"]), flush=True)
        probe_logits = rt.forward(probe, None, 0, last_only=False).cpu()
        if args.profile:
            result["decode_profile"] = profile_step(rt, cfg, T=1)
            result["prefill_profile"] = profile_step(rt, cfg, T=args.prompt)
            for row in result["decode_profile"] + result["prefill_profile"]:
                print(json.dumps(row), flush=True)
        del rt
        gc.collect()
        torch.cuda.empty_cache()
        # the same model in float32 (dense weights widened, experts still MXFP4): how far
        # bf16 rounding alone moves the logits of this random 24-layer model
        rt32 = TritonRuntime(cfg, weights, device="cuda", dtype=torch.float32)
        probe32 = rt32.forward(probe, None, 0, last_only=False).cpu()
        del rt32
        result["triton_bf16_vs_fp32_logits"] = {
            "rel_err": float((probe_logits - probe32).norm() / probe32.norm())
        }
        print(json.dumps(result["triton_bf16_vs_fp32_logits"]), flush=True)
    if args.torch or args.torch_probe:
        gc.collect()
        torch.cuda.empty_cache()
        from mind4_torch.runtime import factory

        from mind4_core.config import Config, RuntimeConfig

        ckpt = DeviceCheckpoint(cfg, weights)
        config = Config(runtime=RuntimeConfig(device="cuda", dtype="bfloat16"))
        trt = factory(checkpoint=ckpt, config=config, components={})
        if not args.no_triton:
            ref = trt.forward(probe, None, 0, last_only=False).cpu()
            err = float((probe_logits - ref).norm() / ref.norm())
            agree = float((probe_logits.argmax(-1) == ref.argmax(-1)).float().mean())
            result["triton_vs_torch_logits"] = {"rel_err": err, "argmax_agree": agree}
            result["torch_bf16_vs_triton_fp32_logits"] = {
                "rel_err": float((ref - probe32).norm() / probe32.norm())
            }
            print(json.dumps(result["triton_vs_torch_logits"]), flush=True)
            print(json.dumps(result["torch_bf16_vs_triton_fp32_logits"]), flush=True)
    if args.torch:
        torch.cuda.reset_peak_memory_stats()
        result["torch_backend"] = bench_runtime(
            trt, cfg, limits, prompt=args.prompt, decode=min(args.decode, 16), name="torch"
        )
        print(json.dumps(result["torch_backend"]), flush=True)
    if "triton" in result and "torch_backend" in result:
        result["decode_b1_speedup_vs_torch"] = (
            result["triton"]["decode_b1_tok_s"] / result["torch_backend"]["decode_b1_tok_s"]
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    summary = {k: v for k, v in result.items() if k != "kernels"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
