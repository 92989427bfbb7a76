"""Train one proxy: `train(TrainConfig(...)) -> RunResult` with its whole loss curve.

The LR at every step comes from `scaling.schedules` (the function the trajectory law uses to
rebuild it); a run that diverges ends early with `diverged=True` instead of raising.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scaling.schedules import ScheduleSpec
from sweeps.data import Corpus, load_corpus
from sweeps.model import ModelConfig, build_model, count_params, make_optimizer

__all__ = ["RunResult", "TrainConfig", "resolve_device", "train"]

# A run has diverged when its training loss is non-finite or exceeds this multiple of the
# larger of its first loss and ln(vocab) (the loss of a uniform guess).
DIVERGENCE_FACTOR = 1.5
PRECISIONS = ("auto", "fp32", "bf16")
EVAL_BATCH = 32  # sequences per validation batch, at least
CHECK_EVERY = 10  # on a GPU, steps between divergence checks (and host-device syncs)

Callback = Callable[[int, int, float], None]


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Everything that defines one proxy run (saved with it)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lr: float = 0.01
    batch_tokens: int = 4096
    tokens: int = 1_000_000
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_tokens: int = 65_536
    seed: int = 0
    device: str = "auto"
    # "auto": bf16 autocast on CUDA, fp32 on the CPU; "fp32": fp32 everywhere (what a sweep
    # whose runs must agree across CPUs and GPUs asks for); "bf16": bf16 autocast everywhere.
    precision: str = "auto"
    corpus: str | Path | None = None
    corpus_vocab_size: int | None = None  # only for a pre-tokenized .bin corpus
    corpus_dtype: str | None = None  # its tokens: uint16 or uint32 (default: by vocab size)
    log_every: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.schedule, str):
            self.schedule = ScheduleSpec(name=self.schedule)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        for name in ("batch_tokens", "tokens", "eval_every", "eval_tokens", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_tokens < self.model.seq_len:
            raise ValueError(
                f"batch_tokens must hold at least one sequence: {self.batch_tokens=} < "
                f"seq_len={self.model.seq_len}"
            )
        if self.tokens < self.batch_tokens:
            # Otherwise `steps` rounds up to one step and the run trains on more than its budget.
            raise ValueError(
                f"tokens={self.tokens} is less than one batch (batch_tokens={self.batch_tokens})"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("weight_decay", "grad_clip"):  # grad_clip 0: no clipping
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def steps(self) -> int:
        return max(1, round(self.tokens / self.batch_tokens))

    @property
    def batch_size(self) -> int:
        return self.batch_tokens // self.model.seq_len

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schedule"] = self.schedule.to_dict()
        d["corpus"] = None if self.corpus is None else str(self.corpus)
        return d


@dataclass
class RunResult:
    config: TrainConfig
    n_params: int
    n_params_total: int
    tokens: int  # the run's budget D: steps * batch_tokens (its cell, even if it diverged)
    lr: float
    batch_tokens: int
    steps: int  # planned optimizer steps (the schedule's length)
    loss: float  # final validation loss; nan if diverged
    diverged: bool
    wall_seconds: float
    device: str
    curve: pd.DataFrame  # step, tokens, lr, train_loss, loss (val, NaN where not evaluated)
    tokens_trained: int = 0  # tokens actually trained on (fewer than `tokens` if diverged)

    @property
    def dtype(self) -> str:
        """What the run computed in: "bf16 autocast" or "fp32"."""
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        return "bf16 autocast" if uses_bf16(device_type, self.config.precision) else "fp32"

    def to_row(self) -> dict:
        """The runs-table (contract 1) columns this run knows."""
        cfg, m = self.config, self.config.model
        return {
            "n_params": self.n_params,
            "n_params_total": self.n_params_total,
            "tokens": self.tokens,
            "lr": self.lr,
            "batch_tokens": self.batch_tokens,
            "loss": self.loss,
            "diverged": self.diverged,
            "state": "diverged" if self.diverged else "complete",
            "width": m.width,
            "depth": m.depth,
            "n_heads": m.n_heads,
            "seq_len": m.seq_len,
            "vocab_size": m.vocab_size,
            "steps": self.steps,
            "schedule": cfg.schedule.name,
            "schedule_json": cfg.schedule.to_json(),
            "warmup_steps": cfg.schedule.n_warmup(self.steps),
            "weight_decay": cfg.weight_decay,
            "seed": cfg.seed,
            "flops": 6.0 * self.n_params * self.tokens,
            "wall_seconds": self.wall_seconds,
            "device": self.device,
            "dtype": self.dtype,
            "parametrization": m.parametrization,
            "base_width": m.base_width if m.mup else None,
        }


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch build or machine has no CUDA GPU")
    return dev


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    grad_clip: float,
    device: torch.device,
    autocast=nullcontext,
) -> torch.Tensor:
    """One optimizer step at LR `lr`; returns the (detached) training loss."""
    for group in optimizer.param_groups:  # scale, not overwrite, muP's per-group LRs
        group["lr"] = lr * group["lr_scale"]
    with autocast():
        loss = model.loss(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list, device: torch.device, autocast) -> float:
    model.eval()
    total = 0.0
    for x, y in batches:
        with autocast():
            total += model.loss(x.to(device), y.to(device)).item() * len(x)
    model.train()
    return total / sum(len(x) for x, _ in batches)


def train(
    config: TrainConfig,
    callback: Callback | None = None,
    *,
    corpus: Corpus | None = None,
    progress: bool = False,
) -> RunResult:
    """Train one proxy; `callback(step, tokens, val_loss)` runs at every evaluation and its
    exceptions (e.g. optuna.TrialPruned) propagate. `corpus` overrides `config.corpus` (to
    share one loaded corpus between runs); `progress` shows a progress bar."""
    if config.threads is None:
        return _train(config, callback, corpus, progress)
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, callback, corpus, progress)
    finally:
        torch.set_num_threads(previous)


def _train(
    config: TrainConfig, callback: Callback | None, corpus: Corpus | None, progress: bool
) -> RunResult:
    started = time.perf_counter()
    cfg, mcfg = config, config.model
    corpus = corpus or load_corpus(
        cfg.corpus, vocab_size=cfg.corpus_vocab_size, dtype=cfg.corpus_dtype
    )
    if corpus.vocab_size != mcfg.vocab_size:
        raise ValueError(f"corpus vocab_size {corpus.vocab_size} != model {mcfg.vocab_size}")
    corpus.check_seq_len(mcfg.seq_len)
    steps, batch_size = cfg.steps, cfg.batch_size
    corpus.check_budget(steps * batch_size * mcfg.seq_len)
    device = resolve_device(cfg.device)
    autocast = autocast_for(device, cfg.precision)

    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(device)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    lrs = cfg.schedule.lrs(cfg.lr, steps)
    train_batches = corpus.batches(batch_size, mcfg.seq_len, seed=cfg.seed)
    # The validation windows do not depend on the batch size: evaluate them in batches of at
    # least EVAL_BATCH sequences, held on the device (fewer, larger launches on a GPU).
    val_batches = [
        (x.to(device), y.to(device))
        for x, y in corpus.eval_batches(cfg.eval_tokens, max(batch_size, EVAL_BATCH), mcfg.seq_len)
    ]
    tokens_per_step = batch_size * mcfg.seq_len
    rows: list[dict] = []
    limit, diverged, val_loss = math.inf, False, math.nan
    bar = _progress(steps, progress)
    train_loss = math.nan
    # Reading the loss makes the host wait for the device: on a GPU, only at the steps that
    # log, evaluate or check for divergence (every CHECK_EVERY), so launches stay queued.
    check_every = 1 if device.type == "cpu" else CHECK_EVERY
    for step in range(steps):
        x, y = next(train_batches)
        loss = train_step(model, optimizer, x, y, lrs[step], cfg.grad_clip, device, autocast)
        done = step + 1
        is_eval = done % cfg.eval_every == 0 or done == steps
        is_log = done % cfg.log_every == 0
        if step == 0 or is_eval or is_log or done % check_every == 0:
            train_loss = loss.item()
            if step == 0:
                limit = DIVERGENCE_FACTOR * max(train_loss, math.log(mcfg.vocab_size))
            if not math.isfinite(train_loss) or train_loss > limit:
                diverged = True
        if is_eval and not diverged:
            val_loss = evaluate(model, val_batches, device, autocast)
            diverged = not math.isfinite(val_loss) or val_loss > limit
        if is_log or is_eval or diverged:
            rows.append(
                {
                    "step": done,
                    "tokens": done * tokens_per_step,
                    "lr": lrs[step],
                    "train_loss": train_loss,
                    "loss": val_loss if is_eval else math.nan,
                }
            )
        bar.update(1)
        if progress:
            bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val_loss:.3f}", refresh=False)
        if diverged:
            break
        if is_eval and callback is not None:
            callback(done, done * tokens_per_step, val_loss)
    bar.close()

    n_params, n_params_total = count_params(mcfg)
    return RunResult(
        config=cfg, n_params=n_params, n_params_total=n_params_total,
        tokens=steps * tokens_per_step, tokens_trained=done * tokens_per_step, lr=cfg.lr, batch_tokens=tokens_per_step, steps=steps,
        loss=math.nan if diverged else val_loss, diverged=diverged,
        wall_seconds=time.perf_counter() - started, device=_device_name(device),
        curve=pd.DataFrame(rows, columns=["step", "tokens", "lr", "train_loss", "loss"]),
    )  # fmt: skip


def uses_bf16(device_type: str, precision: str = "auto") -> bool:
    """Whether a TrainConfig.precision means bf16 autocast on this kind of device."""
    return precision == "bf16" or (precision == "auto" and device_type == "cuda")


def autocast_for(device: torch.device, precision: str = "auto"):
    """The autocast context factory for a device and a TrainConfig.precision."""
    if uses_bf16(device.type, precision):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()}threads"


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True)
