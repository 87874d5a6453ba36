"""Where batch-1 decode time goes in the torch backend, per operation.

    flock /tmp/mind4-bench.lock python bench/torch_decode_profile.py --preset small --threads 2

Builds a random checkpoint of the preset, loads it as ``mind4 run`` does, fills the
KV cache with ``--prompt`` tokens, then:

- times ``--tokens`` greedy decode steps (best window of 16 and mean, tok/s);
- runs the same steps under ``torch.profiler`` and prints, per operator, the calls
  per token and the self CPU time per token, biggest first (``--rows``);
- prints the streaming bandwidth of the matrix-vector products alone (the weights
  one token reads, timed as the decode path multiplies them) next to the total.

Prints a JSON summary last (``--json`` prints only that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "plugins" / "mind4-torch"):  # run from a source checkout
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mind4_core.checkpoint import CanonicalLoader  # noqa: E402
from mind4_core.config import Config, RuntimeConfig  # noqa: E402
from mind4_core.presets import init_checkpoint  # noqa: E402


def decode(rt, cache, token: int, offset: int, n: int) -> list[float]:
    """Greedy-decode ``n`` tokens from ``offset``; seconds per step."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        logits = rt.forward(np.array([[token]]), cache, offset + i)
        token = int(logits.argmax(-1)[0])
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=200, help="tokens in the cache first")
    parser.add_argument("--tokens", type=int, default=128, help="decode steps timed")
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiler pass")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    say = (lambda *a: None) if args.json else print

    from mind4_torch.runtime import factory

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = init_checkpoint(args.preset, Path(tmp) / "model", seed=0)
        t0 = time.perf_counter()
        rt = factory(
            checkpoint=CanonicalLoader().open(ckpt),
            config=Config(runtime=RuntimeConfig(device="cpu", dtype=args.dtype)),
            components={},
        )
        load_s = time.perf_counter() - t0
    cfg = rt.model_config
    rng = np.random.default_rng(0)
    max_tokens = args.prompt + 2 * args.tokens + 40
    cache = rt.new_cache(1, max_tokens)
    logits = rt.forward(rng.integers(0, cfg.vocab_size, (1, args.prompt)), cache, 0)
    token = int(logits.argmax(-1)[0])
    decode(rt, cache, token, args.prompt, 16)  # warm-up

    times = decode(rt, cache, token, args.prompt + 16, args.tokens)
    windows = [sum(times[i : i + 16]) / 16 for i in range(0, len(times) - 15, 16)]
    summary = {
        "preset": args.preset,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "position": args.prompt,
        "decode_tok_s": round(len(times) / sum(times), 1),
        "decode_tok_s_best_window": round(1 / min(windows), 1),
        "ms_per_token_best_window": round(1e3 * min(windows), 3),
    }

    if not args.no_profile:
        from torch.profiler import ProfilerActivity, profile

        n = 32
        offset = args.prompt + 16 + args.tokens
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            decode(rt, cache, token, offset, n)
        rows = defaultdict(lambda: [0, 0.0])
        for event in prof.key_averages():
            rows[event.key][0] += event.count
            rows[event.key][1] += event.self_cpu_time_total  # microseconds
        total = sum(us for _, us in rows.values())
        calls = sum(c for c, _ in rows.values())
        say(f"\nper token (profiled, {n} tokens): {calls / n:.0f} operator calls, ")
        say(f"{total / n / 1e3:.2f} ms self CPU time (the profiler adds its own cost)\n")
        say(f"{'operator':38s} {'calls':>7s} {'us/tok':>9s} {'share':>6s}")
        ordered = sorted(rows.items(), key=lambda kv: -kv[1][1])
        for key, (count, us) in ordered[: args.rows]:
            say(f"{key[:38]:38s} {count / n:7.1f} {us / n:9.1f} {100 * us / total:5.1f}%")
        summary["profiled_ops_per_token"] = round(calls / n)
        summary["top_ops_us_per_token"] = {
            key: round(us / n, 1) for key, (_, us) in ordered[: min(args.rows, 8)]
        }
    summary["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary, indent=None if args.json else 2))
    return summary


if __name__ == "__main__":
    main()
