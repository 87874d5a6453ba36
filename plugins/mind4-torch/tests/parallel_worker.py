"""Run by ``test_parallel.py`` under torchrun: every rank loads the test checkpoints
through the ``torch-tp`` backend and saves what :func:`outputs` computes to
``<out>/<case>-rank<r>.npz``; the test compares that with one process.

    python -m torch.distributed.run --standalone --nproc-per-node 2 parallel_worker.py OUT CASE=CKPT ...

A case name ``NAME@DTYPE`` loads in that dtype; ``NAME+packed`` keeps MXFP4
experts packed (``MIND4_TORCH_EXPERTS=mxfp4``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from mind4_core.config import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


def outputs(model) -> dict[str, np.ndarray]:
    """Logits without a cache, prefill + decode and prefix reuse with one, greedy and
    batched generation, and an unseeded sampled generation."""
    V = model.model_config.vocab_size
    tokens = np.random.default_rng(1).integers(0, V, size=(2, 12))  # (B, T)
    out = {"logits": model.logits(tokens)}  # (2, 12, V)

    session = model.session(32)
    session.append(tokens[0, :9].tolist())
    steps = [session.prefill()]  # (V,) after 9 tokens
    for t in tokens[1, :6]:  # 6 decode steps through the KV cache
        steps.append(session.decode(int(t)))
    session.reset(tokens[0, :5].tolist() + tokens[1, :3].tolist())  # reuses 5 cached tokens
    steps.append(session.prefill())
    out["decode"] = np.stack(steps)  # (8, V)

    out["greedy"] = np.array(model.generate(tokens[0, :5].tolist(), GREEDY, stop_tokens=()))
    prompts = [tokens[0, :3].tolist(), tokens[1, :7].tolist(), tokens[0, 4:9].tolist()]
    batch = model.generate_batch(
        prompts, SamplingParams(temperature=0.0, max_new_tokens=6), stop_tokens=()
    )
    out["batch"] = np.array(batch)  # (3, 6): rows decode at their own offsets
    unseeded = SamplingParams(temperature=1.0, max_new_tokens=10, seed=None)
    out["sampled"] = np.array(model.generate(tokens[1, :4].tolist(), unseeded, stop_tokens=()))
    return out


def load_case(case: str, checkpoint: str, backend: str):
    from mind4_core.engine import load

    dtype = case.partition("@")[2] or "float32"
    previous = os.environ.get("MIND4_TORCH_EXPERTS")
    os.environ["MIND4_TORCH_EXPERTS"] = "mxfp4" if "+packed" in case else "auto"
    try:
        return load(checkpoint, backend=backend, device="cpu", dtype=dtype)
    finally:
        if previous is None:
            del os.environ["MIND4_TORCH_EXPERTS"]
        else:
            os.environ["MIND4_TORCH_EXPERTS"] = previous


def main(argv: list[str]) -> None:
    import torch
    from mind4_torch.parallel_plugin import ensure_registered

    torch.set_num_threads(1)
    ensure_registered()
    out = Path(argv[0])
    rank = int(os.environ["RANK"])
    for spec in argv[1:]:
        case, _, checkpoint = spec.partition("=")
        model = load_case(case, checkpoint, "torch-tp")
        assert type(model.runtime).__name__ == "TensorParallelRuntime", type(model.runtime)
        np.savez(out / f"{case}-rank{rank}.npz", **outputs(model))


if __name__ == "__main__":
    main(sys.argv[1:])
