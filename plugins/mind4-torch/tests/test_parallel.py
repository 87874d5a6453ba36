"""Tensor-parallel inference (mind4_torch.parallel) equals one process.

- threads: N ranks of one process exchange partial sums through a stand-in for
  torch.distributed (fast; N = 4 with an uneven MXFP4 split and a padded vocabulary);
- torchrun + gloo, 2 processes: the ``torch-tp`` backend through the engine (logits,
  KV-cache decode, prefix reuse, greedy and batched generation, unseeded sampling
  kept in lock-step), and ``mind4 run`` printing once;
- clear errors for models that cannot be split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed
from mind4_torch import parallel
from mind4_torch.parallel import (
    ShardedCheckpoint,
    TensorParallelRuntime,
    load_sharded_transformer,
    plan_shards,
    split_units,
)
from mind4_torch.runtime import TorchRuntime, load_transformer

from mind4_core.checkpoint import open_checkpoint
from mind4_core.config import ModelConfig
from mind4_core.errors import ConfigError
from mind4_core.presets import init_checkpoint

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PLUGIN_ROOT.parents[1]
TESTS = Path(__file__).resolve().parent

gloo = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)


def config(**fields) -> ModelConfig:
    base = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=8,
        intermediate_size=96,
        vocab_size=1001,  # odd: the vocabulary-parallel unembedding pads its last shard
        num_experts=4,
        experts_per_token=2,
        initial_context_length=128,
        max_context_length=128,
        sliding_window=4,  # even layers see 4 keys: the tests' sequences cross the window
    )
    return ModelConfig(**{**base, **fields})


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp")
    return {
        # I = 99: dense experts split 50 / 49 units over 2 ranks (25/25/25/24 over 4)
        "dense": init_checkpoint(
            config(intermediate_size=99), root / "dense", seed=3, experts="float32", dtype="float32"
        ),
        # I = 160 = 5 MXFP4 blocks: 2/1/1/1 blocks over 4 ranks, 3/2 over 2
        "mxfp4": init_checkpoint(
            config(intermediate_size=160), root / "mxfp4", seed=4, experts="mxfp4", dtype="bfloat16"
        ),
    }


# ----------------------------------------------------------------------------- the plan


@pytest.mark.parametrize(
    ("units", "world", "granule"), [(99, 2, 1), (160, 4, 32), (2880, 8, 32), (64, 4, 1), (7, 7, 1)]
)
def test_split_units_covers_contiguously_in_granules(units, world, granule):
    bounds = split_units(units, world, granule)
    assert bounds[0][0] == 0 and bounds[-1][1] == units
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert all(s > 0 and s % granule == 0 for s in sizes)
    assert max(sizes) - min(sizes) <= granule


def test_gpt_oss_120b_on_8_ranks_cuts_mxfp4_blocks():
    from mind4_core.presets import PRESETS

    cfg = PRESETS["gpt-oss-120b"]
    plans = [plan_shards(cfg, 8, r, mxfp4_mlp2=True) for r in range(8)]
    assert [p.local_config.num_attention_heads for p in plans] == [8] * 8
    assert [p.local_config.num_key_value_heads for p in plans] == [1] * 8
    assert [p.local_config.intermediate_size for p in plans] == [384, 384] + [352] * 6
    assert plans[-1].vocab == (7 * 25136, 201088) and plans[0].vocab_rows == 25136


def test_heads_not_divisible_are_refused():
    with pytest.raises(ConfigError, match=r"4 key/value heads.*not divisible by 3.*1, 2, 4"):
        plan_shards(config(), 3, 0)


def test_too_few_expert_units_are_refused():
    with pytest.raises(ConfigError, match=r"intermediate_size=64 has only 2 32-column MXFP4"):
        plan_shards(config(intermediate_size=64), 4, 0, mxfp4_mlp2=True)
    with pytest.raises(ConfigError, match="rank 2 is outside"):
        plan_shards(config(), 2, 2)


def test_factory_refuses_before_joining_a_group(checkpoints, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    ckpt = open_checkpoint(checkpoints["dense"])
    try:
        with pytest.raises(ConfigError, match="not divisible by 3"):
            parallel.factory(checkpoint=ckpt, config=None, components={})
        assert not torch.distributed.is_initialized()
    finally:
        ckpt.close()


def test_one_process_is_the_torch_backend(checkpoints, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ckpt = open_checkpoint(checkpoints["dense"])
    try:
        runtime = parallel.factory(checkpoint=ckpt, config=None, components={})
        assert type(runtime) is TorchRuntime
    finally:
        ckpt.close()


def test_device_rules():
    assert parallel.resolve_tp_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda \\(NCCL\\) or cpu"):
        parallel.resolve_tp_device("mps", 0)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("kind", ["dense", "mxfp4"])
def test_slices_reassemble_the_checkpoint(checkpoints, kind, world):
    ckpt = open_checkpoint(checkpoints[kind])
    try:
        cfg, D = ckpt.config, ckpt.config.head_dim
        views = [
            ShardedCheckpoint(ckpt, plan_shards(cfg, world, r, mxfp4_mlp2=kind == "mxfp4"))
            for r in range(world)
        ]
        q = cfg.num_attention_heads * D
        kv = cfg.num_key_value_heads * D
        qkv = [v.tensor("block.1.attn.qkv.weight") for v in views]
        local_q, local_kv = q // world, kv // world
        full = np.concatenate(
            [
                np.concatenate([s[:local_q] for s in qkv]),
                np.concatenate([s[local_q : local_q + local_kv] for s in qkv]),
                np.concatenate([s[local_q + local_kv :] for s in qkv]),
            ]
        )
        np.testing.assert_array_equal(full, ckpt.tensor("block.1.attn.qkv.weight"))
        for name in ("block.0.attn.out.bias", "block.0.mlp.mlp2_bias"):  # summed: added once
            total = sum(v.float32(name) for v in views)
            np.testing.assert_array_equal(total, ckpt.float32(name))
        units = [v.float32("block.0.mlp.mlp2_weight") for v in views]
        np.testing.assert_array_equal(
            np.concatenate(units, axis=-1), ckpt.float32("block.0.mlp.mlp2_weight")
        )
        rows = [v.float32("block.0.mlp.mlp1_weight") for v in views]
        np.testing.assert_array_equal(
            np.concatenate(rows, axis=1), ckpt.float32("block.0.mlp.mlp1_weight")
        )
        vocab = np.concatenate([v.tensor("unembedding.weight") for v in views])
        assert vocab.shape[0] == -(-cfg.vocab_size // world) * world
        np.testing.assert_array_equal(vocab[: cfg.vocab_size], ckpt.tensor("unembedding.weight"))
        assert not vocab[cfg.vocab_size :].any()
    finally:
        ckpt.close()


# ----------------------------------------------------------------------------- N threads


class ThreadCollectives:
    """torch.distributed's all_reduce / all_gather_single / broadcast for N threads of
    one process (each thread is a rank); sums in rank order, identical on every rank."""

    def __init__(self, world: int):
        self.world = world
        self.barrier = threading.Barrier(world, timeout=120)
        self.slots: list = [None] * world
        self.local = threading.local()

    def _exchange(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.slots[self.local.rank] = x.clone()
        self.barrier.wait()
        parts = list(self.slots)
        self.barrier.wait()
        return parts

    def all_reduce(self, x, group=None):
        parts = self._exchange(x)
        total = parts[0].clone()
        for p in parts[1:]:
            total += p
        x.copy_(total)

    def all_gather_single(self, out, x, group=None):
        out.copy_(torch.cat(self._exchange(x)))

    def broadcast(self, x, src=0, group=None):
        x.copy_(self._exchange(x)[src])


def run_ranks(world: int, monkeypatch, fn) -> list:
    """``fn(rank)`` in ``world`` threads joined by :class:`ThreadCollectives`."""
    comm = ThreadCollectives(world)
    monkeypatch.setattr(parallel, "dist", comm)
    monkeypatch.setattr(parallel, "_gather_single", comm.all_gather_single)
    results, errors = [None] * world, []

    def target(rank):
        comm.local.rank = rank
        try:
            results[rank] = fn(rank)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            comm.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize(
    ("kind", "world", "experts", "dtype"),
    [
        ("dense", 2, "auto", torch.float32),
        ("dense", 4, "auto", torch.float32),
        ("mxfp4", 4, "mxfp4", torch.float32),
        ("mxfp4", 2, "dense", torch.float32),
        ("mxfp4", 2, "mxfp4", torch.bfloat16),
    ],
)
def test_threads_match_one_process(checkpoints, monkeypatch, kind, world, experts, dtype):
    ckpt = open_checkpoint(checkpoints[kind])
    cfg = ckpt.config
    tokens = np.random.default_rng(5).integers(0, cfg.vocab_size, size=(2, 10))  # (B, T)
    cpu = torch.device("cpu")

    def single(dtype):
        return TorchRuntime(
            load_transformer(ckpt, experts=experts, dtype=dtype), device=cpu, dtype=dtype
        )

    def outputs(runtime):
        logits = runtime.to_numpy(runtime.forward(tokens, None, 0, last_only=False))  # (B, T, V)
        cache = runtime.new_cache(2, 16)
        steps = [runtime.forward(tokens[:, :7], cache, 0)]  # prefill (B, V)
        for t in range(7, 10):  # decode, rows at the same offset
            steps.append(runtime.forward(tokens[:, t : t + 1], cache, t))
        steps.append(runtime.forward(tokens[:, :1], cache, [10, 4]))  # rows at their own offsets
        return logits, np.stack([runtime.to_numpy(s) for s in steps])

    def rank_outputs(rank):
        plan = plan_shards(cfg, world, rank, mxfp4_mlp2=kind == "mxfp4")
        model = load_sharded_transformer(ckpt, plan, experts=experts, dtype=dtype)
        runtime = TensorParallelRuntime(model, plan=plan, device=cpu, dtype=dtype)
        assert runtime.new_cache(2, 16).k.shape[3] == cfg.num_key_value_heads // world
        return outputs(runtime)

    try:
        ref_logits, ref_steps = outputs(single(torch.float32))
        if dtype == torch.float32:
            tolerance = [1e-5] * (1 + len(ref_steps))
        else:  # one process in bfloat16 errs by e against float32: N processes within 2e
            one_logits, one_steps = outputs(single(dtype))
            tolerance = [2 * rel(one_logits, ref_logits)]
            tolerance += [2 * rel(a, b) for a, b in zip(one_steps, ref_steps)]
        results = run_ranks(world, monkeypatch, rank_outputs)
    finally:
        ckpt.close()
    for logits, steps in results:
        assert logits.shape == ref_logits.shape
        assert rel(logits, ref_logits) < tolerance[0]
        for step, ref, tol in zip(steps, ref_steps, tolerance[1:]):
            assert rel(step, ref) < tol
    for logits, steps in results[1:]:  # every rank ends with the same numbers
        np.testing.assert_array_equal(logits, results[0][0])
        np.testing.assert_array_equal(steps, results[0][1])


# ----------------------------------------------------------------------------- torchrun + gloo


def torchrun_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PLUGIN_ROOT), str(REPO_ROOT), str(TESTS), env.get("PYTHONPATH", "")]
    )
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    return env


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", *args]
    proc = subprocess.run(
        command, env=torchrun_env(), cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@gloo
def test_two_gloo_processes_match_one_process(checkpoints, tmp_path):
    import parallel_worker

    cases = {"dense": checkpoints["dense"], "mxfp4+packed": checkpoints["mxfp4"]}
    torchrun(
        [str(TESTS / "parallel_worker.py"), str(tmp_path)]
        + [f"{case}={path}" for case, path in cases.items()],
        cwd=tmp_path,
    )
    for case, path in cases.items():
        ref = parallel_worker.outputs(parallel_worker.load_case(case, str(path), "torch"))
        ranks = [dict(np.load(tmp_path / f"{case}-rank{r}.npz")) for r in (0, 1)]
        for out in ranks:
            assert rel(out["logits"], ref["logits"]) < 1e-5, case
            for step, expected in zip(out["decode"], ref["decode"]):
                assert rel(step, expected) < 1e-5, case
            np.testing.assert_array_equal(out["greedy"], ref["greedy"], err_msg=case)
            np.testing.assert_array_equal(out["batch"], ref["batch"], err_msg=case)
        for key in ("logits", "decode", "greedy", "batch", "sampled"):  # ranks in lock-step
            np.testing.assert_array_equal(ranks[1][key], ranks[0][key], err_msg=f"{case} {key}")


@gloo
def test_mind4_run_under_torchrun_prints_once(tmp_path, capsys):
    from mind4_core import cli
    from mind4_core.plugins import get_manager

    ckpt = init_checkpoint("tiny", tmp_path / "tiny", seed=0, experts="bf16", dtype="float32")
    flags = ["-c", str(ckpt), "--device", "cpu", "--dtype", "float32", "-t", "0", "-n", "8"]
    flags += ["--json", "Once upon a time"]
    if "torch-tp" in get_manager().names("backend"):  # registered by the torch plugin
        launch = ["-m", "mind4_core.cli", "run", "--backend", "torch-tp"]
    else:
        launch = ["-m", "mind4_torch.parallel_plugin", "run"]
    proc = torchrun(launch + flags, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 1 printed nothing
    tp = json.loads(lines[0])

    assert cli.main(["run", "--backend", "torch", *flags]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tp["backend"] == "torch-tp" and one["backend"] == "torch"
    assert tp["tokens"] == one["tokens"] and tp["text"] == one["text"]


def test_bench_runs_one_process():
    from mind4_torch.parallel_bench import bench, parse_args

    args = ["--preset", "tiny", "--device", "cpu", "--prompt", "8", "--decode", "2"]
    result = bench(parse_args([*args, "--repeat", "1", "--experts", "mxfp4"]))
    assert result["world_size"] == 1 and result["prompt_tokens"] == 8
    assert result["decode_tok_s"] > 0 and result["prefill_tok_s"] > 0
