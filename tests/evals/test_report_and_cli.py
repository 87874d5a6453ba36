"""The HTML report (one run and a comparison) and the ``eval`` CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import attrs
import pytest
from click.testing import CliRunner
from evals_fakes import FakeChatServer, FakeModel, FunctionSampler, answer_text, oracle
from mind4_evals import cli as eval_cli
from mind4_evals.report import render_html
from mind4_evals.samplers import EngineSampler
from mind4_evals.suite import load_run, make_eval, run_suite
from mind4_evals.svgplot import Series, bar_chart, nice_ticks


class _Checker(HTMLParser):
    """Collects tags and every attribute that could fetch something external."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs_):
        self.tags.append(tag)
        for k, v in attrs_:
            if k in ("src", "href") and v and not v.startswith("#"):
                self.external.append(f"{tag} {k}={v}")


def _run(tmp_path, name, error_rate, label=None):
    return run_suite(
        [make_eval(n, limit=12) for n in ("basic", "abcd", "gpqa", "aime")],
        EngineSampler(FakeModel(error_rate=error_rate), batch_size=8),
        out_dir=tmp_path / name,
        label=label,
    )


def test_single_run_report_is_self_contained(tmp_path):
    run = _run(tmp_path, "a", 0.3)
    html = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(html)
    assert checker.external == []
    assert checker.tags.count("svg") == 2  # accuracy chart + bits-per-byte chart
    assert "<script" not in html
    # every question example is there with its conversation, escaped
    n_examples = sum(len(r.examples) for r in run.results.values())
    assert checker.tags.count("details") >= n_examples
    assert "What is" in html and "&lt;|channel|&gt;final" in html
    assert f"{run.results['abcd'].score:.4f}" in html


def test_comparison_report_puts_runs_side_by_side(tmp_path):
    a = _run(tmp_path, "a", 0.0, label="good")
    b = _run(tmp_path, "b", 0.5, label="noisy")
    html = render_html([a, b])
    assert "Δ noisy − good" in html
    assert re.search(r"\d+ of 12 examples differ between runs", html)
    # the paired difference of abcd equals the difference of the means
    diff = b.results["abcd"].score - a.results["abcd"].score
    assert f"{diff:+.4f}" in html
    checker = _Checker()
    checker.feed(html)
    assert checker.external == [] and checker.tags.count("svg") == 2


def test_bar_chart_geometry():
    svg = bar_chart(
        ["x", "y"], [Series("s", [0.5, None], [0.4, None], [0.6, None])], ymin=0, ymax=1, height=300
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "n/a" in svg and "0.5" in svg
    bar = re.search(
        r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"',
        svg.split("</text>", 1)[1],
    )
    top, height = float(bar.group(1)), float(bar.group(2))
    # bar for 0.5 on a [0, 1] axis: half the plot height
    plot_h = 300 - 14 - 30
    assert height == pytest.approx(plot_h / 2, abs=0.2) and top == pytest.approx(
        14 + plot_h / 2, abs=0.2
    )
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


# -- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def fake_engine(monkeypatch):
    """`mind4 eval` without torch: EngineSampler.load gives the fake model."""
    seen = {}

    def load(checkpoint=None, *, backend, device, dtype, **kwargs):
        seen.update(checkpoint=checkpoint, backend=backend, device=device, dtype=dtype, **kwargs)
        return EngineSampler(FakeModel(error_rate=0.2), **kwargs)

    monkeypatch.setattr(EngineSampler, "load", staticmethod(load))
    return seen


def test_cli_runs_evals_and_writes_results(tmp_path, fake_engine):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        eval_cli.eval_command,
        [
            "--eval",
            "abcd,aime",
            "--limit",
            "10",
            "--seed",
            "2",
            "--out",
            str(out),
            "--backend",
            "fake",
            "--batch-size",
            "4",
            "--max-tokens",
            "40",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert fake_engine["backend"] == "fake" and fake_engine["seed"] == 2
    assert fake_engine["batch_size"] == 4 and fake_engine["max_new_tokens"] == 40
    assert "abcd" in res.output and "report.html" in res.output
    run = load_run(out)
    assert set(run.results) == {"abcd", "aime"} and run.seed == 2
    assert run.results["abcd"].n == 10


def test_cli_json_and_same_seed_same_scores(tmp_path, fake_engine):
    outs = []
    for d in ("a", "b"):
        res = CliRunner().invoke(
            eval_cli.eval_command,
            ["-e", "gpqa", "--limit", "8", "--out", str(tmp_path / d), "--json"],
        )
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.output))
    assert outs[0]["evals"]["gpqa"]["score"] == outs[1]["evals"]["gpqa"]["score"]
    assert "examples" not in outs[0]["evals"]["gpqa"]
    assert (
        load_run(tmp_path / "a").deterministic_dict()
        == load_run(tmp_path / "b").deterministic_dict()
    )


def test_cli_evaluates_an_http_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekrit")
    with FakeChatServer() as srv:
        srv.answer = lambda user: answer_text(user, 0.0)
        res = CliRunner().invoke(
            eval_cli.eval_command,
            [
                "-e",
                "basic,aime,gpqa",
                "--limit",
                "5",
                "--url",
                srv.url,
                "--model",
                "served",
                "--api-key-env",
                "MY_KEY",
                "--out",
                str(tmp_path),
                "--no-progress",
            ],
        )
        assert res.exit_code == 0, res.output
        bodies = [body for _, _, body in srv.requests]
        headers = [h for _, h, _ in srv.requests]
    run = load_run(tmp_path)
    assert run.sampler["kind"] == "http" and run.sampler["model"] == "served"
    assert run.results["aime"].score == 1.0 and run.results["gpqa"].score == 1.0
    assert run.results["basic"].score is None  # no logits over HTTP: smoke conversation only
    assert run.results["basic"].metrics["smoke_ok"] == 1.0
    assert len(bodies) == 11 and all(b["model"] == "served" for b in bodies)
    assert all(h["Authorization"] == "Bearer sekrit" for h in headers)
    assert "sekrit" not in (tmp_path / "results.json").read_text()


def test_cli_report_compares_files(tmp_path):
    a = run_suite(
        [make_eval("abcd", limit=6)], FunctionSampler(oracle(0.0)), out_dir=tmp_path / "a"
    )
    run_suite([make_eval("abcd", limit=6)], FunctionSampler(oracle(0.6)), out_dir=tmp_path / "b")
    html = tmp_path / "cmp.html"
    res = CliRunner().invoke(
        eval_cli.eval_command,
        [
            "report",
            str(tmp_path / "a"),
            str(tmp_path / "b" / "results.json"),
            "--out",
            str(html),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["runs"] == ["function", "function (2)"]
    assert data["rows"][0][:3] == [
        "abcd",
        "accuracy",
        f"{a.results['abcd'].score:.4f} ± 0.0000 [1.000, 1.000]",
    ]
    assert "Δ function (2) − function" in html.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "abcd,mmlu"], "unknown eval(s) 'mmlu'"),
        (["-e", "abcd", "--data", "xyz=1"], "expected EVAL=PATH"),
        (["-e", "gpqa", "--data", "gpqa=/nonexistent/g.csv"], "/nonexistent/g.csv does not exist"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, fake_engine, args, message):
    res = CliRunner().invoke(
        eval_cli.eval_command, [*args, "--out", str(tmp_path), "--no-progress"]
    )
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_cli_report_rejects_a_file_that_is_not_results(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}', encoding="utf-8")
    res = CliRunner().invoke(eval_cli.eval_command, ["report", str(p)])
    assert res.exit_code != 0 and "not a mind4 eval results file" in res.output


def test_cli_list():
    res = CliRunner().invoke(eval_cli.eval_command, ["list"])
    assert res.exit_code == 0
    for name in ("basic", "abcd", "gpqa", "aime", "gpqa_synthetic.csv"):
        assert name in res.output


def test_relabel_keeps_results(tmp_path):
    run = run_suite([make_eval("aime", limit=3)], FunctionSampler(oracle()), out_dir=tmp_path)
    assert attrs.evolve(run, label="x").results == run.results
