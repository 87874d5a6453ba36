"""Harmony chat format for the in-process sampler: messages -> tokens -> reply.

The canonical implementation is :mod:`mind4_tokenizer.harmony`, used whenever
the tokenizer is one of its own (it has ``encode_special``). For any other
tokenizer that only meets the :class:`mind4_core.protocols.Tokenizer` protocol
(a third-party encoding), this module renders and parses the same format
itself (a test checks both paths agree). The format (REFERENCE.md):

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


def _harmony_for(tokenizer):
    """:mod:`mind4_tokenizer.harmony` if it can drive ``tokenizer``, else ``None``."""
    if not all(hasattr(tokenizer, a) for a in ("encode_special", "is_special", "token_bytes")):
        return None
    try:
        from mind4_tokenizer import harmony
    except ImportError:  # pragma: no cover - mind4 ships it
        return None
    return harmony


def render_prompt(tokenizer, messages: Messages) -> list[int]:
    """Token ids of ``messages`` followed by ``<|start|>assistant`` (ready to complete)."""
    harmony = _harmony_for(tokenizer)
    if harmony is not None:
        conversation = [
            harmony.Message(m.get("role"), m.get("content") or "", m.get("channel") or None)
            for m in messages
        ]
        return harmony.render_for_completion(conversation, tokenizer)
    return render_prompt_plain(tokenizer, messages)


def render_prompt_plain(tokenizer, messages: Messages) -> list[int]:
    """:func:`render_prompt` for a tokenizer that only meets the protocol."""
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


def _reply(messages: list[tuple[str | None, str]], raw: str, fallback: str) -> ParsedReply:
    finals = [text for ch, text in messages if ch == "final"]
    text = finals[-1] if finals else messages[-1][1] if messages else fallback
    return ParsedReply(text=text.strip(), messages=tuple(messages), raw=raw)


def _raw(tokenizer, tokens: Sequence[int]) -> str:
    """The completion as text with its special tokens spelled out, up to the stop."""
    specials = {int(v): k for k, v in (getattr(tokenizer, "special_tokens", {}) or {}).items()}
    parts: list[str] = []
    run: list[int] = []
    for t in map(int, tokens):
        if t not in specials:
            run.append(t)
            continue
        if run:
            parts.append(tokenizer.decode(run))
            run = []
        parts.append(specials[t])
        if specials[t] in (RETURN, CALL, ENDOFTEXT):
            break
    else:
        if run:
            parts.append(tokenizer.decode(run))
    return "".join(parts)


def parse_completion(tokenizer, tokens: Sequence[int]) -> ParsedReply:
    """The assistant's reply in generated tokens (after ``<|start|>assistant``):
    the ``final`` channel's text, else the last message's, else ``""``."""
    harmony = _harmony_for(tokenizer)
    if harmony is None:
        return parse_completion_plain(tokenizer, tokens)
    eot = (getattr(tokenizer, "special_tokens", {}) or {}).get(ENDOFTEXT)
    tokens = list(map(int, tokens))
    if eot is not None and eot in tokens:  # <|endoftext|> also ends the turn
        tokens = tokens[: tokens.index(eot)]
    parsed = harmony.parse_completion(tokens, tokenizer)
    return _reply([(m.channel, m.content) for m in parsed], _raw(tokenizer, tokens), "")


def parse_completion_plain(tokenizer, tokens: Sequence[int]) -> ParsedReply:
    """Split generated tokens (after ``<|start|>assistant``) into messages.

    Grammar of a turn: ``[<|channel|> name] <|message|> text (<|end|> |
    <|return|> | <|call|>)``, messages separated by ``<|start|>assistant``.
    A model that never writes the markup gets its plain text back as ``text``.
    """
    specials = {int(v): k for k, v in (getattr(tokenizer, "special_tokens", {}) or {}).items()}
    messages: list[tuple[str | None, str]] = []
    plain: list[int] = []  # every non-special token, for models that skip the markup
    field, channel, buf = "header", None, []  # field: header | channel | text

    def close() -> None:
        nonlocal field, channel, buf
        if field == "text":
            messages.append((channel, tokenizer.decode(buf)))
        field, channel, buf = "header", None, []

    for t in map(int, tokens):
        name = specials.get(t)
        if name is None:
            plain.append(t)
            if field in ("channel", "text"):
                buf.append(t)
            continue
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
    close()
    return _reply(messages, _raw(tokenizer, tokens), tokenizer.decode(plain))
