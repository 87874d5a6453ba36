"""Prefill and decode speed of the torch backend, printed as JSON.

    python plugins/mind4-torch/bench_decode.py --preset small --dtype float32 --threads 2

Builds a random checkpoint of the preset (or uses ``--checkpoint DIR``), loads it
through the backend factory exactly as ``mind4 run`` does, then measures:

- prefill: tokens/s of one forward pass over ``--prompt`` tokens;
- decode: tokens/s of greedy decoding ``--decode`` tokens after the prompt, batch 1;
- per position: ms per decoded token right after positions 200 and 2000 (``--positions``),
  mean and best window of 16 tokens (the machine may be shared),
  which shows that decode cost grows linearly with context, not quadratically;
- batch decode: tokens/s with ``--batch`` rows at different offsets;
- on CPU, the streaming bandwidth the decode path's matrix-vector products reach right
  now (and plain one-thread ``x @ W``), and the decode speed it bounds (weight bytes per
  token / bandwidth): batch-1 decode is memory-bound;
- peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parents[1]):  # run from a source checkout without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mind4_core.config import Config, RuntimeConfig  # noqa: E402
from mind4_core.presets import init_checkpoint  # noqa: E402


def open_checkpoint(path: Path):
    from mind4_core.checkpoint import CanonicalLoader

    return CanonicalLoader().open(path)


def load(args, checkpoint_dir: Path):
    from mind4_torch.runtime import factory

    config = Config(runtime=RuntimeConfig(device=args.device, dtype=args.dtype))
    return factory(checkpoint=open_checkpoint(checkpoint_dir), config=config, components={})


def greedy(
    runtime, cache, first_logits, offset: int, n: int, window: int = 16
) -> tuple[float, float]:
    """Decode ``n`` tokens greedily from ``offset``.

    Returns (mean seconds per token, best mean over windows of ``window`` tokens): on a
    shared machine the best window is the figure least disturbed by other processes."""
    token = int(first_logits.argmax(-1)[0])
    times = []
    for i in range(n):
        start = time.perf_counter()
        logits = runtime.forward(np.array([[token]]), cache, offset + i)
        token = int(logits.argmax(-1)[0])
        times.append(time.perf_counter() - start)
    windows = [
        sum(times[i : i + window]) / window for i in range(0, max(1, n - window + 1), window)
    ]
    return sum(times) / n, min(windows)


def weight_bytes_per_token(cfg, itemsize: int) -> int:
    """Bytes of weights one decoded token reads: attention, router and k experts per
    layer, the unembedding (plus one embedding row)."""
    H, D, E, k = cfg.hidden_size, cfg.head_dim, cfg.num_experts, cfg.experts_per_token
    inter = cfg.intermediate_size
    attn = cfg.qkv_dim * (H + 1) + H * (cfg.num_attention_heads * D + 1)
    experts = k * (2 * inter * (H + 1) + H * (inter + 1)) + E * (H + 1)
    return itemsize * (cfg.num_hidden_layers * (attn + experts) + cfg.vocab_size * H + H)


def streaming_bandwidth(device: str, dtype: torch.dtype, total_mib: int = 192) -> dict:
    """GB/s of one-token matrix-vector products over ``total_mib`` of distinct weights
    (more than the CPU caches): the memory bandwidth decode can use on this machine now.

    ``decode_path``: the product the decode fast path runs (:class:`mind4_torch.decode.
    MatVec`: input-major weights in a huge-page arena, split over two threads where that
    pays); ``one_thread``: plain ``x @ W``, which PyTorch's BLAS runs on one thread."""
    from mind4_torch.decode import MatVec
    from mind4_torch.runtime import WeightArena

    n, shape = total_mib // 2, (1024, 512)  # (out, in) float32: 2 MiB each
    arena = WeightArena(WeightArena.size_of([(shape, dtype)] * n)) if device == "cpu" else None
    weights = []
    for _ in range(n):
        w = arena.take(shape, dtype, input_major=True) if arena else torch.empty(shape).t()
        weights.append(w.copy_(torch.randn(shape)).to(device))
    x = torch.randn(1, shape[1], dtype=dtype, device=device)
    products = [MatVec(w, None) for w in weights]

    def rate(step) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for w, product in zip(weights, products, strict=True):
                step(w, product)
            if device != "cpu":
                torch.accelerator.synchronize()
            best = min(best, time.perf_counter() - start)
        return n * w.numel() * w.element_size() / best / 1e9

    with torch.inference_mode():
        return {
            "decode_path": rate(lambda w, product: product(x)),
            "one_thread": rate(lambda w, product: x @ w.t()),
        }


def compare_transformers(rt, prompt: np.ndarray, n: int, rounds: int = 3) -> dict:
    """Greedy-decode ``n`` tokens after ``prompt`` with both, ``rounds`` times in alternation
    (a shared machine drifts): best tokens/s of each (prefill included in both) and how many
    greedy tokens agree."""
    from mind4_torch.hf import to_transformers

    model = to_transformers(rt.model)
    ids = torch.from_numpy(prompt)

    def theirs() -> tuple[float, list[int]]:
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            return time.perf_counter() - start, out[0, prompt.shape[1] :].tolist()

    def ours() -> tuple[float, list[int]]:
        cache = rt.new_cache(1, prompt.shape[1] + n + 1)
        start = time.perf_counter()
        logits = rt.forward(prompt, cache, 0)
        tokens = []
        for i in range(n):
            tokens.append(int(logits.argmax(-1)[0]))
            if i + 1 < n:
                logits = rt.forward(np.array([[tokens[-1]]]), cache, prompt.shape[1] + i)
        return time.perf_counter() - start, tokens

    with torch.inference_mode():  # warm-up
        model.generate(ids[:, :8], max_new_tokens=4, min_new_tokens=4, do_sample=False)
    hf_times, our_times = [], []
    for _ in range(rounds):
        seconds, hf_tokens = theirs()
        hf_times.append(seconds)
        seconds, our_tokens = ours()
        our_times.append(seconds)
    same = next(
        (i for i, (a, b) in enumerate(zip(our_tokens, hf_tokens, strict=True)) if a != b), n
    )
    return {
        "transformers": __import__("transformers").__version__,
        "transformers_tok_s": round(n / min(hf_times), 1),
        "mind4_torch_tok_s": round(n / min(our_times), 1),
        "speedup": round(min(hf_times) / min(our_times), 2),
        "rounds": rounds,
        "greedy_tokens_identical": same,
        "of": n,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument(
        "--checkpoint", type=Path, help="use this checkpoint instead of a random preset"
    )
    parser.add_argument("--experts", default="bf16", choices=["bf16", "float32", "mxfp4"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (prefill)")
    parser.add_argument("--decode", type=int, default=256, help="tokens decoded after the prompt")
    parser.add_argument("--positions", default="200,2000", help="positions for per-token cost")
    parser.add_argument(
        "--per-position", type=int, default=64, help="tokens decoded at each position"
    )
    parser.add_argument(
        "--batch", type=int, default=4, help="rows for the batched decode figure (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--transformers",
        action="store_true",
        help="also greedy-decode with transformers' GptOss holding the same weights (same prompt, "
        "prefill included in both timings) and compare speed and tokens",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or init_checkpoint(
            args.preset, Path(tmp) / "model", seed=args.seed, experts=args.experts
        )
        t0 = time.perf_counter()
        rt = load(args, Path(ckpt))
        load_s = time.perf_counter() - t0
    cfg = rt.model_config
    rng = np.random.default_rng(args.seed)
    positions = [int(p) for p in args.positions.split(",") if p]
    max_tokens = max(
        [args.prompt + args.decode + 1] + [p + args.per_position + 1 for p in positions]
    )

    # warm-up (first calls allocate and pick kernels)
    cache = rt.new_cache(1, max_tokens)
    logits = rt.forward(rng.integers(0, cfg.vocab_size, (1, 16)), cache, 0)
    greedy(rt, cache, logits, 16, 8, window=8)

    prompt = rng.integers(0, cfg.vocab_size, (1, args.prompt))
    cache = rt.new_cache(1, max_tokens)
    t0 = time.perf_counter()
    logits = rt.forward(prompt, cache, 0)
    prefill_s = time.perf_counter() - t0
    decode_mean, decode_best = greedy(rt, cache, logits, args.prompt, args.decode)

    per_position = {}
    for pos in positions:
        cache = rt.new_cache(1, max_tokens)
        logits = rt.forward(rng.integers(0, cfg.vocab_size, (1, pos)), cache, 0)  # fill to `pos`
        mean, best = greedy(rt, cache, logits, pos, args.per_position)
        per_position[str(pos)] = {"mean": round(1e3 * mean, 3), "best_window": round(1e3 * best, 3)}

    batch = {}
    if args.batch > 1:
        B = args.batch
        lengths = [args.prompt - 7 * b for b in range(B)]  # rows of different lengths
        cache = rt.new_cache(B, max_tokens)
        for b, n in enumerate(lengths):  # prefill each row on its own
            row_cache = rt.new_cache(1, max_tokens)
            rt.forward(rng.integers(0, cfg.vocab_size, (1, n)), row_cache, 0)
            cache.k[:, b], cache.v[:, b] = row_cache.k[:, 0], row_cache.v[:, 0]
        offsets = np.array(lengths)
        tokens = rng.integers(0, cfg.vocab_size, (B, 1))
        steps = 64
        t0 = time.perf_counter()
        for i in range(steps):
            logits = rt.forward(tokens, cache, offsets + i)
            tokens = rt.to_numpy(logits.argmax(-1, keepdim=True))
        batch = {"rows": B, "tok_s": round(B * steps / (time.perf_counter() - t0), 1)}

    bandwidth = (
        streaming_bandwidth(rt.device, rt.model.unembedding.weight.dtype)
        if rt.device == "cpu"
        else None
    )
    per_token = weight_bytes_per_token(cfg, rt.model.unembedding.weight.element_size())
    versus = compare_transformers(rt, prompt, args.decode) if args.transformers else None

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024
    )
    report = {
        "backend": "torch",
        "preset": None if args.checkpoint else args.preset,
        "checkpoint": str(args.checkpoint)
        if args.checkpoint
        else f"random {args.preset}, experts {args.experts}",
        "device": rt.device,
        "dtype": rt.dtype,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "prefill_tokens": args.prompt,
        "prefill_tok_s": round(args.prompt / prefill_s, 1),
        "decode_tokens": args.decode,
        "decode_tok_s": round(1 / decode_mean, 1),
        "decode_tok_s_best_window": round(1 / decode_best, 1),
        "decode_ms_per_token_at": per_position,
        "batch_decode": batch,
        "versus_transformers": versus,
        "weight_mib_per_token": round(per_token / 2**20, 1),
        "memory_bandwidth_gb_s": None
        if bandwidth is None
        else {k: round(v, 1) for k, v in bandwidth.items()},
        "decode_bound_tok_s": None
        if bandwidth is None
        else round(bandwidth["decode_path"] * 1e9 / per_token, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
