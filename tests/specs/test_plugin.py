"""The pytest plugin's rules: what is skipped, what is expected to fail, what is refused."""

from __future__ import annotations

import os
import subprocess
import sys

from mind4_core import hookimpl
from mind4_core.records import BackendRecord, SamplerRecord
from tests.specs.reference_backend import ReferencePlugin, Runtime, Sampler


def outcomes_of(outcomes, prefix):
    return {k: o for k, o in outcomes.items() if k.startswith(prefix)}


def test_declared_xfail_turns_failures_into_expected_failures(run_specs_on):
    plugin = ReferencePlugin(
        "nosinks", {"no_sinks"}, xfail={"attention::test_matches_oracle[*]": "sinks come in v2"}
    )
    code, outcomes = run_specs_on(plugin, "nosinks", select="attention")
    matching = outcomes_of(outcomes, "attention::test_matches_oracle[")
    assert matching and all(o.outcome == "xfailed" for o in matching.values())
    assert all("sinks come in v2" in o.reason for o in matching.values())
    # a defect outside the declared list still fails the run
    assert outcomes["attention::test_masked_keys_do_not_leak[float32]"].outcome == "failed"
    assert code == 1


def test_declared_xfail_that_passes_is_reported(run_specs_on):
    plugin = ReferencePlugin("sound", xfail={"attention::test_output_shape*": "thought broken"})
    code, outcomes = run_specs_on(plugin, "sound", select="attention")
    assert outcomes["attention::test_output_shape_and_dtype[float32]"].outcome == "xpassed"
    assert code == 0


def test_undeclared_dtype_is_skipped_with_its_reason(run_specs_on):
    code, outcomes = run_specs_on(
        ReferencePlugin("sound"), "sound", dtypes=("float16",), select="attention or routing"
    )
    assert code == 0 and outcomes
    assert {o.outcome for o in outcomes.values()} == {"skipped"}
    assert all("does not declare dtype float16" in o.reason for o in outcomes.values())


class PlainSamplerPlugin:
    """A sampler declaring only temperature (no top-k, top-p or probabilities)."""

    @hookimpl
    def mind4_samplers(self):
        return [SamplerRecord(name="plain", factory=Sampler, features={"temperature"})]


def test_undeclared_features_are_skipped(run_specs_on):
    code, outcomes = run_specs_on(PlainSamplerPlugin(), components={"sampler": "plain"})
    assert code == 0
    skipped = {k: o.reason for k, o in outcomes.items() if o.outcome == "skipped"}
    assert (
        "does not declare the 'probabilities' feature"
        in skipped["sampler::test_probabilities_match_oracle[float32-t1]"]
    )
    assert (
        "does not declare top_k" in skipped["sampler::test_frequencies_match_oracle[float32-top_k]"]
    )
    assert outcomes["sampler::test_frequencies_match_oracle[float32-t0.6]"].outcome == "passed"
    # no backend: the model-level specs say so
    assert "need a backend" in skipped["model::test_logits_match_oracle[float32-bf16]"]


def test_the_core_numpy_sampler_passes_on_its_own(run_specs_on):
    code, outcomes = run_specs_on(components={"sampler": "numpy"}, select="sampler")
    assert code == 0
    passed = [k for k, o in outcomes.items() if o.outcome == "passed"]
    assert len(passed) == 14, passed


def unavailable():
    return "it needs a quantum accelerator"


class UnavailablePlugin:
    @hookimpl
    def mind4_backends(self):
        return [BackendRecord(name="quantum", factory=Runtime, availability=unavailable)]


def test_unavailable_backend_skips_everything_with_its_reason(run_specs_on):
    code, outcomes = run_specs_on(UnavailablePlugin(), "quantum", select="attention or weights")
    assert code == 0 and outcomes
    assert all(
        o.outcome == "skipped" and "quantum accelerator" in o.reason for o in outcomes.values()
    )


def test_unknown_backend_is_a_usage_error(run_specs_on, capsys):
    code, outcomes = run_specs_on(backend="no-such-backend")
    assert code == 4 and not outcomes  # pytest's usage-error exit code
    assert "installed backends" in capsys.readouterr().err


def test_without_a_backend_every_spec_is_skipped(run_specs_on):
    code, outcomes = run_specs_on(select="attention")
    assert code == 0 and outcomes
    assert all("no backend chosen" in o.reason for o in outcomes.values())


def test_component_override_checks_another_plugins_component(run_specs_on):
    broken = ReferencePlugin("hot", {"temperature_inverted"})
    # the backend "sound" is correct, but its sampler is swapped for the broken one
    sound = ReferencePlugin("sound")

    class Both:
        @hookimpl
        def mind4_samplers(self):
            return broken.mind4_samplers()

        @hookimpl
        def mind4_backends(self):
            return sound.mind4_backends()

        @hookimpl
        def mind4_attention(self):
            return sound.mind4_attention()

        @hookimpl
        def mind4_moe_routing(self):
            return sound.mind4_moe_routing()

    code, outcomes = run_specs_on(Both(), "sound", components={"sampler": "hot"}, select="sampler")
    assert code == 1
    assert outcomes["sampler::test_probabilities_match_oracle[float32-t0.6]"].outcome == "failed"


def test_python_dash_m_prints_the_summary_table():
    env = dict(os.environ, COLUMNS="200")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mind4_specs",
            "--sampler",
            "numpy",
            "--dtype",
            "float32",
            "-q",
            "--seed",
            "5",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "mind4 specs: sampler numpy" in out
    assert "sampler" in out and "passed" in out and "skipped" in out
    assert "model-level specs need a backend" in out


def test_python_dash_m_requires_a_target():
    result = subprocess.run(
        [sys.executable, "-m", "mind4_specs"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MIND4_BACKEND"},
    )
    assert result.returncode == 2
    assert "choose a backend" in result.stderr


def test_xfail_patterns_take_wildcards_and_literal_brackets():
    from mind4_specs.plugin import matches

    assert matches(
        "attention::test_matches_oracle[*]", "attention::test_matches_oracle[float32-decode]"
    )
    assert matches("attention::*[bfloat16-*]", "attention::test_matches_oracle[bfloat16-decode]")
    assert not matches("attention::*[bfloat16-*]", "attention::test_matches_oracle[float32-decode]")
    assert matches("model::test_?ogits*", "model::test_logits_match_oracle[float32-bf16]")
    assert not matches("model::test_logits", "model::test_logits_match_oracle[float32-bf16]")


def test_python_dash_m_json_output():
    import json

    result = subprocess.run(
        [sys.executable, "-m", "mind4_specs", "--sampler", "numpy", "--dtype", "float32", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == "sampler numpy" and report["exit_code"] == 0
    assert report["summary"]["sampler"]["passed"] == 14
    assert {s["outcome"] for s in report["specs"] if s["component"] == "model"} == {"skipped"}
