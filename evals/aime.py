"""``aime``: integer-answer problems; the answer is read from the last
``\\boxed{}`` (nested braces handled) or else the last number of the reply."""

from __future__ import annotations

from .datasets import Row
from .grading import canonical_number, extract_integer_with_rule
from .runner import Grade, Item, QuestionEval

AIME_TEMPLATE = """{problem}

Put the final answer, an integer, in \\boxed{{}}."""


def format_aime_problem(problem: str) -> str:
    """The user message of an integer-answer problem (the template models see)."""
    return AIME_TEMPLATE.format(problem=problem.strip())


class AIMEEval(QuestionEval):
    """Integer answers (AIME layout), read from the last \\boxed{} or the last number."""

    name = "aime"
    kind = "aime"

    def make_item(self, index: int, row: Row, repeat: int) -> Item:
        return Item(
            index=index,
            id=row.id,
            repeat=repeat,
            messages=({"role": "user", "content": format_aime_problem(row.fields["problem"])},),
            correct=str(row.fields["answer"]),
            meta={"line": row.line, **({"group": g} if (g := row.fields.get("group")) else {})},
        )

    def grade(self, item: Item, text: str) -> Grade:
        value, rule = extract_integer_with_rule(text)
        return Grade(
            score=float(value is not None and value == canonical_number(item.correct)),
            extracted=value,
            rule=rule,
        )
