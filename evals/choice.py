"""Multiple-choice evals: ``abcd`` (JSON Lines, fixed options) and ``gpqa``
(GPQA's CSV layout, options shuffled with a fixed seed, ``repeats`` shuffles
per question)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .datasets import Row
from .grading import LETTERS, extract_abcd_with_rule
from .runner import Grade, Item, QuestionEval

CHOICE_TEMPLATE = """{question}

A) {A}
B) {B}
C) {C}
D) {D}

Answer with the letter of the correct option, in the form 'Answer: X'."""


def format_choice_question(question: str, choices: Sequence[str]) -> str:
    """The user message of a multiple-choice question (the template models see)."""
    return CHOICE_TEMPLATE.format(question=question.strip(), **dict(zip(LETTERS, choices)))


class _ChoiceEval(QuestionEval):
    def grade(self, item: Item, text: str) -> Grade:
        letter, rule = extract_abcd_with_rule(text, item.meta["choices"])
        return Grade(score=float(letter == item.correct), extracted=letter, rule=rule)

    def _item(self, index: int, row: Row, repeat: int, question: str, choices, correct, meta):
        return Item(
            index=index,
            id=row.id,
            repeat=repeat,
            messages=({"role": "user", "content": format_choice_question(question, choices)},),
            correct=correct,
            meta={"line": row.line, "choices": list(choices), **meta},
        )


class ABCDEval(_ChoiceEval):
    """Multiple choice with the options in the file's order (the letter is given)."""

    name = "abcd"
    kind = "abcd"

    def make_item(self, index: int, row: Row, repeat: int) -> Item:
        f = row.fields
        meta = {"group": f["group"]} if f.get("group") else {}
        return self._item(index, row, repeat, f["question"], f["choices"], f["answer"], meta)


class GPQAEval(_ChoiceEval):
    """GPQA layout: the correct answer and three incorrect ones, shuffled per
    ``(seed, question, repeat)`` so a run is reproducible whatever ``limit``."""

    name = "gpqa"
    kind = "gpqa"

    def make_item(self, index: int, row: Row, repeat: int) -> Item:
        f = row.fields
        options = [
            f["Correct Answer"].strip(),
            f["Incorrect Answer 1"].strip(),
            f["Incorrect Answer 2"].strip(),
            f["Incorrect Answer 3"].strip(),
        ]
        order = list(range(4))
        random.Random(f"{self.seed}:{row.id}:{repeat}").shuffle(order)
        choices = [options[i] for i in order]
        correct = LETTERS[order.index(0)]
        meta: dict[str, Any] = {"permutation": order}
        if f.get("Subdomain", "").strip():
            meta["group"] = f["Subdomain"].strip()
        return self._item(index, row, repeat, f["Question"], choices, correct, meta)
