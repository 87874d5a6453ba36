"""The plugin's records, and that discovering it stays light (no torch, no
compiled module imported)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import PLUGIN_DIR
from mind4_core.records import BackendRecord, SamplerRecord


def test_records():
    from mind4_metal import plugin

    (backend,) = plugin.mind4_backends()
    (sampler,) = plugin.mind4_samplers()
    assert isinstance(backend, BackendRecord) and backend.name == "metal"
    assert backend.array_type == "numpy" and backend.devices == {"cpu"}
    assert backend.dtypes == {"float32", "bfloat16"}
    assert backend.components["sampler"] == "metal"
    assert isinstance(sampler, SamplerRecord) and sampler.array_type == "numpy"
    assert {"temperature", "top_k", "top_p", "probabilities"} <= sampler.features


def test_import_is_light():
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PLUGIN_DIR)!r})
        import mind4_metal.plugin as p
        p.mind4_backends(); p.mind4_samplers(); p.availability()
        heavy = [m for m in ("torch", "triton", "mind4_metal._native", "mind4_metal.runtime") if m in sys.modules]
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_runtime_imports_no_torch():
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PLUGIN_DIR)!r})
        try:
            import mind4_metal.runtime, mind4_metal.sampler
        except Exception as exc:  # not built: nothing to check
            print("skip", type(exc).__name__)
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False"), out.stdout + out.stderr
