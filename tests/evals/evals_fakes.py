"""Fakes for the eval tests: a byte tokenizer, a Model that "solves" the synthetic
questions (with deterministic mistakes), and a plain function sampler. No torch."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import numpy as np
from mind4_evals.types import Messages, SamplerBase, SamplerResponse

SPECIALS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
)


class ByteTokenizer:
    """UTF-8 bytes are tokens 0..255; the harmony specials follow."""

    name = "bytes+harmony"

    def __init__(self):
        self.special_tokens = {t: 256 + i for i, t in enumerate(SPECIALS)}
        self.n_vocab = 256 + len(SPECIALS)
        self._by_id = {v: k for k, v in self.special_tokens.items()}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return b"".join(
            self._by_id[i].encode() if i in self._by_id else bytes([i]) for i in map(int, ids)
        )

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def special(self, text: str) -> int:
        return self.special_tokens[text]

    # what mind4_tokenizer's Tokenizer adds to the protocol (used by its harmony module)
    def encode_special(self, text: str) -> int:
        return self.special_tokens[text]

    def is_special(self, token: int) -> bool:
        return token in self._by_id

    def token_bytes(self, token: int) -> bytes:
        return self.decode_bytes([token])


class ProtocolTokenizer(ByteTokenizer):
    """Only the Tokenizer protocol: the harness must use its own harmony path."""

    encode_special = is_special = token_bytes = None

    def __getattribute__(self, name):
        if name in ("encode_special", "is_special", "token_bytes"):
            raise AttributeError(name)
        return super().__getattribute__(name)


@attrs.frozen
class FakeModelConfig:
    vocab_size: int = 265
    max_context_length: int = 4096


def solve(question: str) -> int | None:
    """The true answer of a synthetic question, read from its text."""
    m = re.search(r"What is \((\d+) \+ (\d+)\) \* (\d+)\?", question)
    if m:
        a, b, c = map(int, m.groups())
        return (a + b) * c
    m = re.search(r"What is (\d+) ([-+*]) (\d+)\?", question)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return {"+": a + b, "-": a - b, "*": a * b}[op]
    m = re.search(r"comes next: ([\d, ]+), \.\.\.\?", question)
    if m:
        seq = [int(x) for x in m.group(1).split(",")]
        return seq[-1] + (seq[1] - seq[0])
    return None


def wrong_on(text: str, rate: float) -> bool:
    """Deterministic per-question coin: the fake model errs on this question."""
    h = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    return (h % 1000) / 1000 < rate


def answer_text(user: str, error_rate: float) -> str:
    """What a decent small model would reply to a synthetic prompt."""
    question = user.split("\n\n")[0]
    value = solve(question)
    if value is None:
        return "Hello! I am a fake model."
    if wrong_on(question, error_rate):
        value += 1
    if "A) " in user:
        options = dict(re.findall(r"^([A-D])\) (.*)$", user, flags=re.M))
        letter = next((k for k, v in options.items() if v == str(value)), "A")
        return f"Answer: {letter}"
    return f"\\boxed{{{value}}}"


class FakeModel:
    """Quacks like ``mind4_core.engine.Model`` for the eval harness.

    ``logits`` is a fixed random bigram table (so perplexity is well defined
    and checkable); ``generate`` reads the rendered harmony prompt back,
    answers the last user question and wraps it in harmony markup.
    """

    backend = "fake"
    device = "cpu"
    dtype = "float32"
    checkpoint = None
    component_names = {}

    def __init__(
        self, *, error_rate: float = 0.2, seed: int = 0, context: int = 4096, fail_on=None
    ):
        self.tokenizer = ByteTokenizer()
        self.model_config = FakeModelConfig(max_context_length=context)
        rng = np.random.default_rng(seed)
        self.table = rng.standard_normal((265, 265)).astype(np.float32) * 2  # (V, V)
        self.error_rate = error_rate
        self.fail_on = fail_on  # substring of a prompt that makes generation raise
        self.calls: list[tuple[str, int]] = []

    def logits(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)  # (B, T)
        self.calls.append(("logits", tokens.shape[0]))
        return self.table[tokens]  # (B, T, V)

    def _complete(self, prompt: Sequence[int], max_new: int) -> list[int]:
        tok = self.tokenizer
        text = tok.decode(prompt)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError(f"engine exploded on {self.fail_on!r}")
        users = re.findall(r"<\|start\|>user<\|message\|>(.*?)<\|end\|>", text, flags=re.S)
        reply = answer_text(users[-1] if users else "", self.error_rate)
        out = [tok.special("<|channel|>"), *tok.encode("final"), tok.special("<|message|>")]
        out += tok.encode(reply) + [tok.special("<|return|>")]
        return out[:max_new]

    def generate(self, prompt, params=None, *, stop_tokens=None, stream=False):
        self.calls.append(("generate", 1))
        return self._complete(prompt, params.max_new_tokens)

    def generate_batch(self, prompts, params=None, *, stop_tokens=None):
        self.calls.append(("generate_batch", len(prompts)))
        return [self._complete(p, params.max_new_tokens) for p in prompts]


class FunctionSampler(SamplerBase):
    """A sampler from a function of the last user message; records batch sizes."""

    def __init__(self, fn: Callable[[str], str], batch_size: int = 4):
        self.fn = fn
        self.batch_size = batch_size
        self.name = "function"
        self.batches: list[int] = []

    def __call__(self, messages: Messages) -> SamplerResponse:
        user = [m["content"] for m in messages if m["role"] == "user"][-1]
        text = self.fn(user)
        return SamplerResponse(text=text, prompt_tokens=len(user), completion_tokens=len(text))

    def sample_batch(self, batch):
        self.batches.append(len(batch))
        return super().sample_batch(batch)


def oracle(error_rate: float = 0.0) -> Callable[[str], str]:
    return lambda user: answer_text(user, error_rate)


# -- a fake OpenAI-compatible chat-completions server on 127.0.0.1 --------------------------


class ChatHandler(BaseHTTPRequestHandler):
    server: FakeChatServer

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        user = body["messages"][-1]["content"]
        mode = self.server.mode
        if mode == "flaky" and self.server.failures_left > 0:
            self.server.failures_left -= 1
            return self._send(503, b'{"error": "busy"}')
        if mode == "bad_request" or "please 400" in user:
            return self._send(400, b'{"error": {"message": "max_tokens too large"}}')
        if mode == "not_json":
            return self._send(200, b"<html>proxy error</html>")
        if mode == "no_choices":
            return self._send(200, b'{"object": "chat.completion"}')
        answer = self.server.answer(user) if self.server.answer else f"echo: {user}"
        reply = {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "logprobs": {"content": [{"token": "e", "logprob": -0.5}]},
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        self._send(200, json.dumps(reply).encode())

    def _send(self, code: int, payload: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests: list = []
        self.mode = "ok"
        self.failures_left = 0
        #: optional function of the last user message -> reply text
        self.answer = None

    def __enter__(self):
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"
