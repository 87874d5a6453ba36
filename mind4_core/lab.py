"""The lab's instruments: watch a model think while it runs.

Four instruments, on any backend that can provide their data:

- **explain** (``mind4 explain PROMPT``, ``mind4 run --explain``): token by
  token, the chosen token, its probability and the top alternatives, and what
  temperature, top-k and top-p cut off at that step. It needs only the logits
  every :class:`~mind4_core.protocols.Runtime` returns, so it works everywhere.
- **routing** (``mind4 lab routing``): the experts each token chose in each
  layer with their gate weights, and each layer's expert load.
- **attention** (``mind4 lab attention``): one head's attention weights over
  the prompt, the sink's share included, the sliding window marked.
- **logit lens** (``mind4 lab lens``): the next-token distribution obtained by
  unembedding the residual stream after every sub-layer, at one position.

The last three read a :class:`Capture` record that the backend fills while the
model runs. Capture is an *optional* capability of a runtime, hook-based: the
backend wraps the components the model already calls (attention, MoE routing)
in observers and hooks the residual stream, and removes all of it when the
capture closes. With no capture open nothing is installed, so generation runs
exactly the code (and at exactly the speed) it runs without the lab.

The capture capability (for backend authors)
--------------------------------------------
A runtime offers capture in one of two ways, looked up in this order:

1. methods on the runtime itself::

       runtime.capture_kinds -> frozenset[str]        # a subset of CAPTURE_KINDS
       runtime.capture(record: Capture) -> context manager

2. a ``capture`` module next to the runtime's package (``<package>.capture``,
   e.g. ``mind4_torch.capture``), so a backend can keep the instruments out
   of its runtime class::

       capture_kinds(runtime) -> frozenset[str]       # empty: not this runtime
       capture(runtime, record: Capture) -> context manager

While the context manager is open, the backend reports every forward pass:

- ``record.begin_forward(batch, tokens, offsets)`` first (absolute position of
  each row's first new token, as the engine passed it);
- kind ``"routing"``: ``record.add_routing(layer, indices, weights)`` per MoE
  layer, ``(B·T, k)`` expert ids (largest first) and gate weights;
- kind ``"attention"``, for each layer in ``record.attention_layers``:
  ``record.add_attention(layer, probs, key_offset)`` with ``probs (B, Hq, T, S)``
  the softmax weights over the ``S`` keys the attention call was given (the
  sink's share is ``1 - probs.sum(-1)``) and ``key_offset`` the position of the
  first query within those keys (the attention call's ``offset``);
- kind ``"residual"``: ``record.add_residual(name, x)`` with ``x (B, T, H)`` for
  every name of :func:`residual_names` (``embedding``, ``block.N.attn`` after
  layer N's attention, ``block.N.mlp`` after its MLP), and set
  ``record.unembed`` to a function ``(N, H) -> (N, V)`` logits through the
  model's final norm and unembedding.

Arrays are NumPy (``float32`` / ``int64``) on the host. Asking a runtime for a
kind it does not list raises :class:`LabError` naming the kinds it has.

A runtime whose ``forward`` cannot return logits (one that samples on its
device, say) sets ``provides_logits = False``; explain then refuses clearly.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import click
import numpy as np

from .cli import load_model, model_options
from .config import ModelConfig, SamplingParams
from .errors import Mind4Error
from .lab_plots import fmt_p
from .sampling import probabilities

#: what a runtime may capture (see the module docstring)
CAPTURE_KINDS = ("routing", "attention", "residual")


class LabError(Mind4Error):
    """An instrument cannot run as asked (index out of range, capability missing, ...)."""


# ============================================================================= capture record


def residual_names(num_layers: int) -> list[str]:
    """Points of the residual stream a ``"residual"`` capture reports, in order."""
    names = ["embedding"]
    for n in range(num_layers):
        names += [f"block.{n}.attn", f"block.{n}.mlp"]
    return names


@attrs.define
class _Step:
    """One forward pass: which positions it processed, and what the backend reported."""

    offsets: np.ndarray  # (B,) absolute position of each row's first new token
    tokens: int  # T
    routing: dict[int, tuple[np.ndarray, np.ndarray]] = attrs.Factory(dict)  # (B,T,k) each
    attention: dict[int, tuple[np.ndarray, np.ndarray]] = attrs.Factory(dict)  # probs, key start
    residual: dict[str, np.ndarray] = attrs.Factory(dict)  # (B, T, H)


@attrs.frozen
class RoutingTrace:
    """One layer's routing for one row: ``positions (P,)``, ``experts (P, k)``, ``weights (P, k)``."""

    layer: int
    positions: np.ndarray
    experts: np.ndarray
    weights: np.ndarray


@attrs.frozen
class AttentionMap:
    """One layer's attention weights for one row.

    ``probs (Hq, P, K)``: weight of query ``positions[i]`` on the key at absolute
    position ``j`` (zero where it cannot see it); ``sink (Hq, P)``: the share
    the sink absorbed; ``window``: the layer's sliding window or ``None``.
    """

    layer: int
    positions: np.ndarray
    probs: np.ndarray
    sink: np.ndarray
    window: int | None


class Capture:
    """What a backend observed while a capture was open (see the module docstring).

    Backends write through ``begin_forward`` / ``add_*``; instruments read
    through :meth:`routing`, :meth:`attention` and :meth:`residuals`, which put
    the forward passes together by absolute position (a later pass over the same
    position replaces an earlier one, as after a session ``reset``).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        kinds: Sequence[str],
        attention_layers: Sequence[int] = (),
    ):
        self.model_config = model_config
        self.kinds = frozenset(kinds)
        self.attention_layers = frozenset(int(n) for n in attention_layers)
        #: ``(N, H) -> (N, V)`` logits through the final norm and unembedding (set by the backend)
        self.unembed: Callable[[np.ndarray], np.ndarray] | None = None
        self._steps: list[_Step] = []

    def wants(self, kind: str) -> bool:
        return kind in self.kinds

    # -- written by the backend ---------------------------------------------------------------

    def begin_forward(self, batch: int, tokens: int, offsets: Any) -> None:
        """A forward pass over ``tokens`` new tokens per row starts at ``offsets``."""
        offsets = np.broadcast_to(np.asarray(offsets, dtype=np.int64).reshape(-1), (batch,))
        self._steps.append(_Step(offsets=offsets.copy(), tokens=int(tokens)))

    def _current(self, what: str) -> _Step:
        if not self._steps:
            raise LabError(f"capture: {what} reported before begin_forward (a backend bug)")
        return self._steps[-1]

    def add_routing(self, layer: int, indices: Any, weights: Any) -> None:
        """``indices``, ``weights``: ``(B·T, k)`` (or ``(B, T, k)``) for MoE layer ``layer``."""
        step = self._current("routing")
        B, T = len(step.offsets), step.tokens
        indices = np.asarray(indices, dtype=np.int64).reshape(B, T, -1)
        weights = np.asarray(weights, dtype=np.float32).reshape(B, T, -1)
        step.routing[int(layer)] = (indices, weights)

    def add_attention(self, layer: int, probs: Any, key_offset: Any) -> None:
        """``probs (B, Hq, T, S)`` over the keys given; ``key_offset``: first query's index in them."""
        step = self._current("attention")
        probs = np.asarray(probs, dtype=np.float32)
        rel = np.broadcast_to(
            np.asarray(key_offset, dtype=np.int64).reshape(-1), step.offsets.shape
        )
        step.attention[int(layer)] = (
            probs,
            step.offsets - rel,
        )  # key 0's absolute position per row

    def add_residual(self, name: str, x: Any) -> None:
        """``x (B, T, H)``: the residual stream at point ``name`` (see :func:`residual_names`)."""
        step = self._current("residual")
        step.residual[name] = np.asarray(x, dtype=np.float32)

    # -- read by the instruments --------------------------------------------------------------

    @property
    def forward_passes(self) -> int:
        return len(self._steps)

    def positions(self, row: int = 0) -> np.ndarray:
        """Absolute positions captured for ``row``, ascending."""
        pos = [s.offsets[row] + np.arange(s.tokens) for s in self._steps]
        return np.unique(np.concatenate(pos)) if pos else np.zeros(0, dtype=np.int64)

    def _gather(self, row: int, pick: Callable[[_Step], np.ndarray | None]) -> tuple:
        """``(positions (P,), values (P, ...))`` of ``pick(step)[row]`` over the steps, last wins."""
        latest: dict[int, np.ndarray] = {}
        for step in self._steps:
            value = pick(step)
            if value is None:
                continue
            for t in range(step.tokens):
                latest[int(step.offsets[row]) + t] = value[row, t]
        if not latest:
            return np.zeros(0, dtype=np.int64), None
        positions = np.array(sorted(latest), dtype=np.int64)
        return positions, np.stack([latest[p] for p in positions])

    def routing(self, layer: int, row: int = 0) -> RoutingTrace:
        self._check_layer(layer)
        positions, experts = self._gather(row, lambda s: _item(s.routing.get(layer), 0))
        _, weights = self._gather(row, lambda s: _item(s.routing.get(layer), 1))
        if experts is None:
            raise LabError(
                f"no routing of layer {layer} was captured (capture kinds: {sorted(self.kinds)})"
            )
        return RoutingTrace(layer, positions, experts, weights)

    def attention(self, layer: int, row: int = 0) -> AttentionMap:
        self._check_layer(layer)
        pieces = [(s, s.attention[layer]) for s in self._steps if layer in s.attention]
        if not pieces:
            captured = sorted(self.attention_layers) if self.wants("attention") else []
            raise LabError(
                f"no attention of layer {layer} was captured; layers captured: {captured or 'none'}"
            )
        queries: dict[int, tuple[np.ndarray, int]] = {}  # position -> ((Hq, S) weights, key start)
        for step, (probs, key_start) in pieces:
            for t in range(step.tokens):
                queries[int(step.offsets[row]) + t] = (probs[row, :, t], int(key_start[row]))
        positions = np.array(sorted(queries), dtype=np.int64)
        K = max(start + w.shape[-1] for w, start in queries.values())
        K = min(K, int(positions[-1]) + 1)  # keys after the last query are never visible
        Hq = next(iter(queries.values()))[0].shape[0]
        dense = np.zeros((Hq, len(positions), K), dtype=np.float32)
        for i, p in enumerate(positions):
            w, start = queries[int(p)]
            end = min(start + w.shape[-1], K)
            dense[:, i, start:end] = w[:, : end - start]
        sink = np.clip(1.0 - dense.sum(-1), 0.0, 1.0)  # (Hq, P)
        return AttentionMap(layer, positions, dense, sink, self.model_config.window_of_layer(layer))

    def residuals(self, row: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``positions (P,)`` and ``{name: (P, H)}`` in :func:`residual_names` order."""
        out: dict[str, np.ndarray] = {}
        positions = np.zeros(0, dtype=np.int64)
        for name in residual_names(self.model_config.num_hidden_layers):
            pos, x = self._gather(row, lambda s, n=name: s.residual.get(n))
            if x is not None:
                positions, out[name] = pos, x
        if not out:
            raise LabError(f"no residual stream was captured (capture kinds: {sorted(self.kinds)})")
        return positions, out

    def _check_layer(self, layer: int) -> None:
        check_index("layer", layer, self.model_config.num_hidden_layers, "the model has {n} layers")


def _item(pair: tuple | None, i: int):
    return None if pair is None else pair[i]


def check_index(what: str, value: int, count: int, context: str) -> int:
    """``value`` in ``[0, count)`` or a :class:`LabError` naming the valid range."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise LabError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value < count:
        raise LabError(
            f"{what} {value} is out of range: {context.format(n=count)} (valid: 0..{count - 1})"
        )
    return int(value)


# ============================================================================= capture: opening


@attrs.frozen
class _Provider:
    kinds: frozenset[str]
    open: Callable[[Capture], contextlib.AbstractContextManager]


def _adapter_module(runtime: Any):
    package = type(runtime).__module__.partition(".")[0]
    name = f"{package}.capture"
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    return importlib.import_module(name)


def capture_provider(runtime: Any) -> _Provider:
    """How ``runtime`` captures (its own methods, else its package's ``capture`` module)."""
    method = getattr(runtime, "capture", None)
    if callable(method):
        return _Provider(frozenset(getattr(runtime, "capture_kinds", CAPTURE_KINDS)), method)
    module = _adapter_module(runtime)
    if module is not None:
        kinds = frozenset(module.capture_kinds(runtime))
        if kinds:
            return _Provider(kinds, lambda record: module.capture(runtime, record))
    return _Provider(frozenset(), lambda record: contextlib.nullcontext())


def capture_kinds(model_or_runtime: Any) -> frozenset[str]:
    """The capture kinds a loaded model's backend supports (empty: none)."""
    return capture_provider(getattr(model_or_runtime, "runtime", model_or_runtime)).kinds


def backends_with_capture() -> list[str]:
    """Installed backends whose package ships a capture module (imports no backend)."""
    from .plugins import get_manager

    names = []
    for record in get_manager().records("backend"):
        factory = record.factory
        if not isinstance(factory, str):
            continue
        package = factory.partition(":")[0].partition(".")[0]
        try:
            if importlib.util.find_spec(f"{package}.capture") is not None:
                names.append(record.name)
        except (ImportError, ValueError):
            continue
    return names


def _backend_name(model: Any) -> str:
    return getattr(model, "backend", None) or type(getattr(model, "runtime", model)).__name__


@contextlib.contextmanager
def capture(
    model: Any, kinds: Sequence[str] = CAPTURE_KINDS, *, attention_layers: Sequence[int] = ()
) -> Iterator[Capture]:
    """Open a capture on a loaded model (or a runtime); yields the :class:`Capture` record.

    Example::

        with capture(model, ["routing", "attention"], attention_layers=[0]) as rec:
            model.logits([tokens])
        rec.routing(0).experts          # (T, k)
    """
    runtime = getattr(model, "runtime", model)
    cfg: ModelConfig = runtime.model_config
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in CAPTURE_KINDS]
    if unknown:
        raise LabError(
            f"unknown capture kind(s) {', '.join(unknown)}; known: {', '.join(CAPTURE_KINDS)}"
        )
    for layer in attention_layers:
        check_index("layer", layer, cfg.num_hidden_layers, "the model has {n} layers")
    if attention_layers and "attention" not in kinds:
        kinds.append("attention")
    provider = capture_provider(runtime)
    missing = [k for k in kinds if k not in provider.kinds]
    if missing:
        name = _backend_name(model)
        if provider.kinds:
            have = f"it captures {', '.join(k for k in CAPTURE_KINDS if k in provider.kinds)}"
        else:
            others = [b for b in backends_with_capture() if b != name]
            have = "it implements no capture" + (
                f"; backends installed here that do: {', '.join(others)}"
                if others
                else "; install a backend that does (e.g. mind4-torch)"
            )
        raise LabError(f"backend {name!r} cannot capture {', '.join(missing)}: {have}")
    record = Capture(cfg, kinds, attention_layers)
    with provider.open(record):
        yield record


# ============================================================================= explain


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    p = np.exp(z)
    return p / p.sum()


def _entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def token_text(tokenizer: Any, token: int) -> str:
    """One token's text (invalid UTF-8 pieces shown with the replacement character)."""
    try:
        return tokenizer.decode_bytes([int(token)]).decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - an id the tokenizer does not know
        return f"<{int(token)}>"


def analyse_step(
    logits: np.ndarray, params: SamplingParams, chosen: int, *, top: int = 5
) -> dict[str, Any]:
    """What the model believed at one step and what the sampling settings did to it.

    ``model``: ``softmax(logits)`` (temperature 1); ``tempered``: after temperature;
    then top-k and top-p each remove tokens and mass, measured in the tempered
    distribution (so the removed masses add up; top-p also as a share of what
    top-k left, the distribution its threshold applies to); ``final``: the distribution the
    sampler draws from (:func:`mind4_core.sampling.probabilities`). Greedy
    decoding (temperature 0) keeps only the most likely token.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    V = logits.size
    p_model = _softmax(logits)
    order = np.argsort(-logits, kind="stable")  # most likely first, lowest id on ties
    final = probabilities(logits, params)[0]
    cuts: list[dict[str, Any]] = []
    if params.greedy:
        tempered = final
        kept = final > 0
        cuts.append(
            {
                "filter": "greedy",
                "value": 0.0,
                "tokens_removed": int(V - kept.sum()),
                "mass_removed": float(p_model[~kept].sum()),
            }
        )
    else:
        tempered = probabilities(logits, SamplingParams(temperature=params.temperature))[0]
        after_k = tempered
        if params.top_k > 0:
            after_k = probabilities(
                logits, SamplingParams(temperature=params.temperature, top_k=params.top_k)
            )[0]
            cut = (tempered > 0) & (after_k == 0)
            cuts.append(
                {
                    "filter": "top_k",
                    "value": params.top_k,
                    "tokens_removed": int(cut.sum()),
                    "mass_removed": float(tempered[cut].sum()),
                }
            )
        if params.top_p < 1.0:
            cut = (after_k > 0) & (final == 0)
            removed = float(tempered[cut].sum())
            cuts.append(
                {
                    "filter": "top_p",
                    "value": params.top_p,
                    "tokens_removed": int(cut.sum()),
                    "mass_removed": removed,
                    # top-p works on what top-k left: its cut as a share of that
                    "share_of_remaining": removed / max(float(tempered[after_k > 0].sum()), 1e-300),
                }
            )
    rank = int(np.nonzero(order == chosen)[0][0])
    return {
        "token": int(chosen),
        "probability": float(p_model[chosen]),
        "logprob": float(math.log(p_model[chosen])) if p_model[chosen] > 0 else float("-inf"),
        "sampling_probability": float(final[chosen]),
        "rank": rank,
        "top": [
            {
                "token": int(t),
                "probability": float(p_model[t]),
                "sampling_probability": float(final[t]),
            }
            for t in order[:top]
        ],
        "temperature": {
            "value": params.temperature,
            "entropy_bits_before": _entropy_bits(p_model),
            "entropy_bits_after": _entropy_bits(tempered),
            "top1_before": float(p_model[order[0]]),
            "top1_after": float(tempered[order[0]]),
        },
        "cuts": cuts,
        "kept_tokens": int((final > 0).sum()),
        "kept_mass": float(tempered[final > 0].sum()),
    }


def _no_logits(model: Any, got: str) -> LabError:
    from .plugins import get_manager

    installed = ", ".join(get_manager().names("backend"))
    return LabError(
        f"backend {_backend_name(model)!r} {got} where explain needs "
        f"{model.model_config.vocab_size} next-token logits; it cannot provide "
        f"log-probabilities. Backends installed here: {installed}"
    )


def _check_logits(model: Any, logits: Any) -> np.ndarray:
    """The ``(V,)`` logits as float64, or a :class:`LabError` if the backend gave none."""
    array = None
    with contextlib.suppress(TypeError, ValueError):
        array = np.asarray(logits, dtype=np.float64).reshape(-1)
    if array is None:
        raise _no_logits(model, "returned nothing usable")
    if array.size != model.model_config.vocab_size or not np.isfinite(array).any():
        raise _no_logits(model, f"returned an array of {array.size} values")
    return array


def explain_steps(
    model: Any, prompt: str | Sequence[int], params: SamplingParams, *, top: int = 5
) -> Iterator[dict[str, Any]]:
    """Generate like :meth:`mind4_core.engine.Model.generate` (same sampler, same seed,
    same tokens) and yield :func:`analyse_step`'s account of every step."""
    if getattr(model.runtime, "provides_logits", True) is False:
        raise _no_logits(model, "declares provides_logits = False (it returns no logits)")
    if top < 1:
        raise LabError(f"--top must be at least 1, got {top}")
    tokens = model.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not tokens:
        raise LabError("the prompt encodes to no tokens; give a non-empty prompt")
    max_ctx = model.model_config.max_context_length
    session = model.session(min(max_ctx, len(tokens) + max(1, params.max_new_tokens)))
    session.append(tokens)
    stops = set(model.stop_tokens())
    generator = model.sampler.generator(params.seed)
    for index in range(params.max_new_tokens):
        logits = _check_logits(model, session.prefill())
        token = session.sample(params, generator)
        step = analyse_step(logits, params, token, top=top)
        step.update(index=index, position=len(session.tokens))
        step["text"] = token_text(model.tokenizer, token)
        for alt in step["top"]:
            alt["text"] = token_text(model.tokenizer, alt["token"])
        step["stop"] = token in stops
        yield step
        if step["stop"] or len(session.tokens) >= session.max_tokens:
            return
        session.append([token])


def _confidence_style(p: float) -> str:
    """Red (unsure) through yellow to green (sure)."""
    p = min(max(p, 0.0), 1.0)
    red = int(255 * min(1.0, 2 * (1 - p)))
    green = int(200 * min(1.0, 2 * p))
    return f"rgb({red},{green},0)"


def _show(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _describe_cuts(step: dict[str, Any]) -> str:
    parts = []
    for cut in step["cuts"]:
        label = {"top_k": "top-k", "top_p": "top-p", "greedy": "greedy"}[cut["filter"]]
        text = f"{label}: -{cut['tokens_removed']} tok, -{100 * cut['mass_removed']:.1f}%"
        if "share_of_remaining" in cut and cut["share_of_remaining"] != cut["mass_removed"]:
            text += f" ({100 * cut['share_of_remaining']:.0f}% of what was left)"
        parts.append(text)
    return "; ".join(parts) or "nothing cut"


def run_explain(
    model: Any,
    prompt: str | Sequence[int],
    params: SamplingParams,
    *,
    top: int = 5,
    as_json: bool = False,
    console: Any = None,
) -> dict[str, Any]:
    """``mind4 explain`` / ``mind4 run --explain``: print the account, return it as a dict."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    steps: list[dict[str, Any]] = []
    console = console or Console(highlight=False)
    iterator = explain_steps(model, prompt, params, top=top)
    if as_json:
        steps = list(iterator)
    else:
        with console.status("generating…"):
            steps = list(iterator)
    prompt_tokens = model.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    report = {
        "prompt": prompt if isinstance(prompt, str) else None,
        "prompt_tokens": prompt_tokens,
        "backend": model.backend,
        "device": model.device,
        "dtype": model.dtype,
        "sampling": {
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "seed": params.seed,
        },
        "tokens": [s["token"] for s in steps],
        "text": "".join(s["text"] for s in steps if not s["stop"]),
        "steps": steps,
    }
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return report

    line = Text(prompt if isinstance(prompt, str) else "", style="dim")
    for s in steps:
        line.append(s["text"], style=f"bold {_confidence_style(s['probability'])}")
    console.print(line)
    console.print(
        Text.assemble(
            "confidence: ",
            ("0.0 ", _confidence_style(0.0)),
            ("0.25 ", _confidence_style(0.25)),
            ("0.5 ", _confidence_style(0.5)),
            ("0.75 ", _confidence_style(0.75)),
            ("1.0", _confidence_style(1.0)),
            f"   sampling: temperature {params.temperature}, top-k {params.top_k or 'off'}, "
            f"top-p {params.top_p if params.top_p < 1 else 'off'}",
        )
    )
    table = Table(title="token by token", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("p", justify="right")
    table.add_column("p sampled", justify="right")
    table.add_column("rank", justify="right")
    table.add_column(f"top {top} (p, crossed out = cut)")
    table.add_column("what sampling cut off")
    for s in steps:
        alts = Text()
        for alt in s["top"]:
            style = "strike dim" if alt["sampling_probability"] == 0 else ""
            alts.append(f"{_show(alt['text'])!r} {fmt_p(alt['probability'])}", style=style)
            alts.append("  ")
        table.add_row(
            str(s["index"]),
            Text(repr(_show(s["text"])), style=_confidence_style(s["probability"])),
            fmt_p(s["probability"]),
            fmt_p(s["sampling_probability"]),
            str(s["rank"]),
            alts,
            _describe_cuts(s),
        )
    console.print(table)
    return report


# ============================================================================= instruments


def _encode_prompt(model: Any, prompt: str) -> list[int]:
    tokens = model.encode(prompt)
    if not tokens:
        raise LabError("the prompt encodes to no tokens; give a non-empty prompt")
    return tokens


def routing_report(model: Any, prompt: str, *, layers: Sequence[int] | None = None) -> dict:
    """Experts and gate weights per token and layer, and each layer's expert load."""
    cfg = model.model_config
    L = cfg.num_hidden_layers
    layers = list(range(L)) if layers is None else list(layers)
    for layer in layers:
        check_index("layer", layer, L, "the model has {n} layers")
    tokens = _encode_prompt(model, prompt)
    with capture(model, ["routing"]) as rec:
        model.logits([tokens])
    traces = [rec.routing(layer) for layer in layers]
    load = np.stack(
        [np.bincount(t.experts.reshape(-1), minlength=cfg.num_experts) for t in traces]
    )  # (layers, E)
    gate_load = np.stack(
        [
            np.bincount(
                t.experts.reshape(-1), weights=t.weights.reshape(-1), minlength=cfg.num_experts
            )
            for t in traces
        ]
    )  # (layers, E) sum of gate weights
    return {
        "tokens": tokens,
        "texts": [token_text(model.tokenizer, t) for t in tokens],
        "layers": layers,
        "num_experts": cfg.num_experts,
        "experts_per_token": cfg.experts_per_token,
        "experts": np.stack([t.experts for t in traces]),  # (layers, T, k)
        "weights": np.stack([t.weights for t in traces]),  # (layers, T, k)
        "load": load,
        "gate_load": gate_load,
    }


def attention_report(model: Any, prompt: str, *, layer: int, head: int) -> dict:
    cfg = model.model_config
    check_index("layer", layer, cfg.num_hidden_layers, "the model has {n} layers")
    check_index("head", head, cfg.num_attention_heads, "each layer has {n} query heads")
    tokens = _encode_prompt(model, prompt)
    with capture(model, ["attention"], attention_layers=[layer]) as rec:
        model.logits([tokens])
    amap = rec.attention(layer)
    return {
        "tokens": tokens,
        "texts": [token_text(model.tokenizer, t) for t in tokens],
        "layer": layer,
        "head": head,
        "kv_head": head // (cfg.num_attention_heads // cfg.num_key_value_heads),
        "window": amap.window,
        "probs": amap.probs[head],  # (T, T)
        "sink": amap.sink[head],  # (T,)
    }


def lens_report(model: Any, prompt: str, *, position: int, top: int = 5) -> dict:
    """Logit lens at ``position``: unembed the residual after every sub-layer."""
    tokens = _encode_prompt(model, prompt)
    T = len(tokens)
    if not isinstance(position, (int, np.integer)) or not -T <= position < T:
        raise LabError(
            f"position {position} is out of range: the prompt has {T} tokens "
            f"(valid: 0..{T - 1}, or -{T}..-1 counting from the end)"
        )
    if top < 1:
        raise LabError(f"--top must be at least 1, got {top}")
    position = int(position) % T
    with capture(model, ["residual"]) as rec:
        logits = model.logits([tokens])[0, position]  # (V,)
    _, streams = rec.residuals()
    names = list(streams)
    x = np.stack([streams[n][position] for n in names])  # (stages, H)
    if rec.unembed is None:
        raise LabError(f"backend {_backend_name(model)!r} captured residuals but gave no unembed")
    lens = np.asarray(rec.unembed(x), dtype=np.float64)  # (stages, V)
    probs = np.stack([_softmax(row) for row in lens])  # (stages, V)
    final = _softmax(logits)
    final_top = np.argsort(-final, kind="stable")[:top]
    next_token = tokens[position + 1] if position + 1 < T else None
    stages = []
    for name, p in zip(names, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        stages.append(
            {
                "stage": name,
                "top": [
                    {
                        "token": int(t),
                        "text": token_text(model.tokenizer, t),
                        "probability": float(p[t]),
                    }
                    for t in order
                ],
                "entropy_bits": _entropy_bits(p),
                "final_top1_probability": float(p[final_top[0]]),
                "final_top1_rank": int((p > p[final_top[0]]).sum()),
                "next_token_probability": None if next_token is None else float(p[next_token]),
            }
        )
    return {
        "tokens": tokens,
        "texts": [token_text(model.tokenizer, t) for t in tokens],
        "position": position,
        "next_token": next_token,
        "final_top": [int(t) for t in final_top],
        "final_top_texts": [token_text(model.tokenizer, t) for t in final_top],
        "stages": stages,
        "stage_probs_of_final_top": probs[:, final_top],  # (stages, top)
        "max_abs_error_last_stage": float(np.abs(lens[-1] - np.asarray(logits, np.float64)).max()),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ============================================================================= command line


def lab_model_options(func):
    """The model-choosing options of ``mind4 run`` (without the sampling ones)."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False)),
        click.option(
            "--checkpoint", "-c", help="Checkpoint directory (default: the embedded model)."
        ),
        click.option("--backend", "-b", help="Backend name (see `mind4 plugins`)."),
        click.option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"])),
        click.option("--tokenizer", help="Encoding name or path."),
        click.option("--attention", help="Override the attention component by name."),
        click.option("--moe-routing", help="Override the MoE routing component by name."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _out_option(default: str):
    return click.option(
        "--out",
        "-o",
        default=default,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="PNG file to write ('' for none).",
    )


def _read_prompt(prompt: str) -> str:
    return sys.stdin.read() if prompt == "-" else prompt


@click.command(
    "explain",
    epilog="""\b
Examples:
  mind4 explain "The capital of France is"
  mind4 explain -t 0.7 --top-k 40 --top-p 0.9 -n 8 --seed 1 "Once upon a time"
  mind4 explain --json -t 0 "2 + 2 =" | jq '.steps[].probability'
""",
)
@click.argument("prompt")
@model_options
@click.option("--top", default=5, show_default=True, help="Alternatives shown per step.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
def explain_command(prompt: str, top: int, as_json: bool, **options: Any) -> None:
    """Generate after PROMPT and explain every token: its probability, the top
    alternatives, and what temperature / top-k / top-p cut off at that step.

    PROMPT "-" reads standard input."""
    model, config = load_model(
        options, defaults={"sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16}}
    )
    run_explain(model, _read_prompt(prompt), config.sampling, top=top, as_json=as_json)


@click.group("lab")
def lab_group() -> None:
    """Instruments that look inside the model while it runs.

    \b
    Examples:
      mind4 lab routing "The cat sat on the mat" --out routing.png
      mind4 lab attention "The cat sat on the mat" --layer 0 --head 1 --out attn.png
      mind4 lab lens "The cat sat on the mat" --position -1 --out lens.png
      mind4 lab capabilities -b torch
    """


lab_group.add_command(explain_command)


@lab_group.command("capabilities")
@lab_model_options
@click.option("--json", "as_json", is_flag=True)
def capabilities_command(as_json: bool, **options: Any) -> None:
    """What this backend can capture (routing, attention, residual)."""
    model, _ = load_model(options)
    kinds = capture_kinds(model)
    row = {
        "backend": model.backend,
        "capture": [k for k in CAPTURE_KINDS if k in kinds],
        "explain": getattr(model.runtime, "provides_logits", True) is not False,
    }
    if as_json:
        click.echo(json.dumps(row))
    else:
        click.echo(
            f"{row['backend']}: explain {'yes' if row['explain'] else 'no'}; capture: "
            f"{', '.join(row['capture']) or 'none'}"
        )


def _parse_layers(text: str | None, count: int) -> list[int] | None:
    if not text:
        return None
    try:
        layers = [int(piece) for piece in text.split(",") if piece.strip()]
    except ValueError:
        raise LabError(f"--layers takes comma-separated layer indices, got {text!r}") from None
    for layer in layers:
        check_index("layer", layer, count, "the model has {n} layers")
    return layers


@lab_group.command("routing")
@click.argument("prompt")
@lab_model_options
@click.option("--layers", help="Comma-separated layers to show (default: all).")
@click.option("--layer", "focus", type=int, help="Layer whose token-by-expert map the PNG shows.")
@_out_option("routing.png")
@click.option("--json", "as_json", is_flag=True)
def routing_command(
    prompt: str, layers: str | None, focus: int | None, out: str, as_json: bool, **options: Any
) -> None:
    """Which experts each token chose in each layer, with gate weights; the expert
    load of every layer (table + PNG)."""
    model, _ = load_model(options)
    L = model.model_config.num_hidden_layers
    chosen = _parse_layers(layers, L)
    report = routing_report(model, _read_prompt(prompt), layers=chosen)
    if focus is not None:
        check_index("layer", focus, L, "the model has {n} layers")
        if focus not in report["layers"]:
            raise LabError(f"--layer {focus} is not among --layers {report['layers']}")
    if out:
        from .lab_plots import plot_routing

        plot_routing(report, out, focus=focus)
    if as_json:
        data = _jsonable({k: v for k, v in report.items()})
        data["png"] = out or None
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    _print_routing(report)
    if out:
        click.echo(f"wrote {out}")


def _print_routing(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="experts chosen (gate weight) per token and layer")
    table.add_column("pos", justify="right")
    table.add_column("token")
    for layer in report["layers"]:
        table.add_column(f"L{layer}")
    for t, text in enumerate(report["texts"]):
        cells = []
        for i in range(len(report["layers"])):
            pairs = zip(report["experts"][i, t], report["weights"][i, t], strict=True)
            cells.append(" ".join(f"e{e}:{w:.2f}" for e, w in pairs))
        table.add_row(str(t), repr(_show(text)), *cells)
    console.print(table)
    load = Table(title="expert load per layer (tokens routed to each expert)")
    load.add_column("layer", justify="right")
    E = report["num_experts"]
    if E <= 16:
        for e in range(E):
            load.add_column(f"e{e}", justify="right")
    else:
        load.add_column("busiest experts (tokens)")
        load.add_column("unused", justify="right")
    load.add_column("max/mean", justify="right")
    for i, layer in enumerate(report["layers"]):
        counts = report["load"][i]
        ratio = f"{counts.max() / max(counts.mean(), 1e-9):.2f}"
        if E <= 16:
            load.add_row(str(layer), *(str(c) for c in counts), ratio)
        else:
            busiest = np.argsort(-counts, kind="stable")[:6]
            load.add_row(
                str(layer),
                " ".join(f"e{e}:{counts[e]}" for e in busiest),
                str(int((counts == 0).sum())),
                ratio,
            )
    console.print(load)


@lab_group.command("attention")
@click.argument("prompt")
@lab_model_options
@click.option("--layer", "-l", default=0, show_default=True, help="Layer index.")
@click.option("--head", default=0, show_default=True, help="Query head index.")
@_out_option("attention.png")
@click.option("--json", "as_json", is_flag=True)
def attention_command(
    prompt: str, layer: int, head: int, out: str, as_json: bool, **options: Any
) -> None:
    """One head's attention weights over the prompt, the sink's share included
    (PNG heatmap; the sliding window is marked on windowed layers)."""
    model, _ = load_model(options)
    report = attention_report(model, _read_prompt(prompt), layer=layer, head=head)
    if out:
        from .lab_plots import plot_attention

        plot_attention(report, out)
    if as_json:
        data = _jsonable(report)
        data["png"] = out or None
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    _print_attention(report)
    if out:
        click.echo(f"wrote {out}")


def _print_attention(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    window = report["window"]
    title = f"layer {report['layer']} head {report['head']} (kv head {report['kv_head']}), " + (
        f"sliding window {window}" if window else "full causal attention"
    )
    table = Table(title=title)
    table.add_column("pos", justify="right")
    table.add_column("query")
    table.add_column("sink", justify="right")
    table.add_column("most attended keys (pos token weight)")
    texts = report["texts"]
    for t, text in enumerate(texts):
        row = report["probs"][t]
        best = np.argsort(-row, kind="stable")[:3]
        keys = "  ".join(f"{k} {_show(texts[k])!r} {row[k]:.2f}" for k in best if row[k] > 0)
        table.add_row(str(t), repr(_show(text)), f"{report['sink'][t]:.3f}", keys)
    Console(highlight=False).print(table)
    click.echo(f"mean sink share: {float(np.mean(report['sink'])):.3f}")


@lab_group.command("lens")
@click.argument("prompt")
@lab_model_options
@click.option(
    "--position",
    "-p",
    default=-1,
    show_default=True,
    help="Token position (negative counts from the end).",
)
@click.option("--top", default=5, show_default=True, help="Tokens shown per stage.")
@_out_option("lens.png")
@click.option("--json", "as_json", is_flag=True)
def lens_command(
    prompt: str, position: int, top: int, out: str, as_json: bool, **options: Any
) -> None:
    """Logit lens: the next-token distribution read from the residual stream after
    every sub-layer at one position, through the final norm and unembedding."""
    model, _ = load_model(options)
    report = lens_report(model, _read_prompt(prompt), position=position, top=top)
    if out:
        from .lab_plots import plot_lens

        plot_lens(report, out)
    if as_json:
        data = _jsonable(report)
        data["png"] = out or None
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    pos = report["position"]
    nxt = report["next_token"]
    title = f"logit lens at position {pos} ({_show(report['texts'][pos])!r})" + (
        f"; next token in the prompt: {_show(report['texts'][pos + 1])!r}"
        if nxt is not None
        else ""
    )
    table = Table(title=title)
    table.add_column("stage")
    table.add_column(f"top {top} (p)")
    table.add_column("entropy (bits)", justify="right")
    table.add_column(f"p({_show(report['final_top_texts'][0])!r})", justify="right")
    if nxt is not None:
        table.add_column("p(next in prompt)", justify="right")
    for s in report["stages"]:
        cells = [
            s["stage"],
            "  ".join(f"{_show(a['text'])!r} {fmt_p(a['probability'])}" for a in s["top"]),
            f"{s['entropy_bits']:.2f}",
            fmt_p(s["final_top1_probability"]),
        ]
        if nxt is not None:
            cells.append(fmt_p(s["next_token_probability"]))
        table.add_row(*cells)
    Console(highlight=False).print(table)
    if out:
        click.echo(f"wrote {out}")


__all__ = [
    "CAPTURE_KINDS",
    "AttentionMap",
    "Capture",
    "LabError",
    "RoutingTrace",
    "analyse_step",
    "attention_report",
    "capture",
    "capture_kinds",
    "explain_steps",
    "lens_report",
    "residual_names",
    "routing_report",
    "run_explain",
]
