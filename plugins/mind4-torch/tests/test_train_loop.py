"""The training loop on a tiny model: learning, logs, checkpoints, resume, Ctrl-C, export."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mind4_torch.train import state as state_mod
from mind4_torch.train.cli import train_command
from mind4_torch.train.config import parse_config
from mind4_torch.train.data import DataError, validation_target_bytes
from mind4_torch.train.loop import Trainer, learning_rate, parameter_groups
from rich.console import Console

from mind4_core.checkpoint import open_checkpoint
from mind4_core.errors import CheckpointError, ConfigError

TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "intermediate_size": 32,
    "num_experts": 4,
    "experts_per_token": 2,
    "initial_context_length": 32,
    "max_context_length": 64,
    "sliding_window": 8,
    "rope_theta": 10000.0,
}


def corpus_text(seed: int = 0, n: int = 400) -> str:
    """Learnable text: a few sentence templates with random fillers."""
    rng = random.Random(seed)
    names = ["list", "dict", "tuple", "set", "string", "module", "class"]
    lines = []
    for _ in range(n):
        a, b = rng.choice(names), rng.choice(names)
        lines.append(f"Return a new {a} built from the {b}. The {a} is empty by default.")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(corpus_text(), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny(tmp_path: Path, corpus: Path, out: str = "run", **sections) -> dict:
    data = {
        "encoding": "mind4-8k",
        "model": dict(TINY_MODEL),
        "data": {"sources": [str(corpus)], "validation_fraction": 0.1},
        "training": {
            "context_length": 16,
            "batch_size": 4,
            "max_steps": 8,
            "device": "cpu",
            "threads": 1,
        },
        "optimizer": {"lr": 1.0e-2, "min_lr": 1.0e-3, "warmup_steps": 2},
        "eval": {"interval": 4, "batch_size": 8, "max_tokens": 200},
        "checkpoint": {
            "out_dir": str(tmp_path / out),
            "interval": 4,
            "export_experts": "float32",
            "export_dtype": "float32",
        },
        "log": {"progress": False},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return data


def trainer(data: dict, **kwargs) -> Trainer:
    console = Console(file=io.StringIO(), width=200)
    return Trainer(parse_config(data, "test"), console=console, **kwargs)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def tensors(path: Path) -> dict[str, np.ndarray]:
    ckpt = open_checkpoint(path)
    try:
        return {name: np.array(ckpt.float32(name)) for name in ckpt.names()}
    finally:
        ckpt.close()


# ----------------------------------------------------------------------------- pieces


def test_learning_rate_warms_up_then_decays_to_min():
    lrs = [learning_rate(s, 1.0, 0.1, 10, 110) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert learning_rate(60, 1.0, 0.1, 10, 110) == pytest.approx(0.55)  # half-way: the mean
    assert learning_rate(110, 1.0, 0.1, 10, 110) == pytest.approx(0.1)
    assert learning_rate(500, 1.0, 0.1, 10, 110) == pytest.approx(0.1)
    assert learning_rate(0, 1.0, 0.1, 0, 10) == pytest.approx(1.0)  # no warm-up


def test_weight_decay_only_on_matrices():
    from mind4_torch.model import Transformer

    from mind4_core.config import ModelConfig

    model = Transformer(ModelConfig(vocab_size=64, **TINY_MODEL))
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {n for n in decay["names"] if n.startswith("block.0")} == {
        "block.0.attn.qkv.weight",
        "block.0.attn.out.weight",
        "block.0.mlp.gate.weight",
        "block.0.mlp.mlp1_weight",
        "block.0.mlp.mlp2_weight",
    }
    assert {"embedding.weight", "unembedding.weight"} <= set(decay["names"])
    for name in no_decay["names"]:
        assert name.endswith(("bias", "scale", "sinks")), name
    assert len(decay["names"]) + len(no_decay["names"]) == len(list(model.parameters()))


# ----------------------------------------------------------------------------- a run


def test_training_learns_and_writes_its_files(tmp_path, corpus):
    data = tiny(tmp_path, corpus, training={"max_steps": 40}, eval={"interval": 20})
    result = trainer(data).run()
    out = tmp_path / "run"
    losses = result.train_losses
    assert len(losses) == 40 and result.step == 40 and not result.interrupted
    assert losses[0] == pytest.approx(math.log(8192), abs=0.3)  # starts near uniform
    assert np.mean(losses[-5:]) < losses[0] - 3.0  # and learns the templates
    assert result.val_loss < losses[0] - 3.0

    rows = read_log(out)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[-1]["val_loss"] == pytest.approx(result.val_loss)
    csv_lines = (out / "log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("kind,step,tokens,lr,loss") and len(csv_lines) == 1 + 42
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "train.yaml").is_file()

    # the checkpoint is a canonical float32 checkpoint with the optimiser state beside it
    state = state_mod.read_state(out / "checkpoint")
    assert state["step"] == 40 and state["tokens"] == 40 * 4 * 16
    assert set(state["adam_steps"].values()) == {40}
    ckpt = open_checkpoint(out / "checkpoint")
    assert ckpt.tokenizer == "mind4-8k" and ckpt.dtype("embedding.weight") == "F32"
    ckpt.close()
    assert not list(out.glob("checkpoint.*"))  # no .tmp or .prev left behind

    # bits per byte = nats / ln 2 / the bytes of the scored validation text
    from mind4_core.engine import load_tokenizer

    tok = load_tokenizer("mind4-8k")
    t = trainer(data)  # only to rebuild the same data split
    t.cfg.out_dir.mkdir(exist_ok=True)
    from mind4_torch.train import data as data_mod

    split = data_mod.prepare(
        tok,
        [str(corpus)],
        [".txt"],
        out / "data",
        context_length=16,
        validation_fraction=0.1,
    )
    scored = validation_target_bytes(split, tok, max_tokens=200)
    n_tokens = min(len(split.validation) - 1, 200)
    nats = result.val_loss * n_tokens
    assert result.val_bpb == pytest.approx(nats / math.log(2) / len(scored), rel=1e-9)


def test_export_loads_in_the_engine_and_matches(tmp_path, corpus):
    from mind4_core.engine import load

    result = trainer(tiny(tmp_path, corpus, training={"max_steps": 2})).run()
    trained = tensors(result.checkpoint)
    model = load(str(result.model_dir), backend="torch", device="cpu", dtype="float32")
    tokens = np.array([[5, 17, 300, 42, 7, 1000, 12, 9]])
    got = model.logits(tokens)

    from mind4_torch.model import Transformer

    from mind4_core.config import ModelConfig

    ref = Transformer(ModelConfig(vocab_size=8192, **TINY_MODEL), init=False)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in trained.items()})
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens)).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_mxfp4_export_keeps_experts_close(tmp_path, corpus):
    data = tiny(
        tmp_path,
        corpus,
        training={"max_steps": 2},
        checkpoint={"export_experts": "mxfp4", "export_dtype": "bfloat16"},
    )
    result = trainer(data).run()
    trained = tensors(result.checkpoint)
    exported = open_checkpoint(result.model_dir)
    try:
        assert exported.is_mxfp4("block.0.mlp.mlp1_weight")
        assert exported.dtype("block.0.attn.qkv.weight") == "BF16"
        assert exported.dtype("norm.scale") == "F32"
        for name in exported.names():
            want = trained[name]
            err = np.linalg.norm(exported.float32(name) - want) / np.linalg.norm(want)
            assert err < (0.2 if exported.is_mxfp4(name) else 1e-2), name
    finally:
        exported.close()
    size = sum(p.stat().st_size for p in Path(result.model_dir).iterdir())
    assert size < sum(p.stat().st_size for p in Path(result.checkpoint).glob("*.safetensors"))


# ----------------------------------------------------------------------------- resume


def test_ctrl_c_saves_and_resume_is_bit_for_bit(tmp_path, corpus):
    whole = trainer(tiny(tmp_path, corpus, out="whole")).run()

    def interrupt(step, row):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C

    data = tiny(tmp_path, corpus, out="parts")
    first = trainer(data, on_step=interrupt).run()
    assert first.interrupted and first.step == 3
    assert state_mod.read_state(tmp_path / "parts" / "checkpoint")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler removed

    second = trainer(data, resume=True).run()
    assert second.step == 8 and not second.interrupted
    assert second.train_losses == whole.train_losses  # exactly, step by step
    a, b = tensors(whole.checkpoint), tensors(second.checkpoint)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert second.val_loss == whole.val_loss
    opt_a = state_mod.load_checkpoint(whole.checkpoint)[1]
    opt_b = state_mod.load_checkpoint(second.checkpoint)[1]
    assert all(np.array_equal(opt_a[k], opt_b[k]) for k in opt_a)
    steps = [r["step"] for r in read_log(tmp_path / "parts") if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # the resumed log reads as one run


def test_resume_can_extend_max_steps(tmp_path, corpus):
    data = tiny(tmp_path, corpus, training={"max_steps": 4})
    trainer(data).run()
    longer = tiny(tmp_path, corpus, training={"max_steps": 6})
    result = trainer(longer, resume=True).run()
    assert result.step == 6 and len(result.train_losses) == 6


@pytest.mark.parametrize(
    ("section", "change", "named"),
    [
        ("optimizer", {"lr": 5.0e-3}, "optimizer.lr"),
        ("model", {"hidden_size": 64}, "model.hidden_size"),
        ("training", {"batch_size": 2}, "training.batch_size"),
        ("training", {"seed": 1}, "training.seed"),
    ],
)
def test_resume_with_a_different_config_is_refused(tmp_path, corpus, section, change, named):
    trainer(tiny(tmp_path, corpus, training={"max_steps": 2})).run()
    data = tiny(tmp_path, corpus, training={"max_steps": 2})
    data[section] = {**data[section], **change}
    with pytest.raises(CheckpointError) as err:
        trainer(data, resume=True).run()
    assert named in str(err.value) and "different config" in str(err.value)


def test_resume_without_a_checkpoint_is_an_error(tmp_path, corpus):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        trainer(tiny(tmp_path, corpus), resume=True).run()


def test_a_fresh_run_does_not_overwrite_a_checkpoint(tmp_path, corpus):
    trainer(tiny(tmp_path, corpus, training={"max_steps": 1})).run()
    with pytest.raises(CheckpointError, match="--resume"):
        trainer(tiny(tmp_path, corpus, training={"max_steps": 1})).run()


# ----------------------------------------------------------------------------- atomic saves


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, corpus, monkeypatch):
    real = state_mod.write_checkpoint
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second save: half a file, then the disk is full
            (Path(path) / "model.safetensors").write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(state_mod, "write_checkpoint", failing)
    with pytest.raises(CheckpointError) as err:
        trainer(tiny(tmp_path, corpus)).run()  # saves at steps 4 and 8
    message = str(err.value)
    assert "step 8" in message and "No space left" in message
    assert "step 4" in message and "intact" in message and "--resume" in message
    out = tmp_path / "run"
    assert state_mod.read_state(out / "checkpoint")["step"] == 4
    assert len(tensors(out / "checkpoint")) == 3 + 2 * 13  # complete and valid
    assert not (out / "checkpoint.tmp").exists()


def test_kill_between_the_renames_is_recovered(tmp_path):
    target = tmp_path / "checkpoint"
    state_mod.atomic_directory(target, lambda d: (d / "f").write_text("old"))
    # a kill after "checkpoint -> checkpoint.prev" and before "tmp -> checkpoint"
    os.rename(target, tmp_path / "checkpoint.prev")
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "f").write_text("half")
    state_mod.recover(target)
    assert (target / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_failed_write_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "checkpoint"
    state_mod.atomic_directory(target, lambda d: (d / "f").write_text("old"))

    def boom(d: Path) -> None:
        (d / "f").write_text("new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        state_mod.atomic_directory(target, boom)
    assert (target / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


# ----------------------------------------------------------------------------- errors, CLI


def test_too_small_corpus_stops_before_training(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("Only a handful of tokens here.", encoding="utf-8")
    data = tiny(tmp_path, small)
    with pytest.raises(DataError, match=r"at least \d+ are needed"):
        trainer(data).run()


def test_vocab_smaller_than_the_encoding_is_refused(tmp_path, corpus):
    data = tiny(tmp_path, corpus, model={"vocab_size": 1000})
    with pytest.raises(ConfigError, match="vocab_size"):
        trainer(data).run()


def test_cli_check_validates_and_prints(tmp_path):
    result = CliRunner().invoke(train_command, ["--check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "hidden_size" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  bach_size: 4\n", encoding="utf-8")
    result = CliRunner().invoke(train_command, [str(bad), "--check"])
    assert isinstance(result.exception, ConfigError)
    assert "training.bach_size" in str(result.exception)


def test_cli_trains(tmp_path, corpus):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path, corpus)), encoding="utf-8")
    result = CliRunner().invoke(
        train_command, [str(path), "--set", "training.max_steps=2", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "done: step 2" in result.output
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_progress_bar_on_a_terminal_shows_loss_rate_and_eta(tmp_path, corpus):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    data = tiny(tmp_path, corpus, training={"max_steps": 2}, log={"progress": True})
    Trainer(parse_config(data, "test"), console=console).run()
    shown = buffer.getvalue()
    assert "loss" in shown and "tok/s" in shown and "ETA" in shown and "2/2" in shown


def test_plain_progress_lines_when_not_a_terminal(tmp_path, corpus):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=160)
    data = tiny(
        tmp_path, corpus, training={"max_steps": 4}, log={"progress": True, "print_interval": 2}
    )
    Trainer(parse_config(data, "test"), console=console).run()
    lines = [line for line in buffer.getvalue().splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines if "loss" in line and "ETA" in line] == ["2/4", "4/4"]


def test_mind4_train_is_a_cli_command_of_the_plugin():
    from mind4_core.cli import cli
    from mind4_core.plugins import get_manager

    names = {r.name: r for r in get_manager().records("cli_command")}
    if "train" not in names:
        pytest.skip("mind4_torch.plugin does not register the train command yet")
    assert names["train"].factory == "mind4_torch.train.cli:train_command"
    result = CliRunner().invoke(cli, ["train", "--check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
