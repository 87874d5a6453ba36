"""mind4 lab routing / attention / lens and bench --compare/--plot: reports, tables,
JSON, every PNG opened and checked, and clear errors for bad indices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mind4_core.cli import cli, main
from mind4_core.engine import load
from mind4_core.lab import LabError, attention_report, lens_report, routing_report

from .conftest import LAB, PROMPT, assert_png


def model_args(checkpoint) -> list[str]:
    return ["-c", str(checkpoint), "-b", "torch", "-d", "cpu", "--dtype", "float32"]


def invoke(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


# ----------------------------------------------------------------------------- routing


def test_routing_report_counts_every_routing_slot(torch_model):
    report = routing_report(torch_model, PROMPT)
    T, L, k, E = (
        len(report["tokens"]),
        LAB.num_hidden_layers,
        LAB.experts_per_token,
        LAB.num_experts,
    )
    assert report["experts"].shape == (L, T, k) and report["weights"].shape == (L, T, k)
    assert report["load"].shape == (L, E) and (report["load"].sum(1) == T * k).all()
    np.testing.assert_allclose(report["gate_load"].sum(1), T, rtol=1e-5)  # weights sum to 1
    np.testing.assert_allclose(report["weights"].sum(-1), 1.0, rtol=1e-5)
    assert (np.diff(report["weights"], axis=-1) <= 1e-7).all()  # largest first
    distinct = np.sort(report["experts"], -1)
    assert (np.diff(distinct, axis=-1) > 0).all()  # k different experts per token


def test_routing_cli_table_json_and_png(torch_model, lab_checkpoint, tmp_path):
    png = tmp_path / "routing.png"
    out = invoke("lab", "routing", PROMPT, *model_args(lab_checkpoint), "-o", str(png))
    assert "experts chosen" in out and "expert load per layer" in out and "e0:" in out
    assert_png(png, 800, 350)
    data = json.loads(
        invoke(
            "lab", "routing", PROMPT, *model_args(lab_checkpoint), "--layers", "2,0",
            "--layer", "0", "-o", str(tmp_path / "r2.png"), "--json",
        )
    )  # fmt: skip
    assert data["layers"] == [2, 0] and len(data["experts"]) == 2
    assert len(data["experts"][0]) == len(data["tokens"]) == len(data["texts"])
    assert_png(tmp_path / "r2.png", 600, 300)


def test_routing_plot_of_many_layers_and_experts(tmp_path):
    """The gpt-oss-20b shape of routing (24 layers, 32 experts, top-4), synthetic."""
    from mind4_core.lab_plots import plot_routing

    rng = np.random.default_rng(0)
    L, T, E, k = 24, 40, 32, 4
    experts = np.stack([[rng.choice(E, k, replace=False) for _ in range(T)] for _ in range(L)])
    weights = rng.dirichlet(np.ones(k), (L, T))
    report = {
        "layers": list(range(L)),
        "num_experts": E,
        "experts_per_token": k,
        "texts": [f"tok{i}" for i in range(T)],
        "experts": experts,
        "weights": weights,
        "load": np.stack([np.bincount(e.reshape(-1), minlength=E) for e in experts]),
        "gate_load": np.stack(
            [
                np.bincount(e.reshape(-1), w.reshape(-1), minlength=E)
                for e, w in zip(experts, weights)
            ]
        ),
    }
    path = plot_routing(report, tmp_path / "big.png", focus=5)
    assert_png(path, 1500, 800)


# ----------------------------------------------------------------------------- attention


def test_attention_report_rows_are_distributions_over_the_visible_past(torch_model):
    W = LAB.sliding_window
    for layer in range(LAB.num_hidden_layers):
        report = attention_report(torch_model, PROMPT, layer=layer, head=3)
        probs, sink = report["probs"], report["sink"]
        T = len(report["tokens"])
        assert T > W and probs.shape == (T, T) and sink.shape == (T,)
        np.testing.assert_allclose(probs.sum(1) + sink, 1.0, atol=1e-5)
        assert (sink > 0).all()
        q, s = np.arange(T)[:, None], np.arange(T)[None, :]
        assert not probs[s > q].any()  # causal
        windowed = layer % 2 == 0
        assert report["window"] == (W if windowed else None) and report["kv_head"] == 1
        if windowed:
            assert not probs[s <= q - W].any()  # outside the window
        else:
            assert (probs[s <= q] > 0).all()  # the whole past


def test_attention_cli_table_json_and_png(torch_model, lab_checkpoint, tmp_path):
    png = tmp_path / "attn.png"
    out = invoke(
        "lab", "attention", PROMPT, *model_args(lab_checkpoint), "--layer", "0", "--head", "2",
        "-o", str(png),
    )  # fmt: skip
    assert "sliding window 6" in out and "mean sink share" in out
    pixels = assert_png(png, 500, 500)
    # the sliding window's edge is drawn in red on a windowed layer
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 200
    full = tmp_path / "full.png"
    data = json.loads(
        invoke(
            "lab", "attention", PROMPT, *model_args(lab_checkpoint), "-l", "1", "-o", str(full),
            "--json",
        )
    )  # fmt: skip
    assert data["window"] is None and len(data["probs"]) == len(data["tokens"])
    pixels = assert_png(full, 500, 500)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() < 50  # no window to draw


# ----------------------------------------------------------------------------- logit lens


def test_lens_last_stage_is_the_models_own_prediction(torch_model):
    report = lens_report(torch_model, PROMPT, position=4, top=3)
    assert report["max_abs_error_last_stage"] < 1e-4
    stages = report["stages"]
    assert [s["stage"] for s in stages][:2] == ["embedding", "block.0.attn"]
    assert len(stages) == 2 * LAB.num_hidden_layers + 1
    last = stages[-1]
    assert [a["token"] for a in last["top"]] == report["final_top"]
    assert last["final_top1_rank"] == 0
    tokens = report["tokens"]
    assert report["next_token"] == tokens[5]
    logits = torch_model.logits([tokens])[0, 4].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert last["next_token_probability"] == pytest.approx(p[tokens[5]], rel=1e-4)


def test_lens_cli_table_json_and_png(torch_model, lab_checkpoint, tmp_path):
    png = tmp_path / "lens.png"
    out = invoke("lab", "lens", PROMPT, *model_args(lab_checkpoint), "-p", "-1", "-o", str(png))
    assert "logit lens at position" in out and "block.2.mlp" in out
    assert_png(png, 700, 350)
    data = json.loads(
        invoke("lab", "lens", PROMPT, *model_args(lab_checkpoint), "-p", "2", "-o", "", "--json")
    )
    assert data["position"] == 2 and data["png"] is None and len(data["stages"]) == 7


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["attention", "--layer", "3"],
            "error: layer 3 is out of range: the model has 3 layers (valid: 0..2)",
        ),
        (
            ["attention", "--head", "4"],
            "error: head 4 is out of range: each layer has 4 query heads (valid: 0..3)",
        ),
        (["attention", "--layer", "-1"], "error: layer -1 is out of range"),
        (
            ["lens", "--position", "40"],
            "error: position 40 is out of range: the prompt has 15 tokens (valid: 0..14, or "
            "-15..-1 counting from the end)",
        ),
        (["lens", "--top", "0"], "error: --top must be at least 1"),
        (["routing", "--layers", "0,9"], "error: layer 9 is out of range"),
        (["routing", "--layers", "a,b"], "error: --layers takes comma-separated layer indices"),
        (
            ["routing", "--layers", "1", "--layer", "0"],
            "error: --layer 0 is not among --layers [1]",
        ),
    ],
)
def test_bad_indices_are_clear_errors(torch_model, lab_checkpoint, capsys, args, message):
    command, *rest = args
    code = main(["lab", command, PROMPT, *model_args(lab_checkpoint), *rest, "-o", ""])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(message), err
    assert "Traceback" not in err


def test_capture_on_a_backend_without_it_is_a_clear_error(oracle_backend, lab_checkpoint, capsys):
    code = main(["lab", "routing", PROMPT, "-c", str(lab_checkpoint), "-b", "oracle", "-o", ""])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(
        "error: backend 'oracle' cannot capture routing: it implements no capture"
    )
    out = invoke("lab", "capabilities", "-c", str(lab_checkpoint), "-b", "oracle", "--json")
    assert json.loads(out) == {"backend": "oracle", "capture": [], "explain": True}
    out = invoke("lab", "capabilities", *model_args(lab_checkpoint))
    assert "capture: routing, attention, residual" in out


def test_capture_leaves_generation_unchanged(torch_model):
    from mind4_core.config import SamplingParams
    from mind4_core.lab import capture

    params = SamplingParams(temperature=0.0, max_new_tokens=5)
    before = torch_model.generate(PROMPT, params)
    with capture(torch_model, ["routing", "residual"], attention_layers=[0, 1]) as rec:
        during = torch_model.generate(PROMPT, params)
    assert during == before == torch_model.generate(PROMPT, params)
    prompt_len = len(torch_model.encode(PROMPT))
    # prefill + one pass per generated token but the last
    assert rec.forward_passes == 1 + 4
    assert list(rec.positions()) == list(range(prompt_len + 4))


# ----------------------------------------------------------------------------- bench


def test_bench_compare_table_and_plot(torch_model, lab_checkpoint, tmp_path):
    png = tmp_path / "bench.png"
    out = invoke(
        "bench", "--compare", "torch,nosuch", "-c", str(lab_checkpoint), "-d", "cpu",
        "--prompt-tokens", "8", "--decode-tokens", "2", "--contexts", "4,16,40",
        "--plot", str(png), "--json",
    )  # fmt: skip
    rows = json.loads(out)
    assert [r["backend"] for r in rows] == ["torch", "nosuch"]
    assert {"decode_tok_s@4", "decode_tok_s@16", "decode_tok_s@40"} <= set(rows[0])
    assert "unknown backend 'nosuch'" in rows[1]["error"]
    assert_png(png, 500, 350, lines=True)
    table = invoke(
        "bench", "--compare", "torch", "-c", str(lab_checkpoint), "-d", "cpu",
        "--prompt-tokens", "8", "--decode-tokens", "2", "--contexts", "24",
    )  # fmt: skip
    assert "mind4 bench --compare" in table and "decode_tok_s@24" in table


def test_bench_plot_needs_measurements(tmp_path):
    from mind4_core.errors import Mind4Error
    from mind4_core.lab_plots import plot_bench

    with pytest.raises(Mind4Error, match="no backend produced decode measurements"):
        plot_bench([{"backend": "x", "error": "cannot run"}], tmp_path / "b.png")


def test_plots_refuse_a_missing_folder(torch_model, tmp_path):
    from mind4_core.errors import Mind4Error
    from mind4_core.lab_plots import plot_attention

    report = attention_report(torch_model, PROMPT, layer=0, head=0)
    with pytest.raises(Mind4Error, match="folder .*nowhere does not exist"):
        plot_attention(report, tmp_path / "nowhere" / "a.png")


def test_lab_on_the_metal_backend_explains_or_says_what_it_lacks(lab_checkpoint):
    """Every installed backend either captures or says so (no crash, no traceback)."""
    from mind4_core.plugins import get_manager

    for name in get_manager().names("backend"):
        record = get_manager().backend(name)
        if record.unavailable_reason() or "cpu" not in record.devices:
            continue
        try:
            model = load(lab_checkpoint, backend=name, device="cpu", dtype="float32")
        except Exception as exc:  # noqa: BLE001 - a backend that cannot load this model
            pytest.skip(f"{name}: {exc}")
        try:
            report = routing_report(model, PROMPT)
        except LabError as exc:
            assert f"backend '{name}' cannot capture routing" in str(exc)
        else:
            assert report["load"].sum() > 0
