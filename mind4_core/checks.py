"""Value checks shared by every configuration (``config.json`` and ``train.yaml``).

A check takes a value and raises ``ValueError("expected ...")`` (or
``"allowed: ..."``) when it does not fit; the caller turns that into a
:class:`~mind4_core.errors.ConfigError` that names the file and field.
``bool`` is never accepted as a number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], None]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(value: Any) -> None:
    if not (is_int(value) and value > 0):
        raise ValueError("expected a positive integer")


def non_negative_int(value: Any) -> None:
    if not (is_int(value) and value >= 0):
        raise ValueError("expected an integer >= 0")


def positive_number(value: Any) -> None:
    if not (is_number(value) and value > 0):
        raise ValueError("expected a finite number > 0")


def non_negative_number(value: Any) -> None:
    if not (is_number(value) and value >= 0):
        raise ValueError("expected a finite number >= 0")


def number_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(value: Any) -> None:
        ok = is_number(value) and (value > lo if lo_open else value >= lo)
        ok = ok and (value < hi if hi_open else value <= hi)
        if not ok:
            raise ValueError(
                f"expected a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            )

    return check


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> None:
        if isinstance(value, bool) or value not in choices:
            raise ValueError(f"allowed: {', '.join(repr(c) for c in choices)}")

    return check


def boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")


def non_empty_str(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")


def optional(check: Check) -> Check:
    """``check``, or ``None``."""

    def inner(value: Any) -> None:
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{exc} or null") from None

    return inner


def str_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of non-empty strings")


def device_name(value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError("allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
