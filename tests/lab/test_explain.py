"""mind4 explain / run --explain: the account of each step, on any backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mind4_core.cli import cli, main
from mind4_core.config import SamplingParams
from mind4_core.engine import load
from mind4_core.lab import LabError, analyse_step, explain_steps, run_explain
from mind4_core.sampling import probabilities

from .conftest import PROMPT


def softmax64(x):
    z = np.asarray(x, np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


# ----------------------------------------------------------------------------- one step


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    temperature=st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.8]),
    top_k=st.sampled_from([0, 1, 3, 10, 50]),
    top_p=st.sampled_from([1.0, 0.95, 0.5, 0.1]),
    scale=st.sampled_from([0.5, 3.0, 10.0]),
)
def test_step_accounts_for_every_token_and_all_the_mass(seed, temperature, top_k, top_p, scale):
    rng = np.random.default_rng(seed)
    V = 200
    logits = scale * rng.standard_normal(V)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    final = probabilities(logits, params)[0]
    chosen = int(rng.choice(np.flatnonzero(final > 0)))
    step = analyse_step(logits, params, chosen, top=7)

    p = softmax64(logits)
    assert step["probability"] == pytest.approx(p[chosen], rel=1e-12)
    assert step["logprob"] == pytest.approx(np.log(p[chosen]), rel=1e-9)
    assert step["sampling_probability"] == pytest.approx(final[chosen], rel=1e-12)
    assert step["rank"] == int((logits > logits[chosen]).sum())
    # the alternatives: most likely first, with both probabilities
    tops = [a["token"] for a in step["top"]]
    assert tops == list(np.argsort(-logits, kind="stable")[:7])
    for alt in step["top"]:
        assert alt["probability"] == pytest.approx(p[alt["token"]], rel=1e-12)
        assert alt["sampling_probability"] == pytest.approx(final[alt["token"]], rel=1e-12)

    kept = int((final > 0).sum())
    assert step["kept_tokens"] == kept
    removed_tokens = sum(c["tokens_removed"] for c in step["cuts"])
    if params.greedy:
        assert [c["filter"] for c in step["cuts"]] == ["greedy"] and kept == 1
        assert step["cuts"][0]["mass_removed"] == pytest.approx(1 - p.max(), abs=1e-12)
        assert removed_tokens == V - 1
        return
    tempered = probabilities(logits, SamplingParams(temperature=temperature))[0]
    support = int((tempered > 0).sum())
    assert removed_tokens == support - kept  # every cut token is counted exactly once
    removed_mass = sum(c["mass_removed"] for c in step["cuts"])
    assert step["kept_mass"] + removed_mass == pytest.approx(1.0, abs=1e-9)
    assert [c["filter"] for c in step["cuts"]] == [
        f for f, on in (("top_k", top_k > 0), ("top_p", top_p < 1.0)) if on
    ]
    for cut in step["cuts"]:
        if cut["filter"] == "top_k":
            assert cut["tokens_removed"] == max(0, support - top_k)
        if cut["filter"] == "top_p":
            assert 0.0 <= cut["share_of_remaining"] <= 1.0
            assert cut["share_of_remaining"] >= cut["mass_removed"] - 1e-12
    # temperature's effect on the same step
    t = step["temperature"]
    assert t["entropy_bits_before"] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-9)
    if temperature < 1.0:
        assert t["entropy_bits_after"] <= t["entropy_bits_before"] + 1e-9
        assert t["top1_after"] >= t["top1_before"] - 1e-12
    elif temperature > 1.0:
        assert t["entropy_bits_after"] >= t["entropy_bits_before"] - 1e-9


def test_step_by_hand():
    # probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1
    logits = np.log([0.5, 0.25, 0.125, 0.125])
    step = analyse_step(logits, SamplingParams(temperature=1.0, top_k=3, top_p=0.6), 1)
    top_k, top_p = step["cuts"]
    assert (top_k["tokens_removed"], top_k["mass_removed"]) == (1, pytest.approx(0.125))
    # after top-k: 4/7, 2/7, 1/7; top-p 0.6 keeps 4/7 (0 before) and 2/7 (4/7 < 0.6 before)
    assert (top_p["tokens_removed"], top_p["mass_removed"]) == (1, pytest.approx(0.125))
    assert top_p["share_of_remaining"] == pytest.approx(1 / 7)
    assert step["kept_tokens"] == 2 and step["kept_mass"] == pytest.approx(0.75)
    assert step["sampling_probability"] == pytest.approx(1 / 3)
    assert step["probability"] == pytest.approx(0.25) and step["rank"] == 1


# ----------------------------------------------------------------------------- generation


def test_explain_generates_what_generate_generates_on_any_backend(oracle_backend, lab_checkpoint):
    """The oracle backend (NumPy, no capture) gives logits, so explain works on it."""
    model = load(lab_checkpoint, backend="oracle")
    params = SamplingParams(temperature=0.9, top_k=20, top_p=0.9, max_new_tokens=5, seed=11)
    steps = list(explain_steps(model, PROMPT, params, top=3))
    assert [s["token"] for s in steps] == model.generate(PROMPT, params)
    prompt_len = len(model.encode(PROMPT))
    assert [s["position"] for s in steps] == list(range(prompt_len, prompt_len + 5))
    # each step's probabilities are those of the logits at that point
    tokens = model.encode(PROMPT) + [s["token"] for s in steps]
    logits = model.logits([tokens])[0]
    for s in steps:
        p = softmax64(logits[s["position"] - 1])
        assert s["probability"] == pytest.approx(p[s["token"]], rel=1e-4)
        assert s["text"] == model.tokenizer.decode([s["token"]])
        assert len(s["top"]) == 3


def test_explain_on_torch_matches_run(torch_model):
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=6, seed=5)
    steps = list(explain_steps(torch_model, PROMPT, params))
    assert [s["token"] for s in steps] == torch_model.generate(PROMPT, params)


def test_cli_run_explain_json_equals_run_json(torch_model, lab_checkpoint):
    args = ["-c", str(lab_checkpoint), "-b", "torch", "-d", "cpu", "-t", "0.7", "-n", "4"]
    args += ["--seed", "2", "--top-k", "30"]
    plain = CliRunner().invoke(cli, ["run", "--json", *args, PROMPT])
    explained = CliRunner().invoke(cli, ["run", "--explain", "--json", *args, PROMPT])
    assert plain.exit_code == 0 and explained.exit_code == 0, explained.output
    a, b = json.loads(plain.output), json.loads(explained.output)
    assert b["tokens"] == a["tokens"] and b["text"] == a["text"]
    assert b["sampling"]["top_k"] == 30 and len(b["steps"]) == 4
    assert [c["filter"] for c in b["steps"][0]["cuts"]] == ["top_k", "top_p"]


def test_cli_explain_prints_a_table(torch_model, lab_checkpoint):
    args = ["-c", str(lab_checkpoint), "-b", "torch", "-d", "cpu", "-n", "3", "--top", "2"]
    result = CliRunner().invoke(cli, ["explain", *args, "--top-k", "5", PROMPT])
    assert result.exit_code == 0, result.output
    assert "token by token" in result.output and "top-k: -" in result.output
    assert "top 2" in result.output


def test_explain_console_colours_by_confidence(torch_model):
    from rich.console import Console

    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    params = SamplingParams(temperature=0.0, max_new_tokens=2)
    report = run_explain(torch_model, PROMPT, params, console=console)
    html = console.export_html()
    assert report["steps"][0]["cuts"][0]["filter"] == "greedy"
    assert "color: #" in html  # each generated token carries its confidence colour


# ----------------------------------------------------------------------------- bad input


class _NoLogits:
    """A runtime wrapper that declares it cannot return logits."""

    provides_logits = False

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_backend_without_logits_is_refused_naming_backends(torch_model):
    model = torch_model
    original = model.runtime
    model.runtime = _NoLogits(original)
    try:
        with pytest.raises(
            LabError, match="cannot provide log-probabilities.*installed here: .*torch"
        ):
            list(explain_steps(model, PROMPT, SamplingParams(max_new_tokens=1)))
    finally:
        model.runtime = original


def test_logits_of_the_wrong_shape_are_refused(torch_model, monkeypatch):
    monkeypatch.setattr(type(torch_model.runtime), "to_numpy", lambda self, x: np.ones((1, 3)))
    with pytest.raises(LabError, match="array of 3 values where explain needs 8192"):
        list(explain_steps(torch_model, PROMPT, SamplingParams(max_new_tokens=1)))


def test_bad_top_and_empty_prompt(torch_model, lab_checkpoint, capsys):
    with pytest.raises(LabError, match="--top must be at least 1"):
        list(explain_steps(torch_model, PROMPT, SamplingParams(), top=0))
    with pytest.raises(LabError, match="no tokens"):
        list(explain_steps(torch_model, "", SamplingParams()))
    code = main(["explain", "-c", str(lab_checkpoint), "-b", "torch", "-d", "cpu", ""])
    assert code == 1 and "error: the prompt encodes to no tokens" in capsys.readouterr().err
