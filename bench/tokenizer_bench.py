"""Tokenizer benchmarks: encoding throughput and BPE training time.

    python bench/tokenizer_bench.py                          # ours only
    python bench/tokenizer_bench.py --hf-python /tmp/hf/bin/python   # + Hugging Face

Hugging Face ``tokenizers`` is not a dependency of Mind 4: make a throwaway
environment for it (``python -m venv /tmp/hf && /tmp/hf/bin/pip install
tokenizers``) and pass its interpreter with ``--hf-python``.

What is measured (all on the same ~10 MB text: the default corpus, i.e. pydoc
topics + stdlib docstrings, topped up with standard-library source code):

1. **Encoding throughput** in MB/s (best of ``--repeat``, by CPU time and by wall
   time), encoding the text as
   ~4 KB documents one call each (per-call overhead counts), for
   - ``mind4-8k`` through :class:`mind4_tokenizer.Tokenizer` (what Mind 4 uses),
   - the same encoding through the raw ``tiktoken.Encoding`` (wrapper overhead),
   - a **cl100k-class** encoding: cl100k_base itself cannot be downloaded here,
     so it is an encoding with cl100k's split pattern and a ~100k vocabulary,
     trained by Mind 4's trainer on the standard library's source code (it
     overlaps the benchmark text, which flatters its hit rate a little).
2. **Training time** for an 8192-token vocabulary on that text: Mind 4's
   trainer (pure Python, one core) vs Hugging Face ``tokenizers`` (Rust) with the
   same split pattern, byte-level alphabet, special tokens, ``min_frequency=2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_package() -> None:
    """Make ``mind4_tokenizer`` importable from a source checkout."""
    try:
        import mind4_tokenizer  # noqa: F401
    except ImportError:
        import importlib.util

        sys.path.insert(0, str(ROOT))
        spec = importlib.util.spec_from_file_location(
            "mind4_tokenizer",
            ROOT / "tokenizer" / "__init__.py",
            submodule_search_locations=[str(ROOT / "tokenizer")],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["mind4_tokenizer"] = module
        spec.loader.exec_module(module)


def bench_text(n_bytes: int) -> str:
    from mind4_tokenizer.corpus import default_corpus_text, stdlib_source_text

    docs = default_corpus_text()
    rest = max(0, n_bytes - len(docs.encode()))
    text = docs + stdlib_source_text(rest)
    return text.encode()[:n_bytes].decode("utf-8", errors="ignore")


def documents(text: str, size: int = 4096) -> list[str]:
    """Cut at line ends into ~``size``-character documents."""
    out, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def encode_throughput(encoders: dict, docs: list[str], n_bytes: int, repeat: int) -> dict:
    """Best-of-``repeat`` throughput of each encoder, the encoders interleaved in every
    round so that all see the same machine load. CPU time is the figure to trust on a
    shared machine (encoding is single-threaded); wall time is reported beside it."""
    rows = {}
    for name, encode in encoders.items():
        n_tokens = sum(len(encode(d)) for d in docs)  # also warms up
        rows[name] = {"tokens": n_tokens, "bytes_per_token": n_bytes / n_tokens}
        rows[name]["wall"], rows[name]["cpu"] = float("inf"), float("inf")
    for _ in range(repeat):
        for name, encode in encoders.items():
            wall, cpu = timed(lambda encode=encode: [encode(d) for d in docs])
            rows[name]["wall"] = min(rows[name]["wall"], wall)
            rows[name]["cpu"] = min(rows[name]["cpu"], cpu)
    for row in rows.values():
        row["MB_per_s_cpu"] = n_bytes / row.pop("cpu") / 1e6
        row["MB_per_s_wall"] = n_bytes / row.pop("wall") / 1e6
    return rows


def cl100k_class(cache: Path, vocab_size: int):
    """Train (once, cached in ``cache``) the cl100k-class stand-in."""
    from mind4_tokenizer import get_encoding
    from mind4_tokenizer.corpus import stdlib_source_text
    from mind4_tokenizer.encoding import CL100K_PAT_STR, save_encoding
    from mind4_tokenizer.trainer import train_bpe

    out = cache / f"cl100k-class-{vocab_size}"
    if not (out / "encoding.json").is_file():
        print(f"training the cl100k-class stand-in ({vocab_size} tokens), once ...", flush=True)
        result = train_bpe(
            [stdlib_source_text()], vocab_size, pat_str=CL100K_PAT_STR, min_frequency=1
        )
        save_encoding(
            out,
            name=f"cl100k-class-{result.n_vocab}",
            ranks=result.ranks,
            pat_str=CL100K_PAT_STR,
            special_tokens=result.special_tokens,
            training={"corpus": "stdlib source", "seconds": result.seconds},
        )
    return get_encoding(out)


HF_SCRIPT = r"""
import json, sys, time
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
path, vocab_size, pattern, specials = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
])
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t, c = time.perf_counter(), time.process_time()
tok.train([path], trainer)
import tokenizers
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
                  "vocab": tok.get_vocab_size(), "version": tokenizers.__version__}))
"""


def train_hf(python: str, text_path: Path, vocab_size: int, threads: int | None) -> dict:
    from mind4_tokenizer.encoding import O200K_PAT_STR
    from mind4_tokenizer.specials import HARMONY_SPECIALS

    env = dict(os.environ)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    args = [str(text_path), str(vocab_size), O200K_PAT_STR, json.dumps(list(HARMONY_SPECIALS))]
    out = subprocess.run(
        [python, "-c", HF_SCRIPT, *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=10.0, help="benchmark text size (MB)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--big-vocab", type=int, default=100256, help="cl100k-class size")
    parser.add_argument("--hf-python", help="interpreter with `tokenizers` installed")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mind4-bench")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    _import_package()
    import tiktoken
    from mind4_tokenizer import get_encoding
    from mind4_tokenizer.trainer import train_bpe

    text = bench_text(int(args.mb * 1e6))
    n_bytes = len(text.encode())
    docs = documents(text)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}, "
        f"tiktoken {tiktoken.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "load_average_at_start": os.getloadavg()[0],
        "text_bytes": n_bytes,
        "documents": len(docs),
    }

    # 1. encoding throughput ------------------------------------------------------------
    mind4 = get_encoding("mind4-8k")
    big = cl100k_class(args.cache, args.big_vocab)
    ours, raw, cl = (
        "mind4-8k (Tokenizer.encode)",
        "mind4-8k (raw tiktoken)",
        f"{big.name} (raw tiktoken)",
    )
    rows = results["encode"] = encode_throughput(
        {
            ours: mind4.encode,
            raw: mind4.tiktoken_encoding.encode_ordinary,
            cl: big.tiktoken_encoding.encode_ordinary,
        },
        docs,
        n_bytes,
        args.repeat,
    )
    results["cl100k_class_over_mind4_8k"] = rows[cl]["MB_per_s_cpu"] / rows[ours]["MB_per_s_cpu"]
    results["raw_tiktoken_over_tokenizer"] = rows[raw]["MB_per_s_cpu"] / rows[ours]["MB_per_s_cpu"]

    # 2. training time --------------------------------------------------------------------
    if not args.skip_train:
        t, c = time.perf_counter(), time.process_time()
        result = train_bpe([text], args.vocab_size)
        results["train_mind4"] = {
            "seconds": time.perf_counter() - t,
            "cpu_seconds": time.process_time() - c,
            "vocab": result.n_vocab,
            "distinct_pretokens": result.n_pretokens,
        }
        if args.hf_python:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bench.txt"
                path.write_text(text, encoding="utf-8")
                results["train_hf_all_threads"] = train_hf(
                    args.hf_python, path, args.vocab_size, None
                )
                results["train_hf_1_thread"] = train_hf(args.hf_python, path, args.vocab_size, 1)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{results['machine']}; {results['date']}; load avg {results['load_average_at_start']:.2f}"
    )
    print(f"text: {n_bytes / 1e6:.1f} MB in {len(docs)} documents")
    for name, row in rows.items():
        print(
            f"  encode {name:36s} {row['MB_per_s_cpu']:7.2f} MB/s (CPU time), "
            f"{row['MB_per_s_wall']:7.2f} MB/s (wall)  {row['bytes_per_token']:.2f} bytes/token"
        )
    print(
        f"  cl100k-class / mind4-8k throughput: {results['cl100k_class_over_mind4_8k']:.2f}x; "
        f"raw tiktoken / Tokenizer: {results['raw_tiktoken_over_tokenizer']:.3f}x"
    )
    for key in ("train_mind4", "train_hf_all_threads", "train_hf_1_thread"):
        if key in results:
            print(f"  {key:22s} {json.dumps(results[key])}")


if __name__ == "__main__":
    main()
