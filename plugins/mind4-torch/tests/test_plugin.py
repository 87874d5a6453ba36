"""The plugin module, its records, and the backend built through the core's manager."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import config, random_weights, write
from mind4_torch import plugin

from mind4_core import protocols
from mind4_core.config import Config, RuntimeConfig, SamplingParams
from mind4_core.errors import ConfigError
from mind4_core.plugins import get_manager, temporary_plugin
from mind4_core.records import BackendRecord


def test_plugin_module_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import mind4_torch.plugin as p
        records = p.mind4_backends() + p.mind4_attention() + p.mind4_moe_routing() + p.mind4_samplers()
        records += p.mind4_cli_commands()
        records[-1].load()  # the train command's module imports torch only when run
        assert p.availability() is None
        print("torch" in sys.modules, len(records))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["False", "6"]  # torch + torch-tp backends, 3 components, train


def test_records_and_their_factories_resolve():
    manager_kinds = {
        "attention": (plugin.mind4_attention, protocols.Attention),
        "moe_routing": (plugin.mind4_moe_routing, protocols.MoERouting),
        "sampler": (plugin.mind4_samplers, protocols.Sampler),
    }
    for kind, (hook, protocol) in manager_kinds.items():
        (record,) = hook()
        assert record.name == "torch" and record.kind == kind
        assert record.devices == {"cpu", "cuda", "mps"}
        assert record.dtypes == {"float32", "bfloat16", "float16"}
        component = record.create(device="cpu", dtype="float32")
        assert isinstance(component, protocol)
    backend, tp = plugin.mind4_backends()
    assert backend.name == "torch" and tp.name == "torch-tp"
    assert isinstance(backend, BackendRecord)
    assert backend.components == {"attention": "torch", "moe_routing": "torch", "sampler": "torch"}
    assert set(backend.tolerances) == {"float32", "bfloat16", "float16"}
    assert backend.unavailable_reason() is None
    assert callable(backend.load())
    assert "experts" in plugin.mind4_moe_routing()[0].features
    assert {"temperature", "top_k", "top_p", "probabilities"} <= plugin.mind4_samplers()[0].features


@contextlib.contextmanager
def registered():
    """The process-wide manager with this plugin: installed (entry point) or registered now."""
    manager = get_manager()
    if any(r.name == "torch" for r in manager.records("backend")):
        yield manager
    else:
        with temporary_plugin(plugin, name="torch-test") as manager:
            yield manager


def test_backend_through_the_core_manager(tmp_path):
    cfg = config()
    checkpoint, _ = write(tmp_path, cfg, random_weights(cfg))
    with registered() as manager:
        record = manager.backend("torch")
        sampler = manager.component("sampler", "torch", device="cpu", dtype="float32").create(
            device="cpu", dtype="float32"
        )
        rt = record.create(
            checkpoint=checkpoint,
            config=Config(runtime=RuntimeConfig(device="auto")),
            components={"attention": "torch"},
        )
        assert isinstance(rt, protocols.Runtime)
        from mind4_torch.runtime import DEFAULT_DTYPE, resolve_device

        auto = resolve_device("auto")  # cuda > mps > cpu; the default dtype follows the device
        assert rt.device == str(auto) and rt.dtype == DEFAULT_DTYPE[auto.type]
        cache = rt.new_cache(1, 16)
        logits = rt.forward(np.array([[1, 2, 3]]), cache, 0)
        token = sampler.sample(logits, SamplingParams(temperature=0.0), sampler.generator(0))
        assert token.dtype == np.int64 and token.shape == (1,)
        assert rt.to_numpy(logits).shape == (1, cfg.vocab_size)


def test_factory_tells_the_engine_its_auto_device():
    from mind4_torch.runtime import factory, resolve_device

    assert factory.resolve_device("auto") == str(resolve_device("auto"))
    assert factory.resolve_device("cpu") == "cpu"


def test_bad_runtime_choices(tmp_path):
    from mind4_torch.runtime import factory, resolve_device

    from mind4_core.errors import BackendUnavailableError

    with pytest.raises(ConfigError, match="allowed"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA"):
            resolve_device("cuda")
    cfg = config()
    checkpoint, _ = write(tmp_path, cfg, random_weights(cfg))
    from mind4_core.errors import PluginError

    with pytest.raises(PluginError, match="unknown attention 'nope'"):
        factory(
            checkpoint=checkpoint,
            config=Config(runtime=RuntimeConfig(device="cpu")),
            components={"attention": "nope"},
        )
