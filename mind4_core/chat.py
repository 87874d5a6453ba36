"""``mind4 chat``: a multi-turn conversation in the harmony format.

Each turn renders the whole conversation (system prompt from ``main.md`` or
``--system``), reuses the KV cache of the prefix it shares with the previous
turn, and streams the assistant's reply as the harmony parser recognises it.
When the conversation outgrows the context, the oldest turns are dropped with
a notice; user text is always encoded as ordinary text.

Commands: ``/reset`` (forget the history), ``/save FILE`` (write the
conversation as JSON), ``/exit`` (or end of input).
"""

from __future__ import annotations

from pathlib import Path

import click

from .config import SamplingParams
from .errors import ContextOverflowError, Mind4Error

DEFAULT_SYSTEM = "You are Mind 4, a small language model running locally. Answer briefly."


def default_system_prompt() -> str:
    """``main.md`` from the working directory or the repository, else a built-in line."""
    for candidate in (Path.cwd() / "main.md", Path(__file__).resolve().parents[1] / "main.md"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    return DEFAULT_SYSTEM


def run_chat(
    model,
    params: SamplingParams,
    *,
    system: str | None = None,
    load_path: str | None = None,
    input_fn=input,
    echo=click.echo,
) -> None:
    from mind4_tokenizer.harmony import (
        Conversation,
        HarmonyParser,
        MessageDone,
        TextDelta,
        fit_to_budget,
        stop_tokens,
    )

    tokenizer = model.tokenizer
    if load_path:
        conversation = Conversation.load(load_path)
    else:
        conversation = Conversation()
        conversation.append("system", system if system is not None else default_system_prompt())
    session = model.session()
    budget = session.max_tokens - params.max_new_tokens
    if budget <= 0:
        raise Mind4Error(
            f"max_new_tokens ({params.max_new_tokens}) leaves no room for the conversation in a "
            f"context of {session.max_tokens} tokens; lower --max-new-tokens"
        )
    # <|end|> closes the final message: the turn is over for this chat
    stops = (
        set(stop_tokens(tokenizer))
        | set(model.stop_tokens())
        | {tokenizer.encode_special("<|end|>")}
    )
    echo(f"mind4 chat: {model.backend}/{model.device}/{model.dtype}. /reset, /save FILE, /exit.")
    while True:
        try:
            line = input_fn("you> ")
        except EOFError:
            echo("")
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            conversation = Conversation(
                conversation.messages[:1]
                if conversation.messages and conversation.messages[0].role == "system"
                else []
            )
            echo("(history cleared)")
            continue
        if text.startswith("/save"):
            target = text[len("/save") :].strip()
            if not target:
                echo("usage: /save FILE")
                continue
            conversation.save(target)
            echo(f"(saved {len(conversation)} messages to {target})")
            continue
        conversation.append("user", line)
        try:
            conversation, dropped = fit_to_budget(conversation, tokenizer, budget)
        except ContextOverflowError as exc:
            conversation.messages.pop()
            echo(f"(not sent: {exc})")
            continue
        if dropped:
            echo(f"(context full: dropped the {len(dropped)} oldest messages)")
        # The reply's header is given, not generated: the model writes the final
        # channel's text directly (a small model trained on plain text never learns
        # to emit a harmony header of its own).
        header = _final_header(tokenizer)
        session.reset(_render(conversation, tokenizer) + header)
        parser = HarmonyParser(tokenizer)
        for token in header:
            parser.feed(token)
        echo("mind4> ", nl=False)
        reply: list[str] = []
        finished = None
        for event in _reply_events(session, params, stops, parser):
            if isinstance(event, TextDelta) and event.channel in (None, "final"):
                echo(event.text, nl=False)
                reply.append(event.text)
            elif isinstance(event, MessageDone) and event.message.channel in (None, "final"):
                finished = event.message
        echo("")
        content = finished.content if finished is not None else "".join(reply)
        conversation.append("assistant", content, "final")


def _reply_events(session, params: SamplingParams, stops: set[int], parser):
    """Parser events of the reply, streamed: each token's events come before the next token."""
    for token in session.generate(params, stop_tokens=stops):
        yield from parser.feed(token)
    yield from parser.finish()


def _final_header(tokenizer) -> list[int]:
    """``<|channel|>final<|message|>``: what follows ``<|start|>assistant`` for a final answer."""
    return [
        tokenizer.encode_special("<|channel|>"),
        *tokenizer.encode("final"),
        tokenizer.encode_special("<|message|>"),
    ]


def _render(conversation, tokenizer) -> list[int]:
    from mind4_tokenizer.harmony import render_for_completion

    return render_for_completion(conversation, tokenizer)
