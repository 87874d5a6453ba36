"""Throughput of the question evals on the in-process engine, by batch size.

    python -m mind4_evals.bench --backend torch --questions 500 --batch-sizes 1,8,32

Runs ``abcd`` + ``aime`` (+ ``gpqa``) on the first ``--questions`` synthetic
questions (split evenly) with greedy decoding and prints wall time, questions
per second and generated tokens per second for each batch size, plus whether
every batch size gave the same answers (it must: greedy batching is exact).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from .samplers import EngineSampler
from .suite import make_eval


def _suite(questions: int, seed: int):
    shares = {"abcd": 2, "gpqa": 1, "aime": 2}  # 200/100/200 of the shipped 500
    total = sum(shares.values())
    return [
        make_eval(name, limit=max(1, questions * share // total), seed=seed)
        for name, share in shares.items()
    ]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--checkpoint", default=None, help="default: the embedded model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    sampler = EngineSampler.load(
        args.checkpoint,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_tokens,
    )
    rows, answers = [], {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        sampler.batch_size = bs
        evals = _suite(args.questions, args.seed)
        for ev in evals:
            ev.prepare(sampler)
        t0 = time.perf_counter()
        results = [ev.run(sampler) for ev in evals]
        wall = time.perf_counter() - t0
        n = sum(r.n for r in results)
        tokens = sum(e.completion_tokens for r in results for e in r.examples)
        answers[bs] = [e.response for r in results for e in r.examples]
        rows.append(
            {
                "batch_size": bs,
                "questions": n,
                "seconds": round(wall, 2),
                "questions_per_s": round(n / wall, 2),
                "tokens_per_s": round(tokens / wall, 1),
                "scores": {r.eval: r.score for r in results},
            }
        )
        if not args.json:
            print(
                f"batch {bs:>3}: {n} questions in {wall:7.1f} s  "
                f"{n / wall:7.2f} q/s  {tokens / wall:8.1f} tok/s  "
                + "  ".join(f"{r.eval}={r.score:.3f}" for r in results),
                flush=True,
            )
    first = next(iter(answers.values()))
    report = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "sampler": sampler.describe(),
        "rows": rows,
        "same_answers_for_every_batch_size": all(a == first for a in answers.values()),
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("same answers for every batch size:", report["same_answers_for_every_batch_size"])
    return report


if __name__ == "__main__":  # pragma: no cover
    main()
