"""Answer extraction: a table of real-looking replies and what must come out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mind4_evals.grading import (
    canonical_number,
    extract_abcd,
    extract_abcd_with_rule,
    extract_integer,
    extract_integer_with_rule,
    find_boxed,
)

# (reply, expected letter or None)
ABCD_TABLE = [
    # explicit markers
    ("Answer: C", "C"),
    ("answer: c", "C"),
    ("Answer:C", "C"),
    ("ANSWER: (B)", "B"),
    ("**Answer:** D", "D"),
    ("**Answer: A**", "A"),
    ("Answer: **B**", "B"),
    ("The answer is B.", "B"),
    ("The correct answer is (D).", "D"),
    ("The correct answer is: C) 3.2 eV", "C"),
    ("I believe the final answer is A", "A"),
    ("Final answer: B", "B"),
    ("### Final Answer\n\nC", "C"),
    ("The best answer would be option D, since the others fail.", "D"),
    ("Correct option: (a)", "A"),
    ("Answer - B", "B"),
    ("answer = D", "D"),
    ("Option C is correct.", "C"),
    ("Answer: C\nOption A is wrong because it is too small.", "C"),
    ("The answer is a bit tricky, but B.", "B"),
    ("**Answer**: C", "C"),
    ("Answer:\n\nB", "B"),
    ("My answer: the second one, B", "B"),
    ("The answer is $\\boxed{\\text{(B)}}$", "B"),
    ("Let me think.\nA seems plausible but B fits better.\nAnswer: B", "B"),
    # several candidates: the last explicit one wins
    ("Answer: A\n\nWait, I made an error in step 2.\n\nAnswer: C", "C"),
    ("First I thought the answer is B, but the correct answer is D.", "D"),
    # hedges are not answers
    ("Answer: A or B", None),
    ("The answer is A/B, I cannot tell.", None),
    # boxed
    ("Therefore $\\boxed{B}$.", "B"),
    ("\\boxed{\\text{C}}", "C"),
    ("\\boxed{\\textbf{(A)}}", "A"),
    ("So the result is \\boxed{D) 12}", "D"),
    ("First \\boxed{A}, no wait: \\boxed{C}", "C"),
    # bold
    ("The correct choice here is clearly **C**.", "C"),
    ("**(B)** 42 apples", "B"),
    ("After elimination: __D__", "D"),
    # only a letter
    ("B", "B"),
    ("(C)", "C"),
    ("D.", "D"),
    ("  a  ", "A"),
    ("`A`", "A"),
    ("Ｃ", "C"),  # full-width
    # restating an option
    ("C) 17", "C"),
    ("(B) The mitochondria", "B"),
    ("The options are tricky.\nB. 128", "B"),
    ("- A) too small\n- D) just right", "D"),
    # trailing letter
    ("After computing 7 * 6 = 42, which matches option C", "C"),
    ("Counting again gives 9, so it is B.", "B"),
    ("hmm... D", "D"),
    # no answer at all
    ("", None),
    ("   ", None),
    ("I don't know.", None),
    ("Apples and bananas are both fruit.", None),
    ("The value is 42.", None),
    ("E", None),
    ("Answer: E", None),
    # words starting with A-D are not answers
    ("Because Dogs bark.", None),
    ("Bad question", None),
]


@pytest.mark.parametrize(("reply", "expected"), ABCD_TABLE, ids=[r[:30] for r, _ in ABCD_TABLE])
def test_extract_abcd_table(reply, expected):
    assert extract_abcd(reply) == expected


def test_extract_abcd_reports_the_rule():
    assert extract_abcd_with_rule("Answer: B") == ("B", "marker")
    assert extract_abcd_with_rule("\\boxed{C}") == ("C", "boxed")
    assert extract_abcd_with_rule("It is **A** for sure") == ("A", "bold")
    assert extract_abcd_with_rule("nothing") == (None, None)


def test_extract_abcd_falls_back_to_choice_text():
    choices = ["12", "15", "17", "21"]
    assert extract_abcd("17", choices) == "C"
    assert extract_abcd("We add them.\n21", choices) == "D"
    assert extract_abcd("17", None) is None
    # ambiguous text matches nothing
    assert extract_abcd("5", ["5", "5", "6", "7"]) is None


# (reply, expected canonical integer or None)
INTEGER_TABLE = [
    ("The answer is \\boxed{42}.", "42"),
    ("\\boxed{042}", "42"),
    ("First \\boxed{7}, corrected: \\boxed{9}", "9"),
    ("\\boxed{\\text{the answer is } 315}", "315"),
    ("$\\boxed{\\frac{a}{b} = 12}$", "12"),
    ("\\boxed{1{,}000}", "1000"),
    ("We get 3 + 4 = 7", "7"),
    ("So n = 1,024.", "1024"),
    ("The count is 12.0", "12"),
    ("It equals -5", "-5"),
    ("x is 3.5", "3.5"),
    ("Answer: 17. (I checked twice.)", "17"),
    ("no number here", None),
    ("", None),
    ("\\boxed{}", None),
    ("\\boxed{x} and then 12", "12"),
    ("unclosed \\boxed{12", "12"),
]


@pytest.mark.parametrize(
    ("reply", "expected"), INTEGER_TABLE, ids=[r[:30] for r, _ in INTEGER_TABLE]
)
def test_extract_integer_table(reply, expected):
    assert extract_integer(reply) == expected


def test_extract_integer_rule():
    assert extract_integer_with_rule("\\boxed{5} then 6") == ("5", "boxed")
    assert extract_integer_with_rule("5 then 6") == ("6", "last_number")


def test_find_boxed_nested():
    assert find_boxed(r"\boxed{\frac{1}{2}} and \fbox{a{b{c}}}") == [r"\frac{1}{2}", "a{b{c}}"]
    assert find_boxed(r"\boxed{open") == []


@given(st.integers(min_value=-(10**9), max_value=10**9), st.text(alphabet="abc xyz.", max_size=20))
def test_integer_round_trips_through_boxed_and_prose(n, prose):
    assert extract_integer(f"{prose} \\boxed{{{n}}}") == str(n)
    assert extract_integer(f"{prose} so the total is {n}") == str(n)
    assert canonical_number(f"{n:,}") == str(n)


@given(st.sampled_from("ABCD"), st.sampled_from(["Answer: {}", "**{}**", "\\boxed{{{}}}", "({})"]))
def test_letter_round_trips_through_every_style(letter, style):
    assert extract_abcd("Some reasoning first.\n" + style.format(letter)) == letter
