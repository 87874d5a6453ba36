"""Harmony chat format for the in-process sampler: messages -> tokens -> reply.

The canonical implementation is :mod:`mind4_tokenizer.harmony`; this module is
the eval harness's thin adapter so that it depends only on the
:class:`mind4_core.protocols.Tokenizer` protocol (ids of the special tokens and
``encode``/``decode``). It follows REFERENCE.md exactly:

    <|start|>{role}<|channel|>{channel}<|message|>{text}<|end|>   (channel optional)

and a prompt for a completion ends with ``<|start|>assistant``. The
assistant's turn ends with ``<|return|>`` (or ``<|call|>``); ``<|end|>`` only
closes a message inside the turn (e.g. its ``analysis`` channel).
User text is always encoded as ordinary text, never as special tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from mind4_core.errors import TokenizerError

from .types import ROLES, Messages

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
RETURN, CALL, ENDOFTEXT, STARTOFTEXT = "<|return|>", "<|call|>", "<|endoftext|>", "<|startoftext|>"
_NEEDED = (START, END, MESSAGE, CHANNEL, RETURN)


def _special(tokenizer, text: str) -> int:
    specials: Mapping[str, int] = getattr(tokenizer, "special_tokens", {}) or {}
    if text not in specials:
        raise TokenizerError(
            f"tokenizer {getattr(tokenizer, 'name', tokenizer)!r} has no special token {text}; "
            "the chat evals need the harmony special tokens "
            f"({', '.join(_NEEDED)}). Use a Mind 4 encoding or o200k_harmony."
        )
    return int(specials[text])


def render_prompt(tokenizer, messages: Messages) -> list[int]:
    """Token ids of ``messages`` followed by ``<|start|>assistant`` (ready to complete)."""
    start, end = _special(tokenizer, START), _special(tokenizer, END)
    msg, chan = _special(tokenizer, MESSAGE), _special(tokenizer, CHANNEL)
    ids: list[int] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            raise TokenizerError(
                f"message {i} has role {role!r}; allowed roles: {', '.join(ROLES)}"
            )
        ids.append(start)
        ids += tokenizer.encode(role)
        if m.get("channel"):
            ids.append(chan)
            ids += tokenizer.encode(m["channel"])
        ids.append(msg)
        ids += tokenizer.encode(m.get("content") or "")
        ids.append(end)
    ids.append(start)
    ids += tokenizer.encode("assistant")
    return ids


def stop_tokens(tokenizer) -> list[int]:
    """Tokens that end the assistant's turn: ``<|return|>``, ``<|call|>``, ``<|endoftext|>``."""
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    return [int(specials[t]) for t in (RETURN, CALL, ENDOFTEXT) if t in specials]


@attrs.frozen
class ParsedReply:
    """What the assistant said: its final answer and every message of the turn."""

    #: the ``final`` channel's text; else the last message's; else all plain text
    text: str
    #: ``(channel or None, text)`` for each message of the turn, in order
    messages: tuple[tuple[str | None, str], ...]
    #: the completion decoded with its special tokens visible (for reports)
    raw: str


def parse_completion(tokenizer, tokens: Sequence[int]) -> ParsedReply:
    """Split generated tokens (after ``<|start|>assistant``) into messages.

    Grammar of a turn: ``[<|channel|> name] <|message|> text (<|end|> |
    <|return|> | <|call|>)``, messages separated by ``<|start|>assistant``.
    A model that never writes the markup gets its plain text back as ``text``.
    """
    specials = {int(v): k for k, v in (getattr(tokenizer, "special_tokens", {}) or {}).items()}
    messages: list[tuple[str | None, str]] = []
    plain: list[int] = []  # every non-special token, for models that skip the markup
    field, channel, buf = "header", None, []  # field: header | channel | text
    raw_parts: list[str] = []
    run: list[int] = []

    def flush_raw() -> None:
        if run:
            raw_parts.append(tokenizer.decode(run))
            run.clear()

    def close() -> None:
        nonlocal field, channel, buf
        if field == "text":
            messages.append((channel, tokenizer.decode(buf)))
        field, channel, buf = "header", None, []

    for t in tokens:
        t = int(t)
        name = specials.get(t)
        if name is None:
            run.append(t)
            plain.append(t)
            if field in ("channel", "text"):
                buf.append(t)
            continue
        flush_raw()
        raw_parts.append(name)
        if name == CHANNEL:
            field, buf = "channel", []
        elif name == MESSAGE:
            if field == "channel":
                channel = tokenizer.decode(buf).strip() or None
            field, buf = "text", []
        elif name in (END, RETURN, CALL, START, ENDOFTEXT):
            close()
            if name in (RETURN, CALL, ENDOFTEXT):
                break
    flush_raw()
    close()
    finals = [text for ch, text in messages if ch == "final"]
    if finals:
        text = finals[-1]
    elif messages:
        text = messages[-1][1]
    else:
        text = tokenizer.decode(plain)
    return ParsedReply(text=text.strip(), messages=tuple(messages), raw="".join(raw_parts))
