"""The ``mind4`` command line.

Commands import nothing heavy until they run: ``mind4 --help`` never imports
torch. Plugin commands (``mind4 train`` from mind4-torch, ...) are listed from
their records and imported only when invoked. Every :class:`Mind4Error` is
printed as one clear message; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from . import __version__
from .errors import Mind4Error

BUILTIN_LAZY = {
    # name: ("module:attribute", short help)
    "tokenizer": ("mind4_tokenizer.cli:tokenizer", "Train, inspect and use tokenizers."),
    "eval": (
        "mind4_evals.cli:eval_group",
        "Evaluate a model (basic, abcd, gpqa, aime) and report.",
    ),
    "convert": ("mind4_core.convert:convert_command", "Convert a checkpoint between layouts."),
    "inspect-checkpoint": (
        "mind4_core.convert:inspect_command",
        "Describe a checkpoint: format, shapes, parameter counts.",
    ),
    "lab": (
        "mind4_core.lab:lab_group",
        "Instruments: explain, routing, attention maps, logit lens.",
    ),
    "explain": (
        "mind4_core.lab:explain_command",
        "Generate and explain each token: probability, alternatives, what sampling cut.",
    ),
}


class Mind4Group(click.Group):
    """A group whose lazily imported commands come from modules and plugins."""

    def _lazy(self) -> dict[str, tuple[str, str]]:
        lazy = dict(BUILTIN_LAZY)
        try:
            from .plugins import get_manager

            for record in get_manager().records("cli_command"):
                if record.name in self.commands or record.name in lazy:
                    continue
                lazy[record.name] = (record.factory, record.short_help or f"(from {record.plugin})")
        except Mind4Error:
            pass
        return lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._available_lazy()))

    def _available_lazy(self) -> dict[str, tuple[str, str]]:
        import importlib.util

        out = {}
        for name, (ref, help_) in self._lazy().items():
            module = ref.split(":")[0] if isinstance(ref, str) else None
            try:
                if module is None or importlib.util.find_spec(module) is not None:
                    out[name] = (ref, help_)
            except (ImportError, ValueError):
                continue
        return out

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        lazy = self._available_lazy()
        if name not in lazy:
            return None
        from .records import resolve

        return resolve(lazy[name][0])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands without importing lazy ones (their help line comes from the table)."""
        lazy = self._available_lazy()
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit=60)))
            else:
                rows.append((name, lazy[name][1]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(name)s: %(message)s")


@click.group(
    cls=Mind4Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  mind4 run "Once upon a time"            generate with the embedded default model
  mind4 run --backend torch --device cpu --temperature 0 "2 + 2 ="
  mind4 chat                              multi-turn chat (harmony format)
  mind4 plugins                           installed plugins, hooks and components
  mind4 init --preset small --out ./small random-initialised checkpoint
  mind4 bench --preset small --json       prefill/decode tokens/s and peak memory
""",
)
@click.version_option(__version__, "-V", "--version", prog_name="mind4")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Mind 4: a laboratory and runtime for the gpt-oss transformer family."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ----------------------------------------------------------------------------- shared options


def model_options(func):
    """Options that choose and configure the model (shared by run, chat, bench, ...)."""
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="A config.json (runtime, sampling, logging, model overrides).",
        ),
        click.option(
            "--checkpoint", "-c", help="Checkpoint directory (default: the embedded model)."
        ),
        click.option(
            "--backend", "-b", help="Backend name (torch, triton, metal, ...; see `mind4 plugins`)."
        ),
        click.option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps."),
        click.option(
            "--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Compute dtype."
        ),
        click.option("--tokenizer", help="Encoding name or path."),
        click.option("--attention", help="Override the attention component by name."),
        click.option("--moe-routing", help="Override the MoE routing component by name."),
        click.option("--sampler", help="Override the sampler component by name."),
        click.option("--temperature", "-t", type=float, help="0 = greedy."),
        click.option("--top-k", type=int, help="Keep the k most likely tokens (0 = off)."),
        click.option("--top-p", type=float, help="Nucleus sampling mass in (0, 1] (1 = off)."),
        click.option("--max-new-tokens", "-n", type=int, help="Tokens to generate."),
        click.option("--seed", type=int, help="Seed for reproducible sampling."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


RUNTIME_KEYS = (
    "checkpoint",
    "backend",
    "device",
    "dtype",
    "tokenizer",
    "attention",
    "moe_routing",
    "sampler",
)
SAMPLING_KEYS = ("temperature", "top_k", "top_p", "max_new_tokens", "seed")


def build_config(options: dict[str, Any], defaults: dict[str, Any] | None = None):
    """Config from (lowest first) defaults, the --config file, then CLI flags."""
    from .config import read_json, resolve_config

    layers: list[tuple[str, dict[str, Any] | None]] = [("defaults", defaults or {})]
    if options.get("config_path"):
        layers.append((str(options["config_path"]), read_json(options["config_path"])))
    flags = {k: options[k] for k in RUNTIME_KEYS if options.get(k) is not None}
    sampling = {k: options[k] for k in SAMPLING_KEYS if options.get(k) is not None}
    if sampling:
        flags["sampling"] = sampling
    layers.append(("command-line flags", flags))
    return resolve_config(*layers)


def load_model(options: dict[str, Any], defaults: dict[str, Any] | None = None):
    from .engine import load

    config = build_config(options, defaults)
    _setup_logging(config.logging.log_level)
    return load(config=config), config


# ----------------------------------------------------------------------------- run


@cli.command()
@click.argument("prompt", required=False)
@model_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming text."
)
@click.option(
    "--explain",
    is_flag=True,
    help="Explain each token: probability, top alternatives, what sampling cut (mind4 explain).",
)
def run(prompt: str | None, as_json: bool, explain: bool, **options: Any) -> None:
    """Generate text after PROMPT, streaming it as it comes.

    PROMPT "-" reads standard input. Without PROMPT a short default is used.

    \b
    Examples:
      mind4 run "The meaning of life is"
      mind4 run -b torch -d cpu --dtype float32 -t 0 -n 50 "def fibonacci(n):"
      echo "Hello" | mind4 run -
    """
    from .engine import TextStream

    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is None:
        prompt = "The Python language"
    model, config = load_model(
        options, defaults={"sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64}}
    )
    params = config.sampling
    if explain:
        from .lab import run_explain

        run_explain(model, prompt, params, as_json=as_json)
        return
    stops = model.stop_tokens()
    tokens = model.generate(prompt, params, stop_tokens=stops, stream=True)
    if as_json:
        out = list(tokens)
        text = model.tokenizer.decode([t for t in out if t not in stops])
        click.echo(
            json.dumps(
                {
                    "prompt": prompt,
                    "text": text,
                    "tokens": out,
                    "backend": model.backend,
                    "device": model.device,
                    "dtype": model.dtype,
                }
            )
        )
        return
    stream = TextStream(model.tokenizer, skip=stops)
    click.echo(prompt, nl=False)
    for token in tokens:
        click.echo(stream.push(token), nl=False)
    click.echo(stream.flush())


# ----------------------------------------------------------------------------- chat


@cli.command()
@model_options
@click.option("--system", help="System prompt (default: main.md).")
@click.option(
    "--load",
    "load_path",
    type=click.Path(dir_okay=False),
    help="Resume a conversation saved with /save.",
)
def chat(system: str | None, load_path: str | None, **options: Any) -> None:
    """Chat with the model, keeping the history (harmony format).

    Commands inside the chat: /reset, /save FILE, /exit.
    """
    from .chat import run_chat

    model, config = load_model(
        options, defaults={"sampling": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 256}}
    )
    run_chat(model, config.sampling, system=system, load_path=load_path)


# ----------------------------------------------------------------------------- plugins


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins, the hooks they implement and the records they provide."""
    import warnings

    from .plugins import KIND_TO_HOOK, get_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manager = get_manager()
        records = {kind: manager.records(kind) for kind in KIND_TO_HOOK}
    rows = []
    for info in manager.infos.values():
        dist = info.distribution or info.name
        provided = [
            f"{kind}:{r.name}"
            for kind, recs in records.items()
            for r in recs
            if r.plugin in (dist, info.name)
        ]
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "status": info.status,
                "error": info.error,
                "hooks": list(info.hooks),
                "records": provided,
            }
        )
    if as_json:
        click.echo(json.dumps({"plugin_api_version": _api_version(), "plugins": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mind4 plugins (plugin API {_api_version()})")
    for column in ("plugin", "distribution", "version", "status", "hooks", "records"):
        table.add_column(column)
    for row in rows:
        status = (
            row["status"] if not row["error"] else f"[red]{row['status']}[/red]: {row['error']}"
        )
        table.add_row(
            row["name"],
            row["distribution"] or "-",
            row["version"] or "-",
            status,
            "\n".join(h.removeprefix("mind4_") for h in row["hooks"]),
            "\n".join(row["records"]),
        )
    Console().print(table)


def _api_version() -> int:
    from .hookspecs import PLUGIN_API_VERSION

    return PLUGIN_API_VERSION


# ----------------------------------------------------------------------------- init


@cli.command()
@click.option(
    "--preset",
    "-p",
    default="tiny",
    show_default=True,
    help="tiny, small, gpt-oss-20b, gpt-oss-120b.",
)
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Directory to write."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--experts",
    type=click.Choice(["bf16", "float32", "mxfp4"]),
    help="Expert weight storage (default: mxfp4 for gpt-oss presets, bf16 otherwise).",
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float32"]),
    default="bfloat16",
    show_default=True,
    help="Dense weight storage.",
)
def init(preset: str, out: str, seed: int, experts: str | None, dtype: str) -> None:
    """Write a random-initialised checkpoint of a preset shape (streamed tensor by tensor).

    \b
    Examples:
      mind4 init --preset small --out ./small
      mind4 init --preset gpt-oss-20b --out /data/oss20b-random
    """
    from .presets import get_preset, init_checkpoint, parameter_count

    cfg = get_preset(preset)
    experts = experts or ("mxfp4" if preset.startswith("gpt-oss") else "bf16")
    path = init_checkpoint(preset, out, seed=seed, experts=experts, dtype=dtype)
    click.echo(
        f"wrote {preset} ({parameter_count(cfg) / 1e6:.1f}M parameters, "
        f"{parameter_count(cfg, active=True) / 1e6:.1f}M active per token) to {path}"
    )


# ----------------------------------------------------------------------------- bench


@cli.command()
@click.option(
    "--preset",
    "-p",
    default="small",
    show_default=True,
    help="Shape to benchmark (a random checkpoint is made in a temp dir).",
)
@click.option("--checkpoint", "-c", help="Benchmark this checkpoint instead of a preset.")
@click.option("--backend", "-b", default="torch", show_default=True)
@click.option("--device", "-d", default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]))
@click.option(
    "--experts",
    type=click.Choice(["bf16", "float32", "mxfp4"]),
    help="Expert storage of the random preset checkpoint.",
)
@click.option("--prompt-tokens", default=512, show_default=True, help="Prefill length.")
@click.option(
    "--decode-tokens", default=64, show_default=True, help="Tokens decoded per measurement."
)
@click.option(
    "--contexts",
    default="200,2000",
    show_default=True,
    help="Positions at which decode speed is measured.",
)
@click.option("--batch", default="1", show_default=True, help="Decode batch size(s), e.g. 1,8.")
@click.option(
    "--limits/--no-limits",
    default=True,
    show_default=True,
    help="Measure the device's copy bandwidth and matmul rate; report each speed's fraction.",
)
@click.option("--threads", type=int, help="CPU threads (default: all cores).")
@click.option("--compare", help="Comma-separated backends to run on one checkpoint, one table.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), help="Save decode tokens/s vs context as a PNG."
)
@click.option("--json", "as_json", is_flag=True)
def bench(as_json: bool, compare: str | None, plot: str | None, **options: Any) -> None:
    """Measure prefill and decode tokens/s and peak memory.

    \b
    Examples:
      mind4 bench --preset small --device cpu --dtype float32 --json
      mind4 bench --backend triton --preset gpt-oss-20b --prompt-tokens 2048 \\
          --contexts 2048 --batch 1,8
      mind4 bench --compare torch,triton --contexts 128,1024,4096 --plot decode.png
    """
    from .bench import print_compare, run_bench, run_compare

    if compare:
        results = run_compare([b.strip() for b in compare.split(",") if b.strip()], **options)
    else:
        results = [run_bench(**options)]
    if plot:
        from .lab_plots import plot_bench

        plot_bench(results, plot)
    if compare:
        if as_json:
            click.echo(json.dumps(results, indent=2))
        else:
            print_compare(results)
        return
    result = results[0]
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"mind4 bench: {result['preset']} on {result['backend']}/{result['device']}/{result['dtype']}"
        )
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in result.items():
            if isinstance(value, float):
                value = f"{value:,.2f}"
            table.add_row(key, str(value))
        Console().print(table)


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: clear errors, tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="mind4", standalone_mode=False)
    except Mind4Error as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
