"""DDP under torchrun: 2 CPU processes (gloo) train exactly like one process with the
same global batch (there: 2 micro-batches accumulated; here: one per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed
import yaml
from test_train_loop import corpus_text, tiny, trainer

from mind4_core.checkpoint import open_checkpoint

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PLUGIN_ROOT.parents[1]

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_two_gloo_processes_match_one_process(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    common = {"max_steps": 4, "batch_size": 2}
    single = tiny(tmp_path, corpus, out="single", training={**common, "grad_accumulation": 2})
    ddp = tiny(tmp_path, corpus, out="ddp", training={**common, "grad_accumulation": 1})
    ddp["data"]["cache_dir"] = str(tmp_path / "cache")
    single["data"]["cache_dir"] = str(tmp_path / "cache")
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(ddp), encoding="utf-8")

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PLUGIN_ROOT), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    )
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "mind4_torch.train",
        str(config),
        "--no-progress",
    ]
    proc = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 x cpu" in proc.stdout

    one = trainer(single).run()
    two = losses(tmp_path / "ddp")
    assert len(two) == 4
    np.testing.assert_allclose(two, one.train_losses, rtol=1e-6, atol=0)

    a, b = (
        open_checkpoint(tmp_path / "single" / "checkpoint"),
        open_checkpoint(tmp_path / "ddp" / "checkpoint"),
    )
    try:
        for name in a.names():
            np.testing.assert_allclose(b.float32(name), a.float32(name), rtol=1e-5, atol=1e-7)
    finally:
        a.close()
        b.close()
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "train_state" / "state.json").read_text())
    assert state["fingerprint"]["world_size"] == 2
