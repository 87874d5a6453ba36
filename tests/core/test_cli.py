"""The command line, driven as a user drives it (subprocesses for start-up behaviour)."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mind4_core.cli import cli, main


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mind4_core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_imports_no_torch():
    code = "import sys; from mind4_core.cli import main; main(['--help']); print('TORCH' if 'torch' in sys.modules else 'LIGHT')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("LIGHT")
    assert "Commands:" in out.stdout and "run" in out.stdout


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "mind4, version" in result.output


def test_plugins_json_lists_core_and_records():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    core = next(p for p in data["plugins"] if p["name"] == "core")
    assert "weight_loader:canonical" in core["records"] and "mind4_weight_loaders" in core["hooks"]
    assert data["plugin_api_version"] == 1


def test_init_writes_a_loadable_checkpoint(tmp_path):
    from mind4_core.checkpoint import open_checkpoint

    result = CliRunner().invoke(cli, ["init", "--preset", "tiny", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "M parameters" in result.output
    assert open_checkpoint(tmp_path / "t").config.hidden_size == 128


def test_errors_are_one_clear_line_without_traceback(tmp_path, capsys, oracle_backend):
    code = main(["run", "-b", "oracle", "--checkpoint", str(tmp_path / "missing"), "hi"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: checkpoint directory not found") and "Traceback" not in err


def test_invalid_sampling_flag_is_a_clear_error(capsys, micro_checkpoint, oracle_backend):
    assert main(["run", "-b", "oracle", "-c", str(micro_checkpoint), "--top-p", "1.5", "hi"]) == 1
    assert "top_p" in capsys.readouterr().err
    assert (
        main(["run", "-b", "oracle", "-c", str(micro_checkpoint), "--temperature", "-1", "hi"]) == 1
    )
    assert "temperature" in capsys.readouterr().err


def test_unknown_backend_lists_installed(capsys, micro_checkpoint):
    assert main(["run", "-c", str(micro_checkpoint), "--backend", "nope", "hi"]) == 1
    err = capsys.readouterr().err
    assert "unknown backend 'nope'; installed backends:" in err


def test_debug_shows_the_traceback(tmp_path):
    out = run(
        "--debug", "run", "--checkpoint", str(tmp_path / "missing"), "--backend", "nope", "hi"
    )
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_run_with_oracle_backend_streams_text(oracle_backend, micro_checkpoint):
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "-b",
            "oracle",
            "-c",
            str(micro_checkpoint),
            "-t",
            "0",
            "-n",
            "5",
            "--json",
            "Hello",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["prompt"] == "Hello" and len(data["tokens"]) == 5 and data["backend"] == "oracle"


def test_bad_config_file_is_reported_with_its_path(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"sampling": {"top_p": 3}}))
    assert main(["run", "--config", str(cfg), "hi"]) == 1
    err = capsys.readouterr().err
    assert str(cfg) in err and "top_p" in err


@pytest.mark.parametrize("command", ["run", "chat", "plugins", "init", "bench"])
def test_every_command_has_help_with_text(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and len(result.output) > 200
