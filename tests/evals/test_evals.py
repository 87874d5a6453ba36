"""The evals end to end with fake samplers: scores, shuffles, failures, determinism,
interruption, statistics and the basic eval's arithmetic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evals_fakes import FakeModel, FunctionSampler, answer_text, oracle, solve
from mind4_evals import stats
from mind4_evals.basic import BasicEval
from mind4_evals.choice import ABCDEval, GPQAEval, format_choice_question
from mind4_evals.errors import DatasetError, EvalError
from mind4_evals.samplers import EngineSampler
from mind4_evals.suite import RESULTS_FILE, load_run, make_eval, parse_eval_names, run_suite
from mind4_evals.types import EvalResult, SamplerBase, SamplerResponse

# -- question evals -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abcd", "gpqa", "aime"])
def test_a_perfect_sampler_scores_one(name):
    result = make_eval(name, limit=40).run(FunctionSampler(oracle(0.0)))
    assert result.score == 1.0 and result.n == 40 and result.n_failed == 0
    assert result.ci == (1.0, 1.0) and result.stderr == 0.0
    assert result.metrics["extracted_rate"] == 1.0


@pytest.mark.parametrize("name", ["abcd", "gpqa", "aime"])
def test_score_equals_the_fraction_the_sampler_got_right(name):
    ev = make_eval(name, limit=60)
    result = ev.run(FunctionSampler(oracle(0.3)))
    expected = np.mean([e.extracted == e.correct_answer for e in result.examples])
    assert result.score == pytest.approx(expected)
    assert 0.4 < result.score < 0.95  # the fake errs on ~30% of questions
    sd = np.std([e.score for e in result.examples], ddof=1)
    assert result.stderr == pytest.approx(sd / math.sqrt(60))
    assert result.ci[0] < result.score < result.ci[1]


def test_a_sampler_that_answers_nothing_scores_zero():
    result = make_eval("abcd", limit=10).run(FunctionSampler(lambda u: "I am not sure."))
    assert result.score == 0.0
    assert result.metrics["extracted_rate"] == 0.0
    assert all(e.extracted is None and e.status == "ok" for e in result.examples)


def test_gpqa_shuffles_are_seeded_and_the_correct_letter_follows():
    a = GPQAEval(limit=30, seed=0).items()
    b = GPQAEval(limit=30, seed=0).items()
    c = GPQAEval(limit=30, seed=1).items()
    assert [i.messages for i in a] == [i.messages for i in b]
    assert [i.correct for i in a] != [i.correct for i in c]
    for item in a:  # the letter marked correct shows the true answer
        choices = item.meta["choices"]
        assert choices["ABCD".index(item.correct)] == str(solve(item.messages[0]["content"]))
        assert item.messages[0]["content"] == format_choice_question(
            item.messages[0]["content"].split("\n\n")[0], choices
        )
    letters = [i.correct for i in GPQAEval(seed=0).items()]
    assert all(10 <= letters.count(x) <= 40 for x in "ABCD")  # a fair shuffle over 100
    # limit does not change how the first questions are shuffled
    assert [i.correct for i in GPQAEval(limit=5).items()] == letters[:5]


def test_gpqa_repeats_reshuffle_and_cluster():
    ev = GPQAEval(limit=10, repeats=4)
    items = ev.items()
    assert len(items) == 40 and {i.repeat for i in items} == {0, 1, 2, 3}
    perms = {tuple(i.meta["permutation"]) for i in items if i.id == items[0].id}
    assert len(perms) > 1
    result = ev.run(FunctionSampler(oracle(0.3)))
    per_q = {}
    for e in result.examples:
        per_q.setdefault(e.id, []).append(e.score)
    means = [np.mean(v) for v in per_q.values()]
    assert result.stderr == pytest.approx(np.std(means, ddof=1) / math.sqrt(10))


class Exploding(SamplerBase):
    """Raises for some questions; sample_batch raises if any member would."""

    batch_size = 8
    name = "exploding"

    def __init__(self, bad: str):
        self.bad = bad

    def __call__(self, messages):
        user = messages[-1]["content"]
        if self.bad in user:
            raise ConnectionError("socket closed")
        return SamplerResponse(text=answer_text(user, 0.0))

    def sample_batch(self, batch):
        return [self(m) for m in batch]  # raises for the whole batch


def test_a_sampler_that_raises_fails_only_its_examples():
    ev = ABCDEval(limit=24)
    bad_q = ev.items()[5].messages[0]["content"].split("\n\n")[0]
    result = ev.run(Exploding(bad_q))
    failed = [e for e in result.examples if e.failed]
    assert [e.index for e in failed] == [5]
    assert failed[0].error == "ConnectionError: socket closed" and failed[0].score == 0.0
    assert result.n == 24 and result.n_failed == 1
    assert result.score == pytest.approx(23 / 24)  # failures count as wrong


def test_a_sampler_returning_the_wrong_number_of_replies_is_retried_one_by_one():
    class Short(FunctionSampler):
        def sample_batch(self, batch):
            return super().sample_batch(batch)[:-1]

    result = ABCDEval(limit=9).run(Short(oracle(0.0), batch_size=4))
    assert result.score == 1.0 and result.n_failed == 0


def test_malformed_rows_are_counted_and_the_eval_goes_on(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        '{"problem": "What is 1 + 1?", "answer": 2}\nnot json\n'
        '{"problem": "What is 2 * 3?", "answer": "six"}\n{"problem": "What is 5 - 1?", "answer": 4}\n',
        encoding="utf-8",
    )
    result = make_eval("aime", data=str(p)).run(FunctionSampler(oracle(0.0)))
    assert result.n == 2 and result.score == 1.0
    assert result.n_malformed == 2
    assert [(m.line, m.file) for m in result.malformed] == [(2, str(p)), (3, str(p))]
    assert result.to_dict()["n_malformed"] == 2


def test_empty_dataset_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="empty.jsonl has no usable rows"):
        make_eval("abcd", data=str(p)).run(FunctionSampler(oracle()))


def test_parse_eval_names():
    assert parse_eval_names("aime, abcd,aime") == ["aime", "abcd"]
    with pytest.raises(EvalError, match="unknown eval.*'mmlu'.*available: basic, abcd, gpqa, aime"):
        parse_eval_names("abcd,mmlu")
    with pytest.raises(EvalError):
        parse_eval_names(" , ")


# -- the engine path, batched ---------------------------------------------------------------


def test_engine_sampler_runs_every_eval_batched():
    model = FakeModel(error_rate=0.25)
    sampler = EngineSampler(model, batch_size=16, max_new_tokens=40)
    result = make_eval("aime", limit=50).run(sampler)
    assert [n for kind, n in model.calls] == [16, 16, 16, 2]
    assert result.score == pytest.approx(
        np.mean(
            [
                solve(e.messages[0]["content"].split("\n\n")[0]) is not None
                and e.extracted == e.correct_answer
                for e in result.examples
            ]
        )
    )
    assert all(e.meta["raw"].startswith("<|channel|>final") for e in result.examples)
    assert result.examples[0].prompt_tokens > 20 and result.examples[0].completion_tokens > 5


# -- suite: files, determinism, interruption ---------------------------------------------------


def _suite(limit=20, seed=0):
    return [make_eval(n, limit=limit, seed=seed) for n in ("basic", "abcd", "gpqa", "aime")]


def test_same_seed_same_results_and_files(tmp_path):
    runs = [
        run_suite(_suite(), EngineSampler(FakeModel(), batch_size=8), out_dir=tmp_path / d, seed=0)
        for d in ("a", "b")
    ]
    assert runs[0].deterministic_dict() == runs[1].deterministic_dict()
    other = run_suite(_suite(seed=3), EngineSampler(FakeModel(), batch_size=8), seed=3)
    assert (
        other.results["gpqa"].deterministic_dict() != runs[0].results["gpqa"].deterministic_dict()
    )
    # batch size does not change what a greedy engine answers
    small = run_suite(_suite(), EngineSampler(FakeModel(), batch_size=3), seed=0)
    for name in ("abcd", "gpqa", "aime"):
        assert [e.response for e in small.results[name].examples] == [
            e.response for e in runs[0].results[name].examples
        ]
    loaded = load_run(tmp_path / "a")
    assert loaded.deterministic_dict() == runs[0].deterministic_dict()
    for name in ("basic", "abcd", "gpqa", "aime"):
        lines = (tmp_path / "a" / f"{name}.examples.jsonl").read_text().splitlines()
        assert [json.loads(x)["id"] for x in lines] == [e.id for e in loaded.results[name].examples]
    assert (tmp_path / "a" / "report.html").stat().st_size > 1000


def test_ctrl_c_keeps_everything_graded_so_far(tmp_path):
    calls = {"n": 0}

    def answer(user):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return answer_text(user, 0.0)

    evals = [make_eval("abcd", limit=10), make_eval("aime", limit=10)]
    with pytest.raises(KeyboardInterrupt):
        run_suite(evals, FunctionSampler(answer, batch_size=1), out_dir=tmp_path)
    run = load_run(tmp_path / RESULTS_FILE)
    assert run.partial
    assert run.results["abcd"].n == 10 and not run.results["abcd"].partial
    assert run.results["aime"].partial and run.results["aime"].n == 2
    assert len((tmp_path / "aime.examples.jsonl").read_text().splitlines()) == 2


def test_missing_dataset_fails_before_any_sampling(tmp_path):
    sampler = FunctionSampler(oracle())
    evals = [make_eval("abcd", limit=3), make_eval("gpqa", data=str(tmp_path / "x.csv"))]
    with pytest.raises(DatasetError, match=r"x.csv does not exist; expected a CSV file"):
        run_suite(evals, sampler, out_dir=tmp_path / "out")
    assert sampler.batches == []


def test_result_json_round_trip():
    r = make_eval("gpqa", limit=5, repeats=2).run(FunctionSampler(oracle(0.5)))
    d = json.loads(json.dumps(r.to_dict()))
    assert EvalResult.from_dict(d).to_dict() == r.to_dict()


# -- basic ------------------------------------------------------------------------------------


def _reference_bits_per_byte(model: FakeModel, text: str, window: int) -> tuple[float, float, int]:
    """Straight loops in float64: every token predicted once after <|startoftext|>."""
    tok = model.tokenizer
    ids = tok.encode(text)
    bos = tok.special_tokens["<|startoftext|>"]
    nll, n_tok, n_bytes, n_win = 0.0, 0, 0, 0
    for start in range(0, len(ids), window - 1):
        prev = bos
        n_win += 1
        for t in ids[start : start + window - 1]:
            z = model.table[prev].astype(np.float64)
            nll += math.log(np.exp(z).sum()) - z[t]
            n_tok += 1
            n_bytes += len(tok.decode_bytes([t]))
            prev = t
    return nll / math.log(2) / n_bytes, math.exp(nll / n_tok), n_win


def test_basic_bits_per_byte_matches_a_float64_reference(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("Ünïcödé text, with bytes ≠ characters. " * 30, encoding="utf-8")
    model = FakeModel()
    result = BasicEval(str(p), window=64).run(EngineSampler(model))
    bpb, ppl, n_win = _reference_bits_per_byte(model, p.read_text(encoding="utf-8"), 64)
    assert result.metric == "bits_per_byte" and not result.higher_is_better
    assert result.n == n_win
    assert abs(result.score - bpb) / bpb < 1e-12
    assert abs(result.metrics["perplexity"] - ppl) / ppl < 1e-12
    assert result.metrics["bytes"] == len(p.read_bytes())
    assert result.ci[0] <= result.score <= result.ci[1]
    smoke = [e for e in result.examples if e.id == "smoke"]
    assert smoke[0].response and result.metrics["smoke_ok"] == 1.0


def test_basic_without_a_model_still_runs_the_smoke_conversation():
    result = BasicEval().run(FunctionSampler(lambda u: "five"))
    assert result.score is None and result.n == 0
    assert result.metrics == {"smoke_ok": 1.0}
    assert "skipped" in result.config["perplexity"]


def test_basic_isolates_failing_windows_and_a_failing_smoke(tmp_path):
    class Flaky(FakeModel):
        def logits(self, tokens):
            tokens = np.asarray(tokens)
            if (tokens == ord("#")).any():
                raise MemoryError("out of memory")
            return super().logits(tokens)

    class Broken(EngineSampler):
        def __call__(self, messages):
            raise TimeoutError("no reply")

    p = tmp_path / "t.txt"
    p.write_text("a" * 100 + "#" + "b" * 300, encoding="utf-8")
    result = BasicEval(str(p), window=101).run(Broken(Flaky()))
    windows = [e for e in result.examples if e.meta["kind"] == "window"]
    assert [e.failed for e in windows] == [False, True, False, False, False]
    assert result.n_failed == 2  # one window + the smoke conversation
    assert result.metrics["smoke_ok"] == 0.0
    assert result.metrics["tokens"] == 301  # 401 tokens minus the failed window's 100
    assert result.score is not None


# -- statistics -------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    x = (rng.random(400) < 0.7).astype(float)
    s1 = stats.summarize(list(x), seed=5)
    s2 = stats.summarize(list(x), seed=5)
    assert s1 == s2
    half = 1.96 * s1.stderr
    assert s1.ci[0] == pytest.approx(s1.mean - half, abs=0.01)
    assert s1.ci[1] == pytest.approx(s1.mean + half, abs=0.01)
    assert stats.summarize([]).mean is None


def test_ratio_summary_matches_pooled_ratio():
    num, den = [2.0, 4.0, 3.0], [1.0, 2.0, 2.0]
    s = stats.ratio_summary(num, den, scale=2.0)
    assert s.mean == pytest.approx(2.0 * 9 / 5)
    assert s.ci[0] <= s.mean <= s.ci[1]


def test_paired_difference():
    a = {"q1": 1.0, "q2": 0.0, "q3": 1.0}
    b = {"q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 0.0}
    s = stats.paired_difference(a, b)
    assert s.n == 3 and s.mean == pytest.approx(1 / 3)
