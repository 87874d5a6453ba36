"""Prefill and decode speed of the metal backend through its Python Runtime,
optionally beside the torch backend on the same checkpoint. Prints JSON.

    python plugins/mind4-metal/bench_decode.py --preset small --dtype float32 --threads 2
    python plugins/mind4-metal/bench_decode.py --preset small --dtype bfloat16 --compare-torch

``--dtype`` is the storage of the random checkpoint's weights (dense and
experts: float32 or bfloat16; ``--experts mxfp4`` overrides the experts).
Measures prefill tokens/s of ``--prompt`` tokens and greedy decode tokens/s of
``--decode`` tokens (mean, and the best window of 16 tokens: the machine may be
shared), plus the process CPU time per thread for each phase.

``--rounds N`` is the paired comparison with the torch backend for a shared
machine: both runtimes are loaded and prefilled once, then each round decodes
``--decode`` tokens at the same positions with metal and with torch, one right
after the other (the order alternates between rounds, so contention and the
host's memory-bandwidth swings hit both sides alike). Each round's tok/s and
ratio go to stderr as they come, with each run's process CPU time per thread
over its wall time (far below its usual value: another process took a core
during that run; so far that slowed torch far more than metal, inflating the
round's ratio); the JSON adds the rounds, the median ratio
and the 2-thread DRAM read rate (``metal_native``'s ``bench_memory``, 512 MB)
and load average before and after:

    flock /tmp/mind4-bench.lock python plugins/mind4-metal/bench_decode.py \
        --preset small --dtype float32 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parents[1]):  # a source checkout without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402

from mind4_core.checkpoint import open_checkpoint  # noqa: E402
from mind4_core.config import Config, RuntimeConfig  # noqa: E402
from mind4_core.presets import init_checkpoint  # noqa: E402


def load(backend: str, checkpoint, threads: int):
    config = Config(runtime=RuntimeConfig(device="cpu", dtype="float32", backend=backend))
    if backend == "metal":
        from mind4_metal.runtime import MetalRuntime

        return MetalRuntime(checkpoint, dtype="float32", num_threads=threads)
    import torch

    torch.set_num_threads(threads)
    from mind4_torch.runtime import factory

    return factory(checkpoint=checkpoint, config=config, components={})


def greedy_decode(runtime, cache, logits: np.ndarray, start: int, decode: int) -> list[float]:
    """Greedy decode of ``decode`` tokens at positions ``start``, ``start + 1``, ...
    after ``logits``; the seconds of each step."""
    times = []
    for i in range(decode):
        token = np.array([[int(logits[0].argmax())]], dtype=np.int64)
        a = time.perf_counter()
        logits = runtime.to_numpy(runtime.forward(token, cache, start + i, last_only=True))
        times.append(time.perf_counter() - a)
    return times


def measure(runtime, prompt: np.ndarray, decode: int, window: int = 16) -> dict:
    n = prompt.shape[1]
    cache = runtime.new_cache(1, n + decode + 1)
    runtime.forward(prompt[:, :8], cache, 0)  # warm-up: first-touch of the weights
    c0, t0 = time.process_time(), time.perf_counter()
    logits = runtime.to_numpy(runtime.forward(prompt, cache, 0, last_only=True))
    t1, c1 = time.perf_counter(), time.process_time()
    times = greedy_decode(runtime, cache, logits, n, decode)
    t2, c2 = time.perf_counter(), time.process_time()
    windows = [
        sum(times[i : i + window]) / window for i in range(0, max(1, len(times) - window + 1))
    ]
    return {
        "prefill_tokens": n,
        "prefill_tok_s": n / (t1 - t0),
        "prefill_cpu_s": c1 - c0,
        "decode_tokens": decode,
        "decode_tok_s": decode / (t2 - t1),
        "decode_best_window_tok_s": 1.0 / min(windows),
        "decode_cpu_s": c2 - c1,
    }


def dram_read_gbs(bench_memory: Path, threads: int) -> float | None:
    """The read rate of a 512 MB huge-page buffer with ``threads`` threads (GB/s),
    from metal_native's bench_memory; None when it is not built."""
    if not bench_memory.is_file():
        return None
    cmd = [str(bench_memory), "--threads", str(threads), "--mb", "512", "--reps", "5"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    match = re.search(r"anon huge\s+one pass\s+([0-9.]+) GB/s", out)
    return float(match.group(1)) if match else None


def paired(checkpoint, prompt: np.ndarray, args) -> dict:
    """Metal and torch decode in alternating rounds at the same positions."""
    n, backends = prompt.shape[1], ("metal", "torch")
    runtimes, caches, first = {}, {}, {}
    for backend in backends:
        runtime = runtimes[backend] = load(backend, checkpoint, args.threads)
        cache = caches[backend] = runtime.new_cache(1, n + args.decode + 1)
        first[backend] = runtime.to_numpy(runtime.forward(prompt, cache, 0, last_only=True))
        greedy_decode(runtime, cache, first[backend], n, 16)  # warm-up
    rounds = []
    for r in range(args.rounds):
        row = {}
        for backend in backends if r % 2 == 0 else backends[::-1]:
            time.sleep(0.2)  # the other backend's idle threads stop spinning
            c0, t0 = time.process_time(), time.perf_counter()
            greedy_decode(runtimes[backend], caches[backend], first[backend], n, args.decode)
            wall = time.perf_counter() - t0
            row[backend] = args.decode / wall
            # process CPU time / (wall x threads): well below 1 when another
            # process took a core during the run (the round is then suspect)
            row[f"{backend}_cpu_share"] = (time.process_time() - c0) / wall / args.threads
        row["ratio"] = row["metal"] / row["torch"]
        rounds.append(row)
        print(
            f"round {r + 1}: metal {row['metal']:7.1f} tok/s (cpu {row['metal_cpu_share']:.2f})"
            f"   torch {row['torch']:7.1f} tok/s (cpu {row['torch_cpu_share']:.2f})"
            f"   ratio {row['ratio']:.2f}",
            file=sys.stderr,
            flush=True,
        )
    result = {
        "rounds": rounds,
        "median_metal_tok_s": statistics.median(r["metal"] for r in rounds),
        "median_torch_tok_s": statistics.median(r["torch"] for r in rounds),
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
    }
    print(f"median ratio {result['median_ratio']:.2f}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--checkpoint", help="an existing checkpoint directory instead of a random one")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--experts", choices=["float32", "bf16", "mxfp4"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=256)
    p.add_argument("--compare-torch", action="store_true")
    p.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="paired decode comparison with torch: this many alternating rounds",
    )
    p.add_argument(
        "--bench-memory",
        type=Path,
        default=HERE.parents[1] / "metal_native" / "build" / "benchmark" / "bench_memory",
        help="metal_native's bench_memory binary, for the DRAM read rate of --rounds",
    )
    args = p.parse_args()
    experts = args.experts or ("float32" if args.dtype == "float32" else "bf16")
    with tempfile.TemporaryDirectory() as tmp:
        path = (
            Path(args.checkpoint)
            if args.checkpoint
            else init_checkpoint(
                args.preset, Path(tmp) / "ckpt", seed=0, experts=experts, dtype=args.dtype
            )
        )
        checkpoint = open_checkpoint(path)
        rng = np.random.default_rng(0)
        prompt = rng.integers(0, checkpoint.config.vocab_size, size=(1, args.prompt))
        results = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
            "checkpoint": str(args.checkpoint or f"random {args.preset}"),
            "weights": {"dense": args.dtype, "experts": experts},
            "threads": args.threads,
        }
        if args.rounds > 0:
            results["dram_read_gb_s_before"] = dram_read_gbs(args.bench_memory, args.threads)
            results["paired_decode"] = paired(checkpoint, prompt, args)
            results["dram_read_gb_s_after"] = dram_read_gbs(args.bench_memory, args.threads)
            results["load_after"] = os.getloadavg()
            print(json.dumps(results, indent=2))
            return
        backends = ["metal"] + (["torch"] if args.compare_torch else [])
        for backend in backends:
            runtime = load(backend, checkpoint, args.threads)
            results[backend] = measure(runtime, prompt, args.decode)
            del runtime
        if args.compare_torch:
            results["speedup_decode"] = (
                results["metal"]["decode_tok_s"] / results["torch"]["decode_tok_s"]
            )
            results["speedup_prefill"] = (
                results["metal"]["prefill_tok_s"] / results["torch"]["prefill_tok_s"]
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
