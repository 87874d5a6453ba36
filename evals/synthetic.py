"""Synthetic datasets: arithmetic and pattern questions a small model can learn.

The files in ``mind4_evals/data`` are written by this module (``python -m
mind4_evals.synthetic DIR`` regenerates them byte for byte; a test checks it),
so every eval runs out of the box without a download. Question families:

- ``add``  ``What is 37 + 48?`` -> 85
- ``sub``  ``What is 91 - 26?`` -> 65
- ``mul``  ``What is 7 * 8?`` -> 56
- ``next`` ``What number comes next: 3, 7, 11, 15, ...?`` -> 19
- ``two_step`` (AIME set only) ``What is (12 + 5) * 3?`` -> 51

:func:`training_examples` draws fresh questions of the same families and
templates *excluding every question of the shipped sets*, so a model trained
on them is evaluated on questions it never saw.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

SEEDS = {"abcd": 101, "gpqa": 202, "aime": 303, "text": 404}
SIZES = {"abcd": 200, "gpqa": 100, "aime": 200, "text": 600}
FAMILIES = ("add", "sub", "mul", "next")


def question(family: str, rng: random.Random) -> tuple[str, int]:
    """One ``(question, integer answer)`` of ``family``."""
    if family == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return f"What is {a} + {b}?", a + b
    if family == "sub":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", a - b
    if family == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} * {b}?", a * b
    if family == "next":
        start, step = rng.randint(0, 30), rng.randint(1, 9)
        seq = ", ".join(str(start + i * step) for i in range(4))
        return f"What number comes next: {seq}, ...?", start + 4 * step
    if family == "two_step":
        a, b, c = rng.randint(1, 20), rng.randint(1, 20), rng.randint(2, 9)
        return f"What is ({a} + {b}) * {c}?", (a + b) * c
    raise ValueError(f"unknown family {family!r}")


def distractors(answer: int, rng: random.Random) -> list[int]:
    """Three wrong options near ``answer`` (off by one, by ten, ...), all >= 0."""
    offsets = [-10, -2, -1, 1, 2, 10, 3, -3, 11, -11]
    rng.shuffle(offsets)
    out: list[int] = []
    for d in offsets:
        v = answer + d
        if v >= 0 and v != answer and v not in out:
            out.append(v)
        if len(out) == 3:
            break
    return out


def _unique_questions(
    kind: str, n: int, families: tuple[str, ...], exclude: set[str] = frozenset()
) -> Iterator[tuple[str, int, str, random.Random]]:
    """Up to ``n`` distinct questions cycling through ``families``; a family whose
    draws keep repeating (its small space is used up) is dropped."""
    rng = random.Random(SEEDS.get(kind, kind))
    seen = set(exclude)
    live = list(families)
    made = turn = 0
    while made < n and live:
        family = live[turn % len(live)]
        for _ in range(500):
            q, a = question(family, rng)
            if q not in seen:
                break
        else:
            live.remove(family)
            continue
        seen.add(q)
        made += 1
        turn += 1
        yield q, a, family, rng


def abcd_rows(n: int = SIZES["abcd"]) -> list[dict]:
    rows = []
    for i, (q, a, family, rng) in enumerate(_unique_questions("abcd", n, FAMILIES)):
        options = [a, *distractors(a, rng)]
        rng.shuffle(options)
        rows.append(
            {
                "id": f"abcd-{i:04d}",
                "family": family,
                "question": q,
                "choices": [str(o) for o in options],
                "answer": "ABCD"[options.index(a)],
            }
        )
    return rows


def gpqa_rows(n: int = SIZES["gpqa"]) -> list[dict]:
    rows = []
    for i, (q, a, family, rng) in enumerate(_unique_questions("gpqa", n, FAMILIES)):
        wrong = distractors(a, rng)
        rows.append(
            {
                "Record ID": f"gpqa-{i:04d}",
                "Subdomain": family,
                "Question": q,
                "Correct Answer": str(a),
                "Incorrect Answer 1": str(wrong[0]),
                "Incorrect Answer 2": str(wrong[1]),
                "Incorrect Answer 3": str(wrong[2]),
            }
        )
    return rows


def aime_rows(n: int = SIZES["aime"]) -> list[dict]:
    families = (*FAMILIES, "two_step")
    return [
        {"id": f"aime-{i:04d}", "family": f, "problem": q, "answer": a}
        for i, (q, a, f, _) in enumerate(_unique_questions("aime", n, families))
    ]


def statement(q: str, a: int) -> str:
    """A question and its answer as one line of plain text."""
    return f"{q} {a}."


def text_lines(n: int = SIZES["text"], seed: int | str = "text") -> list[str]:
    """Plain-text statements (``What is 3 + 4? 7.``) for perplexity / bits per byte."""
    families = (*FAMILIES, "two_step")
    kind = "text" if seed == "text" else f"text-{seed}"
    return [statement(q, a) for q, a, _, _ in _unique_questions(kind, n, families)]


def render_files() -> dict[str, str]:
    """File name -> exact content of every shipped dataset."""
    gpqa = io.StringIO()
    rows = gpqa_rows()
    writer = csv.DictWriter(gpqa, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)

    def jsonl(rows: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    return {
        "abcd_synthetic.jsonl": jsonl(abcd_rows()),
        "gpqa_synthetic.csv": gpqa.getvalue(),
        "aime_synthetic.jsonl": jsonl(aime_rows()),
        "basic_synthetic.txt": "\n".join(text_lines()) + "\n",
    }


def write_files(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_files().items():
        (out / name).write_text(content, encoding="utf-8", newline="")
        written.append(out / name)
    return written


def eval_questions() -> set[str]:
    """Every question text of the shipped sets (to keep out of training data)."""
    qs = {r["question"] for r in abcd_rows()}
    qs |= {r["Question"] for r in gpqa_rows()}
    qs |= {r["problem"] for r in aime_rows()}
    qs |= {line.rsplit("? ", 1)[0] + "?" for line in text_lines()}
    return qs


def training_examples(n: int, seed: int = 0) -> Iterator[tuple[list[dict[str, str]], str]]:
    """``(messages, assistant reply)`` pairs in the exact prompt templates of the
    ``abcd``, ``gpqa`` and ``aime`` evals, none of them in the shipped eval sets.
    Feed them to a trainer (rendered in the harmony format) to teach a small
    model the tasks and the answer formats the graders read."""
    from .aime import format_aime_problem
    from .choice import format_choice_question

    exclude = eval_questions()
    families = (*FAMILIES, "two_step")
    for i, (q, a, family, rng) in enumerate(
        _unique_questions(f"train-{seed}", n, families, exclude)
    ):
        if family != "two_step" and i % 2 == 0:
            options = [a, *distractors(a, rng)]
            rng.shuffle(options)
            letter = "ABCD"[options.index(a)]
            prompt = format_choice_question(q, [str(o) for o in options])
            yield [{"role": "user", "content": prompt}], f"Answer: {letter}"
        else:
            yield [{"role": "user", "content": format_aime_problem(q)}], f"\\boxed{{{a}}}"


def training_text(n_lines: int, seed: int = 0) -> str:
    """Plain statements for language-model training, excluding the eval questions."""
    exclude = eval_questions()
    families = (*FAMILIES, "two_step")
    lines = [
        statement(q, a)
        for q, a, _, _ in _unique_questions(f"train-text-{seed}", n_lines, families, exclude)
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "data")
    for path in write_files(target):
        print(path)
