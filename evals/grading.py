"""Answer extraction from free text: multiple-choice letters and integers.

Models answer in every style: ``Answer: C``, ``**C**``, ``\\boxed{C}``, ``The
answer is (C).``, a bare ``C`` on the last line, a restated option ``C) 42``.
The extractors try rules from the most explicit to the least, and within a
rule take the *last* occurrence (a model that changes its mind ends with its
final answer). Each returns the rule that matched so a report can show why.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

LETTERS = "ABCD"

# -- helpers --------------------------------------------------------------------------


def _normalize(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII), unify dashes/quotes."""
    text = unicodedata.normalize("NFKC", text)
    return text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", "-")


def find_boxed(text: str) -> list[str]:
    r"""Contents of every ``\boxed{...}`` / ``\fbox{...}``, nested braces balanced.

    ``\boxed{\frac{1}{2}}`` -> ``["\frac{1}{2}"]``. An unclosed box is ignored.
    """
    found: list[str] = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def _strip_latex(s: str) -> str:
    r"""``\text{B}`` -> ``B``, ``\mathbf{(C)}`` -> ``(C)``, drop ``$`` and ``\,``."""
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|textrm|mbox|bf|it)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", "").replace("\\,", "").replace("\\!", "").replace("\\ ", " ")
    return s.strip()


# -- multiple choice (A-D) ---------------------------------------------------------------

# A letter standing alone: not part of a word ("Apple", "B12") and not a contraction.
_L = r"(?<![A-Za-z0-9'])([A-D])(?![A-Za-z0-9'])"
# "A or B", "A/B", "A and C": a hedge, not an answer.
_HEDGE = re.compile(r"^\W*([A-Da-d])\W*(?:or|and|/|,)\s*\W*([A-Da-d])(?![A-Za-z0-9])", re.I)

_VERBS = r"\s*(?:is|would\s+be|will\s+be|should\s+be|must\s+be|=|:|-)?\s*"
# "answer"-like markers are trusted over a mere mention of an "option".
_STRONG_MARKERS = re.compile(
    r"(?:final\s+answer|correct\s+answer|best\s+answer|correct\s+option|correct\s+choice|"
    r"answer\s+choice|answer)" + _VERBS + r"(?:option|choice|letter)?\s*:?\s*",
    re.I,
)
_WEAK_MARKERS = re.compile(r"(?:option|choice)\s*:?\s*", re.I)


_HEDGED = "?"


def _letter_at(rest: str) -> str | None:
    """The letter that opens ``rest`` (after markdown/brackets); ``"?"`` if it hedges."""
    rest = _strip_latex(rest)
    rest = rest.lstrip(" *_`\"'([{<:")
    if _HEDGE.match(rest):
        return _HEDGED
    m = re.match(r"([A-D])(?![A-Za-z0-9'])", rest)
    if m is None:  # lower case only when nothing but punctuation follows: "answer: (c)."
        m = re.match(r"([a-d])(?=\s*(?:[).:,;!*_`\]}]|$))", rest)
    return m.group(1).upper() if m else None


def _last_after(pattern: re.Pattern[str], text: str) -> str | None:
    found = None
    for m in pattern.finditer(text):
        letter = _letter_at(text[m.end() : m.end() + 40])
        if letter:
            found = letter
    return found


def _rule_marker(text: str) -> str | None:
    """``Answer: C``, ``**Answer:** (c)``, ``The correct answer is B.``"""
    return _last_after(_STRONG_MARKERS, text)


def _rule_option(text: str) -> str | None:
    """``Option D is correct``, ``I pick choice B``."""
    return _last_after(_WEAK_MARKERS, text)


def _rule_boxed(text: str) -> str | None:
    found = None
    for content in find_boxed(text):
        letter = _letter_at(content)
        if letter == _HEDGED:
            found = letter
        elif letter and len(re.sub(r"[^A-Za-z]", "", _strip_latex(content))) <= 1:
            found = letter
        elif letter and re.fullmatch(r"\W*[A-Da-d]\W*[).:]\s*.*", _strip_latex(content)):
            found = letter  # \boxed{B) 42}
    return found


def _rule_bold(text: str) -> str | None:
    """``**C**``, ``__C__``, ``**(C)**``, ``**C)** 42``."""
    found = None
    for m in re.finditer(r"(\*\*|__)\s*\(?([A-D])\)?[.:)]?\s*\1", text):
        found = m.group(2)
    return found


def _rule_only_letter(text: str) -> str | None:
    """The whole reply is one letter, maybe dressed: ``C``, ``(C)``, ``C.``, ``*C*``."""
    core = re.sub(r"[\s*_`'\"().\[\]:!]", "", _strip_latex(text))
    return core.upper() if len(core) == 1 and core.upper() in LETTERS else None


def _rule_option_line(text: str) -> str | None:
    """A line that restates an option: ``C) 42`` or ``(C) 42`` or ``C. 42``; last one."""
    found = None
    lines = [ln.strip(" *_>#-\t") for ln in text.splitlines() if ln.strip()]
    for line in lines:
        m = re.match(r"\(?([A-D])\s*[).:]\s+\S", line)
        if m:
            found = m.group(1)
    return found


def _rule_trailing(text: str) -> str | None:
    """A capital letter standing alone at the very end: ``... so it is C.``"""
    m = re.search(_L + r"[\W_]*$", text.strip())
    return m.group(1) if m else None


def _rule_choice_text(text: str, choices: Sequence[str] | None) -> str | None:
    """No letter at all, but the reply is (or ends with) exactly one option's text."""
    if not choices:
        return None
    reply = _normalize_answer(text)
    exact = [LETTERS[i] for i, c in enumerate(choices) if _normalize_answer(c) == reply]
    if len(exact) == 1:
        return exact[0]
    last_line = _normalize_answer(text.strip().splitlines()[-1]) if text.strip() else ""
    tail = [LETTERS[i] for i, c in enumerate(choices) if _normalize_answer(c) == last_line]
    return tail[0] if len(tail) == 1 else None


def _normalize_answer(s: str) -> str:
    s = _strip_latex(_normalize(s)).lower()
    s = re.sub(r"\*\*|__|`", "", s)
    return re.sub(r"\s+", " ", s).strip(" .!")


ABCD_RULES = (
    "marker",
    "boxed",
    "option",
    "bold",
    "only_letter",
    "option_line",
    "trailing",
    "choice_text",
)


def extract_abcd_with_rule(
    text: str | None, choices: Sequence[str] | None = None
) -> tuple[str | None, str | None]:
    """``(letter, rule)`` of the answer in ``text``, or ``(None, None)``.

    Rules in order: an explicit marker (``Answer:``, ``the answer is``),
    ``\\boxed{}``, ``Option X`` / ``choice X``, bold, a reply that is only a letter, a line
    restating an option, a trailing standalone capital, and finally — when
    ``choices`` are given — a reply equal to exactly one option's text.
    A hedge such as ``A or B`` counts as no answer.
    """
    if not text or not text.strip():
        return None, None
    text = _normalize(text)
    for rule, fn in (
        ("marker", _rule_marker),
        ("boxed", _rule_boxed),
        ("option", _rule_option),
        ("bold", _rule_bold),
        ("only_letter", _rule_only_letter),
        ("option_line", _rule_option_line),
        ("trailing", _rule_trailing),
    ):
        letter = fn(text)
        if letter == _HEDGED:
            return None, "hedge"
        if letter:
            return letter, rule
    letter = _rule_choice_text(text, choices)
    return (letter, "choice_text") if letter else (None, None)


def extract_abcd(text: str | None, choices: Sequence[str] | None = None) -> str | None:
    """The answer letter A–D in ``text``, or ``None``; see :func:`extract_abcd_with_rule`."""
    return extract_abcd_with_rule(text, choices)[0]


# -- integers (AIME) --------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?![\d,]*\d)(?:\.\d+)?|-?\d+(?:\.\d+)?")


def canonical_number(s: str) -> str | None:
    """``"042"`` -> ``"42"``, ``"1,000"`` -> ``"1000"``, ``"7.0"`` -> ``"7"``,
    ``"3.5"`` -> ``"3.5"``; ``None`` when ``s`` holds no number."""
    s = _strip_latex(_normalize(s)).replace("{,}", ",")
    s = re.sub(r"\\(?:dfrac|frac)\{(-?\d+)\}\{(-?\d+)\}", r"\1/\2", s)
    nums = _NUMBER.findall(s)
    if not nums:
        return None
    raw = nums[-1].replace(",", "")
    if "." in raw:
        whole, frac = raw.split(".")
        if frac.strip("0"):
            return raw.rstrip("0")
        raw = whole
    try:
        return str(int(raw))
    except ValueError:
        return None


def extract_integer_with_rule(text: str | None) -> tuple[str | None, str | None]:
    r"""``(answer, rule)``: from the last ``\boxed{}`` (nested braces handled)
    if there is one, else the last number in the text; ``(None, None)`` if
    neither. Integers come back canonical (``"042"`` -> ``"42"``)."""
    if not text:
        return None, None
    text = _normalize(text)
    boxes = find_boxed(text)
    if boxes:
        value = canonical_number(boxes[-1])
        if value is not None:
            return value, "boxed"
    value = canonical_number(text)
    return (value, "last_number") if value is not None else (None, None)


def extract_integer(text: str | None) -> str | None:
    """The integer answer in ``text`` as a canonical string, or ``None``."""
    return extract_integer_with_rule(text)[0]
