"""The plugin module: light to import, records, availability, and the conformance specs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mind4_core.plugins import temporary_plugin
from mind4_triton import plugin


def test_plugin_module_imports_no_torch_or_triton():
    code = "import sys, mind4_triton.plugin as p; p.mind4_backends(); print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_records():
    (backend,) = plugin.mind4_backends()
    assert backend.name == "triton" and "cuda" in backend.devices
    assert backend.components == {
        "attention": "triton",
        "moe_routing": "triton",
        "sampler": "triton",
    }
    for hook in (plugin.mind4_attention, plugin.mind4_moe_routing, plugin.mind4_samplers):
        (record,) = hook()
        assert record.name == "triton" and record.array_type == "torch"
        record.load()  # the factory string resolves


def test_interpreter_declares_cpu_without_bfloat16(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    (record,) = plugin.mind4_attention()
    assert "cpu" in record.devices and "bfloat16" not in record.dtypes
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    (record,) = plugin.mind4_attention()
    assert record.devices == {"cuda"} and "bfloat16" in record.dtypes


def test_availability_explains_what_is_missing(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    import torch

    if torch.cuda.is_available():
        assert plugin.availability() is None
    else:
        reason = plugin.availability()
        assert "no CUDA GPU" in reason and "--backend torch" in reason
    real = plugin.importlib.util.find_spec
    monkeypatch.setattr(
        plugin.importlib.util, "find_spec", lambda n: None if n == "triton" else real(n)
    )
    reason = plugin.availability()
    assert "triton is not installed" in reason and "--backend torch" in reason


def test_cli_without_gpu_prints_no_traceback(monkeypatch, tmp_path):
    """`mind4 run --backend triton` on a CPU machine: one clear sentence, no traceback."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from mind4_core import engine

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with temporary_plugin(plugin, "triton-test"):
        with pytest.raises(engine.BackendUnavailableError, match="no CUDA GPU.*--backend torch"):
            engine.load(backend="triton", device="auto")
