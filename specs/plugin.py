"""The pytest plugin behind ``pytest --pyargs mind4_specs --mind4-backend NAME``.

Registered through the ``pytest11`` entry point, so it is active in every
pytest run where Mind 4 is installed; it does nothing until the spec modules
(``mind4_specs/specs_*.py``) are collected, which happens only when they are
asked for (``--pyargs mind4_specs`` or their folder).

What it decides:

- **which backend**: ``--mind4-backend NAME`` or ``MIND4_BACKEND``; components
  can be swapped for another plugin's with ``--mind4-attention``,
  ``--mind4-moe-routing`` and ``--mind4-sampler`` (the way ``mind4 run`` does),
  and a component can be checked without a backend (``--mind4-sampler numpy``);
- **what is skipped**: a dtype, device or feature that the backend's or the
  component's record does not declare, and everything when the backend says it
  cannot run here (its ``availability`` check);
- **what is expected to fail**: the backend record's ``xfail`` mapping, spec id
  pattern -> reason. A spec id is ``COMPONENT::TEST[PARAMS]``, for example
  ``attention::test_matches_oracle[bfloat16-decode_window]``; a pattern may use
  ``*`` and ``?`` wildcards (brackets are literal): ``attention::*[bfloat16-*]``;
- **tolerances**: ``BackendRecord.tolerances[dtype]`` (relative error).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

PACKAGE_DIR = Path(__file__).resolve().parent
DTYPES = ("float32", "bfloat16", "float16")
COMPONENT_KINDS = ("attention", "moe_routing", "sampler")
#: tolerances when no backend is chosen (a component checked on its own)
DEFAULT_TOLERANCES = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}

TARGET = pytest.StashKey["Target"]()


# ----------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mind4", "Mind 4 conformance specs (mind4_specs)")
    group.addoption(
        "--mind4-backend",
        help="backend to check (default: $MIND4_BACKEND)",
    )
    group.addoption(
        "--mind4-device",
        help="device to run on (default: $MIND4_DEVICE, else cpu when the backend supports it)",
    )
    group.addoption(
        "--mind4-dtype",
        action="append",
        choices=DTYPES,
        help="check only this dtype (repeatable; default: every dtype)",
    )
    for kind in COMPONENT_KINDS:
        group.addoption(
            f"--mind4-{kind.replace('_', '-')}",
            dest=f"mind4_{kind}",
            default=None,
            help=f"check this {kind.replace('_', ' ')} component instead of the backend's own",
        )
    group.addoption(
        "--mind4-seed",
        type=int,
        help="seed of the random inputs (default: $MIND4_SPECS_SEED, else a new one each run, shown)",
    )


# ----------------------------------------------------------------------------- target


@attrs.define
class Target:
    """What the specs are pointed at, resolved once per run."""

    backend_name: str | None
    backend: Any  # BackendRecord | None
    device: str
    overrides: dict[str, str]
    seed: int
    #: why nothing can run (the backend is unavailable here), else None
    unavailable: str | None = None

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def chosen(self) -> bool:
        return self.backend is not None or bool(self.overrides)

    def tolerance(self, dtype: str) -> float:
        tolerances = self.backend.tolerances if self.backend is not None else DEFAULT_TOLERANCES
        if dtype not in tolerances:
            pytest.fail(
                f"backend {self.backend_name!r} declares dtype {dtype} but no tolerance for it; "
                f"add it to BackendRecord.tolerances"
            )
        return float(tolerances[dtype])

    def check_dtype(self, dtype: str) -> None:
        if self.backend is not None and dtype not in self.backend.dtypes:
            pytest.skip(f"backend {self.backend_name!r} does not declare dtype {dtype}")

    def component_record(self, kind: str, dtype: str):
        """The record of the ``kind`` component to check, or skip with the reason."""
        from mind4_core.plugins import get_manager

        option = f"--mind4-{kind.replace('_', '-')}"
        name, who_declares = self.overrides.get(kind), option
        if name is None and self.backend is not None:
            name = self.backend.components.get(kind)
            who_declares = f"backend {self.backend_name!r}"
        if name is None:
            who = f"backend {self.backend_name!r}" if self.backend is not None else "no backend"
            pytest.skip(f"{who} declares no {kind} component (choose one with {option})")
        records = [r for r in get_manager().records(kind) if r.name == name]
        if not records:
            pytest.fail(f"{kind} component {name!r} (declared by {who_declares}) is not installed")
        for record in records:  # best first
            if record.supports(self.device, dtype):
                return record
        pytest.skip(f"{kind} {name!r} does not declare {dtype} on {self.device_kind}")

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mind4_core.engine.load` for this target."""
        return {"backend": self.backend_name, "device": self.device, **self.overrides}


def _resolve_target(config: pytest.Config) -> Target:
    from mind4_core.errors import PluginError
    from mind4_core.plugins import get_manager

    opt = config.option
    name = opt.mind4_backend or os.environ.get("MIND4_BACKEND") or None
    device = opt.mind4_device or os.environ.get("MIND4_DEVICE")
    overrides = {
        k: getattr(opt, f"mind4_{k}") for k in COMPONENT_KINDS if getattr(opt, f"mind4_{k}")
    }
    seed = opt.mind4_seed
    if seed is None:
        env_seed = os.environ.get("MIND4_SPECS_SEED")
        seed = int(env_seed) if env_seed else int.from_bytes(os.urandom(3), "little")
    manager = get_manager()
    backend = None
    unavailable = None
    if name is not None:
        try:
            backend = manager.backend(name)
        except PluginError:
            installed = ", ".join(manager.names("backend")) or "none"
            raise pytest.UsageError(
                f"--mind4-backend {name!r}: no such backend; installed backends: {installed}. "
                "Install the plugin that provides it (`mind4 plugins` lists what is installed)."
            ) from None
        try:
            unavailable = backend.unavailable_reason()
        except Exception as exc:  # noqa: BLE001 - a broken availability check is a finding too
            unavailable = f"its availability check raised {type(exc).__name__}: {exc}"
    for kind, component in overrides.items():
        if component not in manager.names(kind):
            installed = ", ".join(manager.names(kind)) or "none"
            raise pytest.UsageError(
                f"--mind4-{kind.replace('_', '-')} {component!r}: no such component; "
                f"installed: {installed}"
            )
    if not device:
        cpu_ok = backend is None or "cpu" in backend.devices
        device = "cpu" if cpu_ok else sorted(backend.devices)[0]
    return Target(name, backend, device, overrides, seed, unavailable)


def get_target(config: pytest.Config) -> Target:
    """The run's target, resolved on first use: a pytest run that collects no
    spec never loads the Mind 4 plugins."""
    if TARGET not in config.stash:
        config.stash[TARGET] = _resolve_target(config)
    return config.stash[TARGET]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mind4_spec: a Mind 4 conformance spec")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    if not any(is_spec(item) for item in items):
        return []
    target = get_target(config)
    if not target.chosen:
        return []
    what = [f"backend {target.backend_name!r}"] if target.backend is not None else []
    what += [f"{kind} {name!r}" for kind, name in target.overrides.items()]
    plugin = (
        f" from {target.backend.plugin}"
        if target.backend is not None and target.backend.plugin
        else ""
    )
    lines = [
        f"mind4 specs: {', '.join(what)}{plugin} on {target.device}; "
        f"seed {target.seed} (repeat with --mind4-seed {target.seed})"
    ]
    if target.unavailable:
        lines.append(f"mind4 specs: backend unavailable here: {target.unavailable}")
    return lines


# ----------------------------------------------------------------------------- collection


class SpecModule(pytest.Module):
    """A ``specs_*.py`` module, imported under its real name ``mind4_specs.<stem>``
    whatever the rootdir (pytest would otherwise derive a name from the folder)."""

    def _getobj(self):
        return importlib.import_module(f"mind4_specs.{self.path.stem}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("specs_")
        and file_path.resolve().parent == PACKAGE_DIR
    ):
        return SpecModule.from_parent(parent, path=file_path)
    return None


def component_of(item: pytest.Item) -> str:
    """``specs_attention.py`` -> ``attention``."""
    return item.path.stem.removeprefix("specs_")


def spec_id(item: pytest.Item) -> str:
    return f"{component_of(item)}::{item.name}"


def is_spec(item: pytest.Item) -> bool:
    return item.getparent(SpecModule) is not None


def matches(pattern: str, sid: str) -> bool:
    """Whether spec id ``sid`` matches an xfail ``pattern`` (``*``/``?`` wildcards only)."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, sid) is not None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dtype" in metafunc.fixturenames and metafunc.module.__name__.startswith(
        "mind4_specs.specs_"
    ):
        dtypes = metafunc.config.option.mind4_dtype or DTYPES
        metafunc.parametrize("dtype", dtypes, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    specs = [item for item in items if is_spec(item)]
    if not specs:
        return
    target = get_target(config)
    declared = dict(target.backend.xfail) if target.backend is not None else {}
    for item in specs:
        sid = spec_id(item)
        item.add_marker(pytest.mark.mind4_spec)
        item.user_properties.append(("mind4_component", component_of(item)))
        item.user_properties.append(("mind4_spec_id", sid))
        if not target.chosen:
            item.add_marker(
                pytest.mark.skip(
                    reason="no backend chosen: pass --mind4-backend NAME or set MIND4_BACKEND"
                )
            )
        elif target.unavailable:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"backend {target.backend_name!r} unavailable: {target.unavailable}"
                )
            )
        for pattern, reason in declared.items():
            if matches(pattern, sid):
                item.add_marker(
                    pytest.mark.xfail(
                        reason=f"declared by {target.backend_name}: {reason}", strict=False
                    )
                )
                break


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mind4_target(pytestconfig: pytest.Config) -> Target:
    """The backend/components under test (see :class:`Target`)."""
    return get_target(pytestconfig)


@pytest.fixture(scope="session")
def dtype(request: pytest.FixtureRequest, mind4_target: Target) -> str:
    """The dtype a spec runs in; skipped when the backend does not declare it."""
    mind4_target.check_dtype(request.param)
    return request.param


@pytest.fixture
def tolerance(mind4_target: Target, dtype: str) -> float:
    """The backend's declared relative-error tolerance for ``dtype``."""
    return mind4_target.tolerance(dtype)


@pytest.fixture
def rng(request: pytest.FixtureRequest, mind4_target: Target) -> np.random.Generator:
    """Fresh random inputs for this test: seeded by the run seed and the test id."""
    from .checks import seeded_rng

    return seeded_rng(mind4_target.seed, request.node.nodeid.split("::", 1)[-1])


@attrs.frozen
class Component:
    """A component made from its record, with the adapter for its arrays."""

    record: Any
    impl: Any
    arrays: Any
    dtype: str

    def has(self, feature: str) -> bool:
        return feature in self.record.features


def make_component(target: Target, kind: str, dtype: str) -> Component:
    from .arrays import arrays_for

    record = target.component_record(kind, dtype)
    impl = record.create(device=target.device, dtype=dtype)
    return Component(record, impl, arrays_for(record.array_type, target.device), dtype)


@pytest.fixture
def attention(mind4_target: Target, dtype: str) -> Component:
    return make_component(mind4_target, "attention", dtype)


@pytest.fixture
def moe_routing(mind4_target: Target, dtype: str) -> Component:
    return make_component(mind4_target, "moe_routing", dtype)


@pytest.fixture
def sampler(mind4_target: Target, dtype: str) -> Component:
    return make_component(mind4_target, "sampler", dtype)


@pytest.fixture(scope="session")
def backend_target(mind4_target: Target) -> Target:
    """The target, for specs that need a whole backend (skipped without one)."""
    if mind4_target.backend is None:
        pytest.skip("model-level specs need a backend: pass --mind4-backend NAME")
    return mind4_target


# ----------------------------------------------------------------------------- models


class SpecModels:
    """Random checkpoints of :data:`mind4_specs.models.SPEC_CONFIG`, written on first use."""

    def __init__(self, directory: Path, seed: int):
        self.directory = directory
        self.seed = seed
        self._made: dict[str, Any] = {}

    def checkpoint(self, kind: str):
        """``bf16`` (bf16 dense and experts), ``mxfp4`` (bf16 dense, MXFP4 experts),
        ``float32`` (everything float32), or ``init`` (made by ``init_checkpoint``)."""
        from .models import SPEC_CONFIG, SpecCheckpoint, write_spec_checkpoint

        if kind not in self._made:
            path = self.directory / kind
            if kind == "init":
                from mind4_core.checkpoint import open_checkpoint
                from mind4_core.presets import init_checkpoint

                init_checkpoint(
                    SPEC_CONFIG, path, seed=self.seed, experts="mxfp4", dtype="bfloat16"
                )
                ckpt = open_checkpoint(path)
                weights = {n: ckpt.float32(n).astype(np.float64) for n in ckpt.names()}
                ckpt.close()
                self._made[kind] = SpecCheckpoint(
                    path, SPEC_CONFIG, weights, {}, "bfloat16", "mxfp4"
                )
            else:
                dtype = "float32" if kind == "float32" else "bfloat16"
                experts = {"bf16": "bf16", "mxfp4": "mxfp4", "float32": "float32"}[kind]
                self._made[kind] = write_spec_checkpoint(
                    path, seed=self.seed, dtype=dtype, experts=experts
                )
        return self._made[kind]


@pytest.fixture(scope="session")
def spec_models(tmp_path_factory: pytest.TempPathFactory, mind4_target: Target) -> SpecModels:
    return SpecModels(tmp_path_factory.mktemp("mind4-spec-models"), mind4_target.seed)


@pytest.fixture(scope="session")
def load_model(backend_target: Target):
    """``load_model(path, dtype)``: the backend's model through :func:`mind4_core.engine.load`
    (cached per checkpoint and dtype)."""
    from mind4_core import engine
    from mind4_core.config import Config, RuntimeConfig

    cache: dict[tuple[str, str], Any] = {}

    def load(path: Path, dtype: str):
        key = (str(path), dtype)
        if key not in cache:
            runtime = RuntimeConfig(
                backend=backend_target.backend_name,
                device=backend_target.device,
                dtype=dtype,
                **backend_target.overrides,
            )
            cache[key] = engine.load(path, config=Config(runtime=runtime))
        return cache[key]

    return load
