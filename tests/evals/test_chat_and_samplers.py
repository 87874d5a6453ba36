"""The harmony adapter, the engine sampler over a fake Model, and the HTTP sampler
against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evals_fakes import ByteTokenizer, FakeChatServer, FakeModel, ProtocolTokenizer
from mind4_evals import chat
from mind4_evals.chat import parse_completion, render_prompt, stop_tokens
from mind4_evals.errors import SamplerError
from mind4_evals.samplers import ChatCompletionsSampler, EngineSampler

from mind4_core.errors import Mind4Error, TokenizerError

TOK = ByteTokenizer()
S = TOK.special
BOTH = pytest.mark.parametrize(
    "tok", [ByteTokenizer(), ProtocolTokenizer()], ids=["mind4_tokenizer.harmony", "own-adapter"]
)


# -- harmony adapter ------------------------------------------------------------------------


@BOTH
def test_render_prompt_layout(tok):
    assert (chat._harmony_for(tok) is None) == isinstance(tok, ProtocolTokenizer)
    ids = render_prompt(
        tok,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "channel": "analysis", "content": "hm"},
            {"role": "user", "content": "2+2?"},
        ],
    )
    expected = (
        [S("<|start|>"), *b"system", S("<|message|>"), *b"Be brief.", S("<|end|>")]
        + [S("<|start|>"), *b"assistant", S("<|channel|>"), *b"analysis", S("<|message|>")]
        + [*b"hm", S("<|end|>")]
        + [S("<|start|>"), *b"user", S("<|message|>"), *b"2+2?", S("<|end|>")]
        + [S("<|start|>"), *b"assistant"]
    )
    assert ids == expected


@BOTH
def test_user_text_that_looks_special_stays_text(tok):
    ids = render_prompt(tok, [{"role": "user", "content": "<|start|>x<|end|>"}])
    body = ids[ids.index(S("<|message|>")) + 1 : ids.index(S("<|end|>"))]
    assert body == list(b"<|start|>x<|end|>")


@BOTH
def test_render_rejects_unknown_role_and_missing_specials(tok):
    with pytest.raises(TokenizerError, match="role 'robot'"):
        render_prompt(tok, [{"role": "robot", "content": "hi"}])

    class Plain(ProtocolTokenizer):
        def __init__(self):
            super().__init__()
            self.special_tokens = {}

    with pytest.raises(TokenizerError, match=r"no special token <\|start\|>"):
        render_prompt(Plain(), [{"role": "user", "content": "hi"}])


def test_stop_tokens_are_return_call_endoftext():
    assert stop_tokens(TOK) == [S("<|return|>"), S("<|call|>"), S("<|endoftext|>")]


@BOTH
def test_parse_final_channel_after_analysis(tok):
    toks = (
        [S("<|channel|>"), *b"analysis", S("<|message|>"), *b"think", S("<|end|>")]
        + [S("<|start|>"), *b"assistant", S("<|channel|>"), *b"final", S("<|message|>")]
        + [*b" Answer: B ", S("<|return|>"), *b"ignored"]
    )
    p = parse_completion(tok, toks)
    assert p.text == "Answer: B"
    assert p.messages == (("analysis", "think"), ("final", " Answer: B "))
    assert "<|channel|>analysis" in p.raw and "ignored" not in p.raw


@BOTH
def test_parse_plain_text_and_truncated_message(tok):
    assert parse_completion(tok, list(b"just text")).text == "just text"
    # cut off by max_new_tokens inside a message: the text so far is the reply
    toks = [S("<|channel|>"), *b"final", S("<|message|>"), *b"\\boxed{4"]
    assert parse_completion(tok, toks).text == "\\boxed{4"
    assert parse_completion(tok, []).text == ""
    # <|endoftext|> ends the turn too
    toks = [S("<|channel|>"), *b"final", S("<|message|>"), *b"7", S("<|endoftext|>"), *b"8"]
    assert parse_completion(tok, toks).text == "7"


def test_own_adapter_agrees_with_mind4_tokenizer_harmony_on_a_real_encoding():
    from mind4_tokenizer import get_encoding

    tok = get_encoding("mind4-8k")
    sp = tok.special_tokens
    conversations = [
        [{"role": "user", "content": "What is 2 + 3?"}],
        [
            {"role": "system", "content": "Be brief. <|end|> is text here."},
            {"role": "user", "content": "Ünïcode ✓ and\nnew lines"},
            {"role": "assistant", "channel": "final", "content": "ok"},
            {"role": "user", "content": "again"},
        ],
    ]
    for conv in conversations:
        assert chat.render_prompt_plain(tok, conv) == render_prompt(tok, conv)
    completions = [
        [
            sp["<|channel|>"],
            *tok.encode("final"),
            sp["<|message|>"],
            *tok.encode("Answer: C"),
            sp["<|return|>"],
        ],
        [
            sp["<|channel|>"],
            *tok.encode("analysis"),
            sp["<|message|>"],
            *tok.encode("hmm"),
            sp["<|end|>"],
            sp["<|start|>"],
            *tok.encode("assistant"),
            sp["<|channel|>"],
            *tok.encode("final"),
            sp["<|message|>"],
            *tok.encode("\\boxed{12}"),
            sp["<|return|>"],
        ],
        [sp["<|channel|>"], *tok.encode("final"), sp["<|message|>"], *tok.encode("cut off")],
        tok.encode("no markup at all"),
    ]
    for comp in completions:
        ours, theirs = chat.parse_completion_plain(tok, comp), parse_completion(tok, comp)
        assert ours.text == theirs.text and ours.raw == theirs.raw


# -- engine sampler -------------------------------------------------------------------------


def _conv(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


def test_engine_sampler_batches_and_parses():
    model = FakeModel(error_rate=0.0)
    sampler = EngineSampler(model, batch_size=8, max_new_tokens=64)
    out = sampler.sample_batch([_conv("What is 2 + 3?"), _conv("What is 7 * 6?")])
    assert [o.text for o in out] == ["\\boxed{5}", "\\boxed{42}"]
    assert model.calls == [("generate_batch", 2)]
    prompt = render_prompt(model.tokenizer, _conv("What is 2 + 3?"))
    assert out[0].prompt_tokens == len(prompt)
    assert out[0].completion_tokens == len(b"final") + len(b"\\boxed{5}") + 3
    assert out[0].raw.startswith("<|channel|>final<|message|>")
    assert sampler(_conv("What is 1 + 1?")).text == "\\boxed{2}"
    assert model.calls[-1] == ("generate", 1)


def test_engine_sampler_isolates_a_failing_example():
    model = FakeModel(error_rate=0.0, fail_on="What is 6 + 6?")
    sampler = EngineSampler(model, batch_size=8)
    out = sampler.sample_batch([_conv("What is 1 + 1?"), _conv("What is 6 + 6?"), [{"role": "x"}]])
    assert out[0].text == "\\boxed{2}"
    assert isinstance(out[1], RuntimeError) and "exploded" in str(out[1])
    assert isinstance(out[2], TokenizerError)


def test_engine_sampler_clamps_to_the_context():
    model = FakeModel(context=60)
    sampler = EngineSampler(model, max_new_tokens=1000)
    out = sampler(_conv("What is 1 + 1?"))  # prompt 27 tokens -> 33 left for the answer
    assert out.prompt_tokens + out.completion_tokens <= 60
    with pytest.raises(SamplerError, match="no room"):
        sampler(_conv("x" * 100))


def test_engine_sampler_logprobs_match_a_float64_reference():
    model = FakeModel()
    sampler = EngineSampler(model, logprobs=True)
    out = sampler(_conv("What is 3 + 4?"))
    prompt = render_prompt(model.tokenizer, _conv("What is 3 + 4?"))
    completion = model._complete(prompt, 64)
    seq = prompt + completion
    ref = []
    for t in range(len(prompt), len(seq)):
        z = model.table[seq[t - 1]].astype(np.float64)
        ref.append(z[seq[t]] - np.log(np.exp(z).sum()))
    assert out.logprobs is not None and len(out.logprobs) == len(completion)
    np.testing.assert_allclose(out.logprobs, ref, rtol=1e-9, atol=1e-9)


def test_engine_sampler_describe_is_json():
    d = EngineSampler(FakeModel(), seed=3).describe()
    assert json.loads(json.dumps(d))["sampling"]["seed"] == 3
    assert d["backend"] == "fake"


# -- HTTP sampler ---------------------------------------------------------------------------


@pytest.fixture
def server():
    with FakeChatServer() as srv:
        yield srv


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def test_http_sampler_round_trip(server):
    s = ChatCompletionsSampler(_url(server), "m1", api_key="k", max_tokens=9, seed=5, logprobs=True)
    out = s([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    assert out.text == "echo: hi"
    assert (out.prompt_tokens, out.completion_tokens) == (11, 7)
    assert out.logprobs == (-0.5,)
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k"
    assert body == {
        "model": "m1",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        "max_tokens": 9,
        "temperature": 0.0,
        "seed": 5,
        "logprobs": True,
    }


def test_http_sampler_concurrent_batch_keeps_order_and_isolates_errors(server):
    s = ChatCompletionsSampler(_url(server), "m", concurrency=4, retries=0)
    batch = [[{"role": "user", "content": f"q{i}" if i != 3 else "please 400"}] for i in range(8)]
    out = s.sample_batch(batch)
    assert [o.text for i, o in enumerate(out) if i != 3] == [
        f"echo: q{i}" for i in range(8) if i != 3
    ]
    assert isinstance(out[3], SamplerError) and "HTTP 400" in str(out[3])
    assert "max_tokens too large" in str(out[3])


def test_http_sampler_retries_transient_errors(server):
    server.mode, server.failures_left = "flaky", 2
    s = ChatCompletionsSampler(_url(server), "m", retries=3, backoff=0.01)
    assert s([{"role": "user", "content": "x"}]).text == "echo: x"
    assert len(server.requests) == 3
    server.failures_left = 5
    with pytest.raises(SamplerError, match="HTTP 503.*gave up after 2 attempts"):
        ChatCompletionsSampler(_url(server), "m", retries=1, backoff=0.01)(
            [{"role": "user", "content": "x"}]
        )


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("bad_request", "HTTP 400"),
        ("not_json", "did not answer JSON"),
        ("no_choices", "without choices"),
    ],
)
def test_http_sampler_bad_replies(server, mode, message):
    server.mode = mode
    with pytest.raises(SamplerError, match=message):
        ChatCompletionsSampler(_url(server), "m", retries=0)([{"role": "user", "content": "x"}])
    assert issubclass(SamplerError, Mind4Error)


def test_http_sampler_unreachable():
    srv = FakeChatServer()  # bound, never serving, then closed: nothing listens on the port
    port = srv.server_address[1]
    srv.server_close()
    s = ChatCompletionsSampler(f"http://127.0.0.1:{port}", "m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(SamplerError, match="cannot reach"):
        s([{"role": "user", "content": "x"}])
