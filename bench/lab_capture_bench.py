"""Decode speed with the lab's capture off, after it was closed, and while it is open.

The lab's bar: with capture off, decode speed is unchanged (capture installs its
observers and hooks only while a capture is open). Two runtimes are loaded from one
checkpoint: ``A`` is never captured; ``B`` has a capture opened and closed before
it is timed, then is also timed with a capture open. Conditions are interleaved
round by round so machine noise hits them alike; the median of the rounds is
reported.

    python bench/lab_capture_bench.py --preset small --device cpu --dtype float32
    python bench/lab_capture_bench.py --preset small --device cuda --dtype bfloat16 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--context", type=int, default=200, help="tokens in the cache first")
    parser.add_argument("--tokens", type=int, default=64, help="decode steps per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from mind4_torch.runtime import factory

    from mind4_core.checkpoint import CanonicalLoader
    from mind4_core.config import Config, RuntimeConfig
    from mind4_core.lab import CAPTURE_KINDS, capture
    from mind4_core.presets import init_checkpoint

    def load_runtime(path):  # straight to the backend factory: no plugin discovery needed
        config = Config(runtime=RuntimeConfig(device=args.device, dtype=args.dtype))
        return factory(checkpoint=CanonicalLoader().open(path), config=config, components={})

    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        path = init_checkpoint(
            args.preset, Path(tmp) / args.preset, seed=0, dtype="float32", experts="bf16"
        )
        A, B = load_runtime(path), load_runtime(path)
    cfg = A.model_config
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, cfg.vocab_size, (1, args.context))
    steps = rng.integers(0, cfg.vocab_size, (args.tokens, 1, 1))
    caches = {}
    for name, rt in (("A", A), ("B", B)):
        caches[name] = rt.new_cache(1, args.context + args.tokens)
        rt.forward(prompt, caches[name], 0)
    with capture(B, CAPTURE_KINDS, attention_layers=range(cfg.num_hidden_layers)):
        B.forward(steps[0], caches["B"], args.context)  # B has been observed, then released

    def decode(rt, cache) -> float:
        sync()
        t0 = time.perf_counter()
        for i, token in enumerate(steps):
            rt.forward(token, cache, args.context + i)
        sync()
        return args.tokens / (time.perf_counter() - t0)

    conditions = {
        "off, never captured (A)": lambda: decode(A, caches["A"]),
        "off, after a capture closed (B)": lambda: decode(B, caches["B"]),
        "capture on: routing": None,
        "capture on: routing+attention(1 layer)+residual": None,
    }

    def on(kinds, layers):
        def run() -> float:
            with capture(B, kinds, attention_layers=layers):
                return decode(B, caches["B"])

        return run

    conditions["capture on: routing"] = on(["routing"], [])
    conditions["capture on: routing+attention(1 layer)+residual"] = on(
        ["routing", "residual"], [cfg.num_hidden_layers - 1]
    )
    for run in conditions.values():  # warm-up
        run()
    rates: dict[str, list[float]] = {name: [] for name in conditions}
    for _ in range(args.rounds):
        for name, run in conditions.items():
            rates[name].append(run())
    result = {
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "context": args.context,
        "decode_tokens": args.tokens,
        "rounds": args.rounds,
        "median_tok_s": {name: statistics.median(r) for name, r in rates.items()},
        "min_max_tok_s": {name: [min(r), max(r)] for name, r in rates.items()},
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.system()} {os.cpu_count()} cores"
        + (f", {torch.cuda.get_device_name()}" if cuda else ""),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    base = result["median_tok_s"]["off, never captured (A)"]
    print(f"{args.preset} {args.device} {args.dtype}, context {args.context}, {result['machine']}")
    for name, rate in result["median_tok_s"].items():
        lo, hi = result["min_max_tok_s"][name]
        print(f"  {name:52s} {rate:9.1f} tok/s  ({rate / base:5.3f}x; range {lo:.1f}-{hi:.1f})")


if __name__ == "__main__":
    main()
