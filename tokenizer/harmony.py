"""The harmony chat format: render conversations to tokens, parse completions back.

A message renders as::

    <|start|>{role}<|channel|>{channel}<|message|>{content}<|end|>

(the ``<|channel|>{channel}`` part only when a channel is set). A prompt for a
completion ends with ``<|start|>assistant``; the model then writes its header
(e.g. ``<|channel|>final``), ``<|message|>``, the text, and ends its turn with
``<|return|>`` (a final answer) or ``<|call|>`` (a tool call). ``<|end|>``
closes one message inside the turn (e.g. the ``analysis`` channel) and
generation goes on with the next ``<|start|>``.

Roles, channels and contents are always encoded as *ordinary text*: a user who
types ``<|start|>`` gets those characters, never the special token.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mind4_core.errors import ContextOverflowError, TokenizerError

from .specials import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START

ROLES = ("system", "developer", "user", "assistant", "tool")
#: tokens that end the assistant's turn: a final answer or a tool call
STOP_TOKENS = (RETURN, CALL)
CONVERSATION_FORMAT = "mind4-conversation"


def _check_role(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ROLES:
        raise TokenizerError(f"invalid message role {value!r}; allowed: {', '.join(ROLES)}")


def _check_content(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        raise TokenizerError(f"message content must be a string, got {type(value).__name__}")


def _check_channel(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise TokenizerError(
            f"message channel must be a non-empty word such as 'final' or 'analysis', got {value!r}"
        )


@attrs.frozen
class Message:
    """One message: ``role`` (system, developer, user, assistant, tool), text, channel."""

    role: str = attrs.field(validator=_check_role)
    content: str = attrs.field(validator=_check_content)
    channel: str | None = attrs.field(default=None, validator=_check_channel)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.channel is not None:
            data["channel"] = self.channel
        return data


@attrs.define
class Conversation:
    """A list of messages, saved as JSON::

    {"format": "mind4-conversation", "version": 1,
     "messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "Hi"},
                  {"role": "assistant", "channel": "final", "content": "Hello!"}]}
    """

    messages: list[Message] = attrs.field(factory=list)

    def append(self, role: str, content: str, channel: str | None = None) -> Message:
        message = Message(role, content, channel)
        self.messages.append(message)
        return message

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    # JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONVERSATION_FORMAT,
            "version": 1,
            "messages": [m.to_json() for m in self.messages],
        }

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise TokenizerError(f"cannot save conversation to {path}: {exc.strerror}") from None

    @classmethod
    def from_json(cls, data: Any, *, where: str = "conversation") -> Conversation:
        """Validate parsed JSON: a ``{"messages": [...]}`` object (or a bare list)."""
        if isinstance(data, dict):
            unknown = set(data) - {"format", "version", "messages"}
            if unknown:
                raise TokenizerError(f"{where}: unknown fields {sorted(unknown)}")
            if data.get("format", CONVERSATION_FORMAT) != CONVERSATION_FORMAT:
                raise TokenizerError(
                    f"{where}: format {data['format']!r} is not {CONVERSATION_FORMAT!r}"
                )
            if data.get("version", 1) != 1:
                raise TokenizerError(f"{where}: unsupported version {data['version']!r}")
            if "messages" not in data:
                raise TokenizerError(f"{where}: missing field 'messages'")
            data = data["messages"]
        if not isinstance(data, list):
            raise TokenizerError(
                f"{where}: expected an object with a 'messages' list, got {type(data).__name__}"
            )
        messages = []
        for i, item in enumerate(data):
            at = f"{where}: messages[{i}]"
            if not isinstance(item, dict):
                raise TokenizerError(f"{at} must be an object, got {type(item).__name__}")
            unknown = set(item) - {"role", "content", "channel"}
            if unknown:
                raise TokenizerError(f"{at} has unknown fields {sorted(unknown)}")
            for field in ("role", "content"):
                if field not in item:
                    raise TokenizerError(f"{at} is missing {field!r}")
            try:
                messages.append(Message(item["role"], item["content"], item.get("channel")))
            except TokenizerError as exc:
                raise TokenizerError(f"{at}: {exc}") from None
        return cls(messages)

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenizerError(f"cannot read conversation {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise TokenizerError(
                f"{path}: invalid UTF-8 at byte offset {exc.start}; a conversation file is "
                "UTF-8 JSON"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenizerError(
                f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_json(data, where=str(path))


# --------------------------------------------------------------------------- rendering


def render_message(message: Message, tokenizer) -> list[int]:
    """``<|start|>{role}[<|channel|>{channel}]<|message|>{content}<|end|>`` as ids."""
    special = tokenizer.encode_special
    ids = [special(START), *tokenizer.encode(message.role)]
    if message.channel is not None:
        ids += [special(CHANNEL), *tokenizer.encode(message.channel)]
    ids += [special(MESSAGE), *tokenizer.encode(message.content), special(END)]
    return ids


def visible_messages(messages: Sequence[Message]) -> list[Message]:
    """Messages a new prompt shows: assistant ``analysis`` messages (chain of
    thought) are dropped once a later ``final`` answer exists, as harmony asks."""
    last_final = max(
        (i for i, m in enumerate(messages) if m.role == "assistant" and m.channel == "final"),
        default=-1,
    )
    return [
        m
        for i, m in enumerate(messages)
        if not (i < last_final and m.role == "assistant" and m.channel == "analysis")
    ]


def render_for_completion(conversation: Conversation | Iterable[Message], tokenizer) -> list[int]:
    """Render the conversation and ask for the assistant's reply: ``... <|start|>assistant``."""
    messages = list(conversation)
    ids: list[int] = []
    for message in visible_messages(messages):
        ids += render_message(message, tokenizer)
    return [*ids, tokenizer.encode_special(START), *tokenizer.encode("assistant")]


def stop_tokens(tokenizer) -> list[int]:
    """Ids of the tokens that end the assistant's turn (``<|return|>``, ``<|call|>``)."""
    return [tokenizer.encode_special(t) for t in STOP_TOKENS]


def fit_to_budget(
    conversation: Conversation, tokenizer, max_tokens: int
) -> tuple[Conversation, list[Message]]:
    """Drop the oldest turns until the rendered prompt fits ``max_tokens``.

    Leading system/developer messages are always kept; then whole turns (a user
    message and what follows it up to the next user message) are dropped, oldest
    first; the last turn is never dropped. Returns ``(fitted, dropped)``. Raises
    :class:`ContextOverflowError` when even that does not fit.
    """
    messages = list(conversation)
    head = 0
    while head < len(messages) and messages[head].role in ("system", "developer"):
        head += 1
    kept_head, rest = messages[:head], messages[head:]
    # split the rest into turns, each starting at a user message
    turns: list[list[Message]] = []
    for message in rest:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    dropped: list[Message] = []

    def size(turns_left: list[list[Message]]) -> int:
        flat = [m for turn in turns_left for m in turn]
        return len(render_for_completion([*kept_head, *flat], tokenizer))

    # the rendered size is additive per message, so compute each turn's size once
    base = size([])
    turn_sizes = [
        sum(len(render_message(m, tokenizer)) for m in visible_messages(turn)) for turn in turns
    ]
    total = base + sum(turn_sizes)
    while total > max_tokens and len(turns) > 1:
        total -= turn_sizes.pop(0)
        dropped += turns.pop(0)
    if total > max_tokens:
        total = size(turns)
    if total > max_tokens:
        raise ContextOverflowError(
            f"the conversation needs {total} tokens even after dropping every older turn "
            f"(the system prompt and the last message alone), but the budget is {max_tokens}; "
            "shorten the message or the system prompt, or use a model with a longer context"
        )
    return Conversation([*kept_head, *(m for turn in turns for m in turn)]), dropped


# --------------------------------------------------------------------------- parsing


@attrs.frozen
class TextDelta:
    """New text of the message being generated."""

    text: str
    role: str
    channel: str | None


@attrs.frozen
class MessageDone:
    """A finished message; ``stop`` is the token text that ended it
    (``<|end|>``, ``<|return|>``, ``<|call|>``)."""

    message: Message
    stop: str
    header: str = ""  # the raw header text, e.g. " to=functions.f<|constrain|>json"


class HarmonyParser:
    """Turns generated tokens back into messages, one token at a time.

    Start it where the prompt ended (``<|start|>assistant``: ``role="assistant"``,
    in the header) and :meth:`feed` each generated id; each call returns a list
    of events (:class:`TextDelta`, :class:`MessageDone`). After ``<|return|>`` or
    ``<|call|>``, :attr:`done` is true.

    ``strict=False`` (default) tolerates what a small model may emit: text where
    a header or ``<|start|>`` is expected becomes content of the message, and a
    stray ``<|start|>`` ends the current message. ``strict=True`` raises
    :class:`TokenizerError` instead.
    """

    def __init__(self, tokenizer, *, role: str | None = "assistant", strict: bool = False):
        self.tokenizer = tokenizer
        self.strict = strict
        self._special = {
            tokenizer.encode_special(t): t
            for t in (START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL)
        }
        self.messages: list[Message] = []
        self.done = False
        self.stop: str | None = None
        self._reset(role)

    def _reset(self, role: str | None) -> None:
        # state: "start" (expect <|start|>), "header" (role, channel, ... up to
        # <|message|>), "content" (message text up to <|end|>/<|return|>/<|call|>)
        self._state = "start" if role is None else "header"
        self._header = role or ""  # e.g. "assistant<|channel|>analysis"
        self._given_role = role
        self._channel: str | None = None
        self._content: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def role(self) -> str:
        """Role of the message being read: the header's first word (``assistant``
        when it is not a known role)."""
        words = self._header.split(CHANNEL)[0].split(CONSTRAIN)[0].split()
        return words[0] if words and words[0] in ROLES else "assistant"

    @property
    def channel(self) -> str | None:
        return self._channel

    def feed(self, token: int) -> list[TextDelta | MessageDone]:
        """One generated token -> the events it completes (often none or one delta)."""
        if self.done:
            return self._bad(token, "the turn is over (after <|return|> or <|call|>)")
        special = self._special.get(token)
        if special is not None:
            return self._special_token(special, token)
        if self.tokenizer.is_special(token):
            return self._bad(token, "a special token the chat format does not use")
        return self._text(self.tokenizer.token_bytes(token))

    def feed_many(self, tokens: Iterable[int]) -> list[TextDelta | MessageDone]:
        events: list[TextDelta | MessageDone] = []
        for token in tokens:
            events += self.feed(token)
        return events

    def finish(self) -> list[TextDelta | MessageDone]:
        """Generation stopped without a stop token (e.g. max tokens): close the open
        message, if it has begun its content."""
        return self._close("") if self._state == "content" else []

    # internals -------------------------------------------------------------------------

    def _text(self, data: bytes) -> list[TextDelta | MessageDone]:
        if self._state == "header":
            if not self.strict and self._header == self._given_role and not data[:1].isspace():
                # lenient: text straight after "<|start|>assistant" (no header) is content
                self._state = "content"
            else:
                self._header += data.decode("utf-8", errors="replace")
                return []
        if self._state == "start":  # text outside any message
            if self.strict:
                return self._bad(None, f"text {data!r} before <|start|>")
            self._state = "content"  # lenient: an implicit assistant message
        text = self._decoder.decode(data)
        if not text:
            return []  # an incomplete UTF-8 character: wait for its next bytes
        self._content.append(text)
        return [TextDelta(text, self.role, self._channel)]

    def _special_token(self, special: str, token: int) -> list[TextDelta | MessageDone]:
        state = self._state
        if special == START:
            events: list[TextDelta | MessageDone] = []
            if state != "start":
                if self.strict:
                    return self._bad(token, "<|start|> inside a message")
                events = self._close("")
            self._reset("")
            self._given_role = None  # the role is read from the tokens that follow
            return events
        if special in (CHANNEL, CONSTRAIN) and state == "header":
            self._header += special
            return []
        if special == MESSAGE and state == "header":
            self._state = "content"
            self._channel = _channel_of(self._header)
            return []
        if special in (END, RETURN, CALL) and state == "header" and self.strict:
            return self._bad(token, f"{special} before <|message|>")
        if special in (END, RETURN, CALL) and state != "start":
            events = self._close(special)
            if special != END:
                self.done = True
                self.stop = special
            return events
        return self._bad(token, f"{special} where the chat format does not allow it")

    def _close(self, stop: str) -> list[TextDelta | MessageDone]:
        events: list[TextDelta | MessageDone] = []
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._content.append(tail)
            events.append(TextDelta(tail, self.role, self._channel))
        message = Message(self.role, "".join(self._content), self._channel)
        self.messages.append(message)
        events.append(MessageDone(message, stop, self._header))
        self._reset(None)
        return events

    def _bad(self, token: int | None, why: str) -> list[TextDelta | MessageDone]:
        if self.strict:
            raise TokenizerError(f"unexpected token {token} in a harmony completion: {why}")
        return []


def _channel_of(header: str) -> str | None:
    """``"assistant<|channel|>analysis"`` -> ``"analysis"``: the first word after
    ``<|channel|>`` (a recipient or constraint may follow it)."""
    if CHANNEL not in header:
        return None
    words = header.split(CHANNEL, 1)[1].split(CONSTRAIN)[0].split()
    return words[0] if words else None


def parse_completion(tokens: Iterable[int], tokenizer, *, strict: bool = False) -> list[Message]:
    """Messages of a completion that started after ``<|start|>assistant``."""
    parser = HarmonyParser(tokenizer, strict=strict)
    parser.feed_many(tokens)
    parser.finish()
    return parser.messages
