"""Mind 4's sessions: tests, lint, conformance (one per plugin and device), bench.

    nox                                  # tests, lint and every CPU conformance session
    nox -s tests lint conformance        # what CI runs (GPU conformance skips without a GPU)
    nox -s "conformance(torch-cpu)"      # one plugin's specs, in its own virtualenv
    nox -s conformance_external -- SPEC BACKEND [python -m mind4_specs options]
    nox -s bench -- --preset small       # arguments go to `mind4 bench`

Each plugin folder in ``plugins/`` gets a ``conformance`` session per device it
runs on: a fresh virtualenv where torch (the pinned CPU build, when the plugin
needs torch) is installed first, then Mind 4 and the plugin from its folder,
then ``python -m mind4_specs`` runs every spec against it. A plugin describes
its run in its ``pyproject.toml``::

    [tool.mind4.conformance]
    backend = "torch"                    # --backend (default: the folder name without "mind4-")
    args = ["--sampler", "min_p"]        # more python -m mind4_specs options
    devices = ["cpu", "gpu"]             # sessions and tags (default: ["cpu"])
    requires = ["../mind4-torch"]        # local plugins to install first
    env = {TRITON_INTERPRET = "1"}       # environment of the CPU run

The ``gpu`` sessions are not run by default and skip where no CUDA GPU is found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
PLUGINS = ROOT / "plugins"
#: the CPU build lies in the local wheel cache; unpinned, pip would fetch a multi-GB CUDA build
TORCH = "torch==2.13.0"
#: defaults for the project's own plugins where their pyproject.toml says nothing
KNOWN = {
    "mind4-torch": {"devices": ["cpu", "gpu"]},
    "mind4-triton": {"devices": ["cpu", "gpu"], "env": {"TRITON_INTERPRET": "1"}},
}
#: tiny spec shapes run fastest single-threaded (and do not fight other sessions)
CPU_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False


# ----------------------------------------------------------------------------- plugins


def pyproject(folder: Path) -> dict:
    path = folder / "pyproject.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def plugin_folders() -> list[Path]:
    return (
        sorted(p for p in PLUGINS.iterdir() if (p / "pyproject.toml").is_file())
        if PLUGINS.is_dir()
        else []
    )


def needs_torch(folder: Path) -> bool:
    """Whether installing the plugin (or a local plugin it requires) pulls in torch."""
    data = pyproject(folder)
    deps = data.get("project", {}).get("dependencies", [])
    if any(d.replace(" ", "").lower().startswith(("torch", "triton")) for d in deps):
        return True
    return any(needs_torch((folder / r).resolve()) for r in conformance_config(folder)["requires"])


def conformance_config(folder: Path) -> dict:
    table = pyproject(folder).get("tool", {}).get("mind4", {}).get("conformance", {})
    config = {
        "backend": folder.name.removeprefix("mind4-"),
        "args": [],
        "devices": ["cpu"],
        "requires": [],
        "env": {},
    }
    config.update(KNOWN.get(folder.name, {}))
    config.update(table)
    return config


def targets() -> dict[str, tuple[Path, str]]:
    """Session id (``torch-cpu``) -> (plugin folder, device)."""
    out = {}
    for folder in plugin_folders():
        short = folder.name.removeprefix("mind4-")
        for device in conformance_config(folder)["devices"]:
            out[f"{short}-{device}"] = (folder, device)
    return out


def gpu_available() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def install_mind4(session: nox.Session, *, editable: bool = False, torch: bool = False) -> None:
    """torch first (when needed, the pinned CPU build), then Mind 4: editable with its test
    extra for the test suite, else as a user installs it, plus pytest for the specs."""
    if torch:
        session.install(TORCH)
    if editable:
        session.install("-e", f"{ROOT}[test]")
    else:
        session.install(str(ROOT), "pytest>=8")


def install_plugin(session: nox.Session, folder: Path, seen: set[Path] | None = None) -> None:
    """Install ``folder`` after the local plugins it requires."""
    seen = set() if seen is None else seen
    for required in conformance_config(folder)["requires"]:
        path = (folder / required).resolve()
        if path not in seen:
            seen.add(path)
            install_plugin(session, path, seen)
    session.install(str(folder))


# ----------------------------------------------------------------------------- sessions


@nox.session
def tests(session: nox.Session) -> None:
    """pytest of tests/ (core, tokenizer, evals, specs, CLI) and of each plugin's tests/."""
    install_mind4(session, editable=True, torch=True)
    for folder in plugin_folders():
        session.install(str(folder))
    session.run("pytest", "tests", *session.posargs, env=CPU_ENV)
    for folder in plugin_folders():
        if (folder / "tests").is_dir():
            session.chdir(folder)
            env = {**CPU_ENV, **conformance_config(folder)["env"]}
            session.run("pytest", "tests", *session.posargs, env=env)
    session.chdir(ROOT)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the repository."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


TARGETS = targets()


@nox.session
@nox.parametrize(
    "target", [nox.param(name, id=name, tags=[device]) for name, (_, device) in TARGETS.items()]
)
def conformance(session: nox.Session, target: str) -> None:
    """The conformance specs against one plugin, in its own virtualenv."""
    folder, device = TARGETS[target]
    if device == "gpu" and not gpu_available():
        session.skip("no CUDA GPU here (nvidia-smi finds none)")
    config = conformance_config(folder)
    install_mind4(session, torch=needs_torch(folder))
    install_plugin(session, folder)
    env = {**CPU_ENV, **config["env"]} if device == "cpu" else {}
    args = ["--device", "cuda"] if device == "gpu" else []
    if config["backend"]:
        args += ["--backend", config["backend"]]
    session.run("python", "-m", "mind4_specs", *args, *config["args"], *session.posargs, env=env)


@nox.session(python=False)
def native(session: nox.Session) -> None:
    """metal_native's C tests (ctest) under AddressSanitizer + UBSan, fuzz corpus included."""
    session.run("bash", str(ROOT / ".ci" / "metal-tests.sh"), external=True)


@nox.session(default=False)
def conformance_external(session: nox.Session) -> None:
    """The specs against a plugin from PyPI, a path or a URL:
    ``nox -s conformance_external -- SPEC BACKEND [python -m mind4_specs options]``.

    torch (the pinned CPU build) is installed first unless ``MIND4_NOX_NO_TORCH=1``."""
    if len(session.posargs) < 2:
        session.error(
            "usage: nox -s conformance_external -- SPEC BACKEND [options], e.g. -- ./my-plugin mine"
        )
    spec, backend, *rest = session.posargs
    install_mind4(session, torch=not os.environ.get("MIND4_NOX_NO_TORCH"))
    session.install(spec)
    session.run("python", "-m", "mind4_specs", "--backend", backend, *rest, env=CPU_ENV)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """``mind4 bench`` with every plugin installed (arguments after ``--`` go to it;
    default: the ``small`` preset on the CPU). The scripts in bench/ take their own
    options: run them by hand, e.g. ``nox -s bench -- --compare torch,metal``."""
    install_mind4(session, editable=True, torch=True)
    for folder in plugin_folders():
        session.install(str(folder))
    session.run(
        "mind4", "bench", *(session.posargs or ["--preset", "small", "--device", "cpu", "--json"])
    )


nox.options.sessions = ["tests", "lint"] + [
    f"conformance({name})" for name, (_, d) in TARGETS.items() if d == "cpu"
]
