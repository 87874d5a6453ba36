"""Helpers for testing the specs: run them in-process against throwaway plugins."""

from __future__ import annotations

import contextlib

import pytest
from mind4_specs.runner import run_specs, spec_args

from mind4_core.plugins import temporary_plugin


@contextlib.contextmanager
def one_torch_thread():
    """Tiny shapes run fastest on one thread (and do not fight the rest of the suite)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def run_specs_on():
    """``run_specs_on(plugin, backend=..., select=..., ...) -> (exit code, {spec id: Outcome})``:
    the specs run in this process with ``plugin`` registered, float32 only unless asked."""

    def run(
        plugin=None, backend=None, *, dtypes=("float32",), select=None, components=None, extra=()
    ):
        args = spec_args(
            backend, components=components, dtypes=dtypes, seed=1234, select=select,
            extra=("-q", "-p", "no:randomly", *extra),
        )  # fmt: skip
        with contextlib.ExitStack() as stack:
            stack.enter_context(one_torch_thread())
            if plugin is not None:
                stack.enter_context(temporary_plugin(plugin, f"specs-test-{id(plugin)}"))
            code, outcomes = run_specs(args)
        return code, {o.spec_id: o for o in outcomes}

    return run
