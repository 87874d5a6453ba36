"""Prefill and decode speed of the metal backend through its Python Runtime,
optionally beside the torch backend on the same checkpoint. Prints JSON.

    python plugins/mind4-metal/bench_decode.py --preset small --dtype float32 --threads 2
    python plugins/mind4-metal/bench_decode.py --preset small --dtype bfloat16 --compare-torch

``--dtype`` is the storage of the random checkpoint's weights (dense and
experts: float32 or bfloat16; ``--experts mxfp4`` overrides the experts).
Measures prefill tokens/s of ``--prompt`` tokens and greedy decode tokens/s of
``--decode`` tokens (mean, and the best window of 16 tokens: the machine may be
shared), plus the process CPU time per thread for each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def measure(runtime, prompt: np.ndarray, decode: int, window: int = 16) -> dict:
    n = prompt.shape[1]
    cache = runtime.new_cache(1, n + decode + 1)
    runtime.forward(prompt[:, :8], cache, 0)  # warm-up: first-touch of the weights
    c0, t0 = time.process_time(), time.perf_counter()
    logits = runtime.to_numpy(runtime.forward(prompt, cache, 0, last_only=True))
    t1, c1 = time.perf_counter(), time.process_time()
    times = []
    for i in range(decode):
        token = np.array([[int(logits[0].argmax())]], dtype=np.int64)
        a = time.perf_counter()
        logits = runtime.to_numpy(runtime.forward(token, cache, n + i, last_only=True))
        times.append(time.perf_counter() - a)
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
