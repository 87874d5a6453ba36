"""The training loop: AdamW, warm-up + cosine, accumulation, clipping, autocast, DDP.

One optimiser step::

    lr = schedule(step)                                  linear warm-up, then cosine to min_lr
    for m in range(grad_accumulation):                   (gradients synchronised on the last)
        x, y = batch(step, m)                            (B, T) inputs, (B, T) targets
        logits, aux = model(x, return_aux_loss=True)     (B, T, V), MoE load-balancing loss
        loss = cross_entropy(logits, y) + aux_loss_coef * aux
        (loss / grad_accumulation).backward()
    clip_grad_norm_(params, grad_clip); adamw.step()

Everything that decides the numbers (initial weights, batches, learning rate)
is a function of the config and the step, and a checkpoint holds the float32
weights and the AdamW moments exactly, so ``--resume`` continues bit-for-bit
on CPU. Under ``torchrun`` every process trains on its slice of the same global
batch with DistributedDataParallel (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from mind4_core.config import ModelConfig
from mind4_core.errors import CheckpointError, ConfigError, Mind4Error

from ..model import Transformer
from . import data as data_mod
from . import state as state_mod
from .config import TrainConfig, differences
from .metrics import RunLog

LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- schedule


def learning_rate(step: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    """Linear warm-up over ``warmup`` steps to ``lr``, then cosine decay to ``min_lr``
    at ``max_steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    decay = max(1, max_steps - warmup)
    progress = min(1.0, (step - warmup) / decay)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decoupled weight decay on matrices (embedding, projections,
    router, experts), none on biases, norm scales and sinks."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.dim() >= 2 and not name.endswith("bias")  # expert biases are (E, n)
        (decay if is_matrix else no_decay).append((name, p))
    return [
        {
            "params": [p for _, p in decay],
            "names": [n for n, _ in decay],
            "weight_decay": weight_decay,
        },
        {
            "params": [p for _, p in no_decay],
            "names": [n for n, _ in no_decay],
            "weight_decay": 0.0,
        },
    ]


# ----------------------------------------------------------------------------- processes


@attrs.frozen
class Distributed:
    """Where this process sits in a ``torchrun`` job (``world_size == 1``: alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def choose_device(preference: str, dist: Distributed) -> torch.device:
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank if dist.enabled else 0)
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("training.device: 'cuda' was asked for but torch sees no CUDA GPU")
        if dist.enabled and device.index is None:
            device = torch.device("cuda", dist.local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("training.device: 'mps' was asked for but it is not available here")
    return device


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    if setting == "off":
        return None
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[setting]


# ----------------------------------------------------------------------------- stopping


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step and save;
    a second Ctrl-C aborts at once."""

    def __init__(self, notify: Callable[[str], None] | None = None):
        self.requested = False
        self.notify = notify
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True
        if self.notify:
            self.notify("stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self.uninstall()


# ----------------------------------------------------------------------------- result


@attrs.define
class TrainResult:
    step: int
    out_dir: Path
    checkpoint: Path | None
    model_dir: Path | None
    interrupted: bool
    val_loss: float | None
    val_bpb: float | None
    tokens_per_s: float
    train_losses: list[float]


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        progress: bool | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
        console: Any = None,
        save: bool = True,
    ):
        self.cfg = config
        #: False: write no checkpoint, export or log (benchmarks)
        self.write_files = save
        self.resume = resume
        self.show_progress = config.log.progress if progress is None else progress
        self.on_step = on_step
        self.dist = distributed_from_env()
        from rich.console import Console

        self.console = console or Console(highlight=False)

    # -- messages ---------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.dist.main:
            self.console.print(message, markup=False, soft_wrap=True)

    # -- setup ------------------------------------------------------------------

    def _init_process_group(self, device: torch.device) -> None:
        if self.dist.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend=backend)

    def _barrier(self) -> None:
        if self.dist.enabled:
            torch.distributed.barrier()

    def _all_sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.dist.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _prepare_data(self, tokenizer: Any) -> data_mod.TokenData:
        cfg = self.cfg
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else cfg.out_dir / "data"

        def prepare() -> data_mod.TokenData:
            return data_mod.prepare(
                tokenizer,
                cfg.data.sources,
                cfg.data.extensions,
                cache,
                context_length=cfg.training.context_length,
                validation_fraction=cfg.data.validation_fraction,
                log=self.say,
            )

        if not self.dist.enabled:
            return prepare()
        # rank 0 tokenises; the others wait, then find the cached file
        error = None
        if self.dist.main:
            try:
                result = prepare()
            except Mind4Error as exc:
                error = exc
        failed = self._all_sum([1.0 if error else 0.0], self.device)[0]
        if error:
            raise error
        if failed:
            raise data_mod.DataError("the data could not be prepared (see the error of rank 0)")
        return result if self.dist.main else prepare()

    def _model_config(self, tokenizer: Any) -> ModelConfig:
        cfg = self.cfg
        mc = cfg.model_config(n_vocab=tokenizer.n_vocab)
        if mc.vocab_size < tokenizer.n_vocab:
            raise ConfigError(
                f"{cfg.source}: model.vocab_size is {mc.vocab_size} but encoding "
                f"{tokenizer.name!r} has {tokenizer.n_vocab} tokens; use vocab_size >= "
                f"{tokenizer.n_vocab} (or leave it out to take the encoding's)"
            )
        if cfg.training.context_length > mc.max_context_length:
            raise ConfigError(
                f"{cfg.source}: training.context_length ({cfg.training.context_length}) exceeds "
                f"model.max_context_length ({mc.max_context_length})"
            )
        return mc

    # -- checkpoints ------------------------------------------------------------

    def _state_fingerprint(self) -> dict[str, Any]:
        flat = {k: v for k, v in self.cfg.flat().items() if not k.startswith("model.")}
        flat.update({f"model.{k}": v for k, v in self.model_config.to_dict().items()})
        flat["world_size"] = self.dist.world_size
        return flat

    def _optimizer_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        tensors, steps = {}, {}
        for name, p in self.model.named_parameters():
            st = self.optimizer.state.get(p)
            if not st:
                continue
            tensors[f"{name}.exp_avg"] = st["exp_avg"].detach().float().cpu().numpy()
            tensors[f"{name}.exp_avg_sq"] = st["exp_avg_sq"].detach().float().cpu().numpy()
            steps[name] = int(st["step"].item() if torch.is_tensor(st["step"]) else st["step"])
        return tensors, steps

    def save(self, step: int) -> Path | None:
        """Checkpoint after ``step`` optimiser steps (rank 0 writes; all ranks wait)."""
        target = self.cfg.out_dir / "checkpoint"
        if not self.write_files:
            return None
        error: Exception | None = None
        if self.dist.main:
            opt_tensors, adam_steps = self._optimizer_tensors()
            state = {
                "step": step,
                "tokens": self.tokens_seen,
                "elapsed_s": self.elapsed,
                "adam_steps": adam_steps,
                "fingerprint": self._state_fingerprint(),
                "config": self.cfg.to_dict(),
                "torch": torch.__version__,
            }
            try:
                state_mod.save_checkpoint(
                    target,
                    self.model_config,
                    self.model.to_checkpoint_tensors(),
                    opt_tensors,
                    state,
                    tokenizer=self.cfg.encoding,
                )
            except OSError as exc:
                kept = (
                    f"the previous checkpoint (step {self.saved_step}) in {target} is intact"
                    if self.saved_step is not None
                    else "no earlier checkpoint exists"
                )
                error = CheckpointError(
                    f"could not write the checkpoint of step {step} to {target}: {exc}. {kept}. "
                    "Free some disk space, then continue with --resume."
                )
        failed = self._all_sum([1.0 if error else 0.0], self.device)[0]
        if error:
            raise error
        if failed:
            raise CheckpointError(f"rank 0 could not write the checkpoint of step {step}")
        self.saved_step = step
        return target

    def _restore(self) -> int:
        target = self.cfg.out_dir / "checkpoint"
        if not state_mod.has_checkpoint(target):
            raise CheckpointError(
                f"--resume: no checkpoint in {target}; start without --resume, or set "
                "checkpoint.out_dir to the run you want to continue"
            )
        ckpt, opt_tensors, state = state_mod.load_checkpoint(target)
        try:
            old = state.get("fingerprint", {})
            changed = differences(old, self._state_fingerprint())
            if changed:
                shown = "; ".join(
                    f"{k}: {old.get(k)!r} -> {self._state_fingerprint().get(k)!r}"
                    for k in changed[:6]
                )
                raise CheckpointError(
                    f"--resume: the checkpoint in {target} was trained with a different config "
                    f"({shown}). Resume with the config it was trained with, or start a new run "
                    f"in another checkpoint.out_dir. A resume may change only: "
                    "training.max_steps, eval.*, checkpoint.interval/out_dir/export_*, log.*"
                )
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(torch.from_numpy(np.array(ckpt.float32(name))))
        finally:
            ckpt.close()
        # AdamW state, by parameter name, through the optimiser's own loader
        sd = self.optimizer.state_dict()
        index = 0
        for group in self.optimizer.param_groups:
            for name in group["names"]:
                if name in state["adam_steps"]:
                    sd["state"][index] = {
                        "step": torch.tensor(float(state["adam_steps"][name])),
                        "exp_avg": torch.from_numpy(opt_tensors[f"{name}.exp_avg"]),
                        "exp_avg_sq": torch.from_numpy(opt_tensors[f"{name}.exp_avg_sq"]),
                    }
                index += 1
        self.optimizer.load_state_dict(sd)
        self.tokens_seen = int(state["tokens"])
        self.elapsed_before = float(state["elapsed_s"])
        self.saved_step = int(state["step"])
        return int(state["step"])

    # -- evaluation -------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Validation cross-entropy (nats/token) and bits per byte of its text."""
        cfg = self.cfg
        T = cfg.training.context_length
        val = self.data.validation
        spans = data_mod.validation_windows(len(val), T, cfg.eval.max_tokens)
        spans = spans[self.dist.rank :: self.dist.world_size]
        self.model.eval()
        nll = tokens = nbytes = 0.0
        B = cfg.eval.batch_size
        for i in range(0, len(spans), B):
            group = spans[i : i + B]
            for length in sorted({n for _, n in group}):  # the last window may be shorter
                starts = np.array([s for s, n in group if n == length])
                w = torch.from_numpy(data_mod.windows(val, starts, length)).to(self.device)
                with self._autocast():
                    logits = self.model(w[:, :-1])  # (b, n-1, V)
                targets = w[:, 1:]
                losses = F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]),
                    targets.reshape(-1),
                    reduction="none",
                )
                nll += losses.double().sum().item()
                tokens += targets.numel()
                nbytes += self.byte_lengths[targets.reshape(-1)].sum().item()
        self.model.train()
        nll, tokens, nbytes = self._all_sum([nll, tokens, nbytes], self.device)
        loss = nll / max(tokens, 1)
        bpb = nll / LN2 / max(nbytes, 1)
        return loss, bpb

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_step(self, model: torch.nn.Module, batches: data_mod.Batches, step: int) -> dict:
        """One optimiser step (``step`` counts from 0); returns its log row."""
        cfg, tc, oc = self.cfg, self.cfg.training, self.cfg.optimizer
        lr = learning_rate(step, oc.lr, oc.min_lr, oc.warmup_steps, tc.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ce_sum = aux_sum = 0.0
        for m in range(tc.grad_accumulation):
            tokens = torch.from_numpy(batches.micro_batch(step, m)).to(self.device)  # (B, T+1)
            sync = not self.dist.enabled or m == tc.grad_accumulation - 1
            with contextlib.nullcontext() if sync else model.no_sync():
                with self._autocast():
                    logits, aux = model(tokens[:, :-1], return_aux_loss=True)  # (B, T, V), ()
                ce = F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
                )
                loss = ce + cfg.moe.aux_loss_coef * aux.float()
                (loss / tc.grad_accumulation).backward()
            ce_sum += ce.item()
            aux_sum += aux.item()
        params = self.params
        for p in params:  # an expert no token chose: a zero gradient, not a skipped update
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if oc.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, oc.grad_clip))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ce_sum, aux_sum = self._all_sum([ce_sum, aux_sum], self.device)
        n_micro = tc.grad_accumulation * self.dist.world_size
        return {
            "kind": "train",
            "lr": lr,
            "loss": ce_sum / n_micro,
            "aux_loss": aux_sum / n_micro,
            "grad_norm": grad_norm,
        }

    # -- the loop ---------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg, tc = self.cfg, self.cfg.training
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self.device = choose_device(tc.device, self.dist)
        self._init_process_group(self.device)
        self.amp_dtype = autocast_dtype(tc.autocast, self.device)

        from mind4_core.engine import load_tokenizer

        tokenizer = load_tokenizer(cfg.encoding)
        self.model_config = self._model_config(tokenizer)
        out = cfg.out_dir
        if not self.resume and state_mod.has_checkpoint(out / "checkpoint"):
            raise CheckpointError(
                f"{out / 'checkpoint'} already holds a checkpoint; continue it with --resume, "
                "or choose another checkpoint.out_dir (or delete that folder)"
            )
        self.data = self._prepare_data(tokenizer)
        self.byte_lengths = torch.from_numpy(data_mod.token_byte_lengths(tokenizer)).to(self.device)

        torch.manual_seed(tc.seed)
        self.model = Transformer(self.model_config, device=self.device, init=False)
        self.model.init_weights(seed=tc.seed)
        self.model.train()
        oc = cfg.optimizer
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, oc.weight_decay),
            lr=oc.lr,
            betas=tuple(oc.betas),
            eps=oc.eps,
        )
        self.tokens_seen, self.elapsed_before, self.saved_step = 0, 0.0, None
        start = self._restore() if self.resume else 0

        if self.dist.main and self.write_files:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train.yaml").write_text(
                yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8"
            )
        log = RunLog(out)
        if self.dist.main and self.write_files:
            log.start(start if self.resume else None)

        model = self.model
        if self.dist.enabled:
            model = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # an expert may receive no tokens in a batch
            )
        batches = data_mod.Batches(
            self.data,
            seed=tc.seed,
            batch_size=tc.batch_size,
            context_length=tc.context_length,
            grad_accumulation=tc.grad_accumulation,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        tokens_per_step = batches.global_batch * tc.context_length
        n_params = sum(p.numel() for p in self.model.parameters())
        self.say(
            f"mind4 train: {n_params / 1e6:.2f}M parameters, {len(self.data):,} tokens "
            f"({self.data.split:,} train / {len(self.data.validation):,} validation), "
            f"{tokens_per_step:,} tokens per step on {self.dist.world_size} x {self.device}"
            f"{' (bf16 autocast)' if self.amp_dtype == torch.bfloat16 else ''}; steps "
            f"{start}..{tc.max_steps} -> {out}"
        )

        val_loss = val_bpb = None
        last_eval_step = -1
        interrupted = False
        step = start
        train_time, train_tokens = 0.0, 0
        self.params = list(self.model.parameters())
        t_start = time.perf_counter()
        progress = _Progress(self, start, tc.max_steps) if self.dist.main else None

        def elapsed() -> float:
            return self.elapsed_before + time.perf_counter() - t_start

        with StopRequest(self.say) as stop, progress or contextlib.nullcontext():
            while step < tc.max_steps:
                t0 = time.perf_counter()
                row = self._train_step(model, batches, step)
                step += 1
                self.tokens_seen += tokens_per_step
                dt = time.perf_counter() - t0
                train_time += dt
                train_tokens += tokens_per_step
                row.update(
                    step=step,
                    tokens=self.tokens_seen,
                    tokens_per_s=tokens_per_step / dt,
                    elapsed_s=elapsed(),
                )
                if self.dist.main:
                    if self.write_files:
                        log.append(row)
                    progress.update(step, row)
                if self.on_step:
                    self.on_step(step, row)

                stop_now = self._all_sum([1.0 if stop.requested else 0.0], self.device)[0] > 0
                done = step == tc.max_steps
                if done or (cfg.eval.interval and step % cfg.eval.interval == 0):
                    val_loss, val_bpb = self.evaluate()
                    last_eval_step = step
                    if self.dist.main and self.write_files:
                        log.append(
                            {
                                "kind": "eval",
                                "step": step,
                                "tokens": self.tokens_seen,
                                "val_loss": val_loss,
                                "val_bpb": val_bpb,
                                "elapsed_s": elapsed(),
                            }
                        )
                        log.plot()
                    if self.dist.main:
                        progress.note(
                            f"step {step}: validation loss {val_loss:.4f}, {val_bpb:.4f} bits/byte"
                        )
                if (
                    stop_now
                    or done
                    or (cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0)
                ):
                    self.elapsed = elapsed()
                    self.save(step)
                if stop_now:
                    interrupted = True
                    break

        if self.dist.main and self.write_files:
            log.plot()
        model_dir = None
        if not interrupted and step == tc.max_steps and self.dist.main and self.write_files:
            model_dir = state_mod.export_model(
                out / "model",
                self.model_config,
                self.model.to_checkpoint_tensors(),
                experts=cfg.checkpoint.export_experts,
                dtype=cfg.checkpoint.export_dtype,
                tokenizer=cfg.encoding,
            )
        if (
            self.saved_step is None and step > start and self.write_files
        ):  # e.g. max_steps already reached
            self.elapsed = elapsed()
            self.save(step)
        self._barrier()
        if interrupted:
            again = " ".join(
                ["mind4 train", *([cfg.path] if cfg.path else [])]
                + [f"--set {o}" for o in cfg.overrides]
                + ["--resume"]
            )
            self.say(
                f"stopped at step {step}; checkpoint saved in {out / 'checkpoint'}. "
                f"Continue with: {again}"
            )
        elif last_eval_step == step and val_loss is not None:
            self.say(
                f"done: step {step}, validation loss {val_loss:.4f}, {val_bpb:.4f} bits/byte, "
                f"{train_tokens / max(train_time, 1e-9):,.0f} tokens/s; model in {model_dir or out}"
            )
        return TrainResult(
            step=step,
            out_dir=out,
            checkpoint=out / "checkpoint" if self.saved_step is not None else None,
            model_dir=model_dir,
            interrupted=interrupted,
            val_loss=val_loss,
            val_bpb=val_bpb,
            tokens_per_s=train_tokens / max(train_time, 1e-9),
            train_losses=log.train_losses() if self.dist.main else [],
        )


class _Progress:
    """A rich progress bar (loss, tokens/s, ETA) on a terminal; plain lines otherwise."""

    def __init__(self, trainer: Trainer, start: int, total: int):
        self.trainer = trainer
        self.console = trainer.console
        self.start, self.total = start, total
        self.enabled = trainer.show_progress
        self.live = self.enabled and self.console.is_terminal
        self.every = trainer.cfg.log.print_interval
        self.rate = None
        self.t0 = time.perf_counter()
        self.bar = None

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(
                "train", total=self.total, completed=self.start, loss="-", rate="-"
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, step: int, row: dict[str, Any]) -> None:
        rate = row["tokens_per_s"]
        self.rate = rate if self.rate is None else 0.9 * self.rate + 0.1 * rate
        if self.bar is not None:
            self.bar.update(
                self.task, completed=step, loss=f"{row['loss']:.4f}", rate=f"{self.rate:,.0f}"
            )
        elif self.enabled and (step % self.every == 0 or step == self.total):
            spent = time.perf_counter() - self.t0
            eta = spent / max(step - self.start, 1) * (self.total - step)
            self.console.print(
                f"step {step}/{self.total}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
                f"{self.rate:,.0f} tok/s  elapsed {_hms(spent)}  ETA {_hms(eta)}",
                markup=False,
                soft_wrap=True,
            )

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False, soft_wrap=True)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
