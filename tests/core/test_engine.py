"""The engine over the float64 oracle backend: sessions, caches, sampling, errors."""

import numpy as np
import pytest
from mind4_specs import oracle

from mind4_core.config import SamplingParams
from mind4_core.engine import TextStream, load
from mind4_core.errors import ContextOverflowError, Mind4Error, PluginError


@pytest.fixture
def model(oracle_backend, micro_checkpoint):
    return load(micro_checkpoint, backend="oracle")


def ref_weights(model):
    return model.runtime.weights


def test_load_resolves_components_and_defaults(model):
    assert model.backend == "oracle" and model.device == "cpu" and model.dtype == "float32"
    assert model.component_names == {"sampler": "numpy"}
    assert model.tokenizer.n_vocab <= model.model_config.vocab_size


def test_unknown_backend_lists_installed(oracle_backend, micro_checkpoint):
    with pytest.raises(PluginError, match="unknown backend 'nope'; installed backends: .*oracle"):
        load(micro_checkpoint, backend="nope")


def test_greedy_generation_equals_oracle(model):
    prompt = [5, 17, 300, 4000, 12]
    got = model.generate(prompt, SamplingParams(temperature=0, max_new_tokens=6), stop_tokens=[])
    assert got == oracle.greedy_generate(ref_weights(model), model.model_config, prompt, 6)


def test_session_prefill_decode_and_prefix_reuse(model):
    rng = np.random.default_rng()
    tokens = rng.integers(0, 8000, size=20).tolist()
    session = model.session(max_tokens=40)
    session.append(tokens[:12])
    full = oracle.forward(ref_weights(model), model.model_config, np.array(tokens))
    np.testing.assert_allclose(session.prefill(), full[11], rtol=1e-5, atol=1e-5)
    for i in range(12, 20):
        np.testing.assert_allclose(session.decode(tokens[i]), full[i], rtol=1e-5, atol=1e-5)
    # reuse: same first 15 tokens, then a different suffix -> only the suffix is recomputed
    new = tokens[:15] + [1, 2, 3]
    model.runtime.calls.clear()
    assert session.reset(new) == 15
    ref = oracle.forward(ref_weights(model), model.model_config, np.array(new))
    np.testing.assert_allclose(session.prefill(), ref[-1], rtol=1e-5, atol=1e-5)
    assert model.runtime.calls == [(1, 3)]
    # reset to a pure prefix: the last token is recomputed for its logits
    assert session.reset(tokens[:10]) == 10
    np.testing.assert_allclose(session.prefill(), full[9], rtol=1e-5, atol=1e-5)


def test_seeded_sampling_is_reproducible_and_seed_matters(model):
    params = SamplingParams(temperature=1.5, top_k=50, max_new_tokens=8, seed=1234)
    a = model.generate([1, 2, 3], params, stop_tokens=[])
    b = model.generate([1, 2, 3], params, stop_tokens=[])
    c = model.generate(
        [1, 2, 3],
        SamplingParams(temperature=1.5, top_k=50, max_new_tokens=8, seed=99),
        stop_tokens=[],
    )
    assert a == b and a != c


def test_stop_tokens_end_generation(model):
    params = SamplingParams(temperature=0, max_new_tokens=10)
    free = model.generate([7, 8, 9], params, stop_tokens=[])
    stopped = model.generate([7, 8, 9], params, stop_tokens=[free[2]])
    assert stopped == free[: free.index(free[2]) + 1]


def test_streaming_yields_the_same_tokens(model):
    params = SamplingParams(temperature=0, max_new_tokens=5)
    streamed = list(model.generate([3, 1, 4], params, stop_tokens=[], stream=True))
    assert streamed == model.generate([3, 1, 4], params, stop_tokens=[])


def test_batch_generation_equals_one_by_one(model):
    prompts = [[1, 2, 3, 4, 5], [9, 8], [100, 200, 300]]
    params = SamplingParams(temperature=0, max_new_tokens=4)
    batch = model.generate_batch(prompts, params, stop_tokens=[])
    assert batch == [model.generate(p, params, stop_tokens=[]) for p in prompts]


def test_batched_logits_match_oracle(model):
    rng = np.random.default_rng()
    tokens = rng.integers(0, 8000, size=(2, 9))
    ref = oracle.forward(ref_weights(model), model.model_config, tokens)
    assert oracle.relative_error(model.logits(tokens), ref) < 1e-6


def test_prompt_longer_than_context_is_a_clear_error(model):
    with pytest.raises(
        ContextOverflowError, match="the prompt has 100 tokens but the model's context holds 64"
    ):
        model.generate(list(range(100)), SamplingParams(max_new_tokens=1))
    with pytest.raises(ContextOverflowError, match="exceed the model's context of 64"):
        model.logits([list(range(65))])


def test_generation_running_out_of_context_stops_with_an_error(model):
    session = model.session(max_tokens=8)
    session.append([1, 2, 3, 4, 5, 6])
    with pytest.raises(ContextOverflowError, match="full"):
        list(session.generate(SamplingParams(temperature=0, max_new_tokens=10)))


def test_bad_token_ids(model):
    with pytest.raises(Mind4Error, match="outside the vocabulary"):
        model.session().append([8192])
    with pytest.raises(Mind4Error, match="must lie in"):
        model.logits([[1, -1]])


def test_user_text_never_becomes_special_tokens(model):
    ids = model.encode("<|start|>user<|message|>hi<|end|>")
    assert not set(ids) & set(model.tokenizer.special_tokens.values())
    assert model.tokenizer.decode(ids) == "<|start|>user<|message|>hi<|end|>"


def test_text_stream_holds_back_partial_utf8(model):
    tok = model.tokenizer
    text = "naïve café — ☕ ok"
    stream = TextStream(tok)
    out = "".join(stream.push(t) for t in tok.encode(text)) + stream.flush()
    assert out == text
