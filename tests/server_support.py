"""Shared by the server tests: a small synthetic sweep fitted into a law file with
scaling.fit (so the tests never depend on committed results), and a free local port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd

import scaling
from scaling.schedules import ScheduleSpec
from scaling.trajectory import CrossSizeTrajectoryLaw

# The law the synthetic sweep is drawn from: L = E + A/N^alpha + B/D^beta + LR/batch penalty.
E, A, B, ALPHA, BETA = 1.8, 30.0, 200.0, 0.34, 0.29


def optimal_lr(n_params: float, tokens: float) -> float:
    return 0.02 * (n_params / 1e6) ** -0.3 * (tokens / 1e8) ** 0.05


def optimal_batch(n_params: float, tokens: float) -> float:
    return 2.0e4 * (tokens / 1e8) ** 0.4


def synthetic_runs(sweep: str = "synthetic", seed: int = 0) -> pd.DataFrame:
    """A 4 x 3 grid of (N, D) cells, 5 LRs x 5 batches each, with small noise."""
    rng = np.random.default_rng(seed)
    schedule = ScheduleSpec("cosine")
    rows = []
    for width, n_params in ((64, 2.0e5), (128, 8.0e5), (256, 3.2e6), (512, 1.28e7)):
        for tokens in (2e7, 8e7, 3.2e8):
            lr_star, batch_star = optimal_lr(n_params, tokens), optimal_batch(n_params, tokens)
            for lr_mult in (0.25, 0.5, 1.0, 2.0, 4.0):
                for batch_mult in (0.25, 0.5, 1.0, 2.0, 4.0):
                    lr, batch = lr_star * lr_mult, batch_star * batch_mult
                    loss = (
                        E
                        + A / n_params**ALPHA
                        + B / tokens**BETA
                        + 0.2 * np.log(lr_mult) ** 2
                        + 0.1 * np.log(batch_mult) ** 2
                    ) * (1 + 0.002 * rng.standard_normal())
                    steps = max(1, round(tokens / batch))
                    rows.append(
                        {
                            "run_id": f"{sweep}-{len(rows)}",
                            "sweep": sweep,
                            "cell": f"w{width}-d2-t{tokens:g}",
                            "n_params": n_params,
                            "n_params_total": n_params * 1.1,
                            "tokens": tokens,
                            "lr": lr,
                            "batch_tokens": batch,
                            "loss": loss,
                            "diverged": False,
                            "pruned": False,
                            "state": "complete",
                            "width": width,
                            "depth": 2,
                            "n_heads": width // 32,
                            "seq_len": 128,
                            "vocab_size": 256,
                            "steps": steps,
                            "schedule": schedule.name,
                            "schedule_json": schedule.to_json(),
                            "warmup_steps": max(1, round(0.02 * steps)),
                            "weight_decay": 0.1,
                            "seed": 0,
                            "flops": 6 * n_params * tokens,
                            "wall_seconds": 1.0,
                            "device": "cpu",
                            "parametrization": "mup",
                            "base_width": 64,
                        }
                    )
    return pd.DataFrame(rows)


_DOCUMENTS: dict[str, dict] = {}


def law_document(sweep: str = "synthetic") -> dict:
    """The law file (contract 2) of the synthetic sweep, fitted once per test process.

    The loss, LR and batch laws come from scaling.fit; the trajectory law is fitted on one
    curve per size with light settings (scaling.fit's own settings take minutes) and stored
    under "trajectory", where scaling.fit(runs, curves) puts it."""
    if sweep not in _DOCUMENTS:
        runs = synthetic_runs(sweep)
        document = scaling.fit(runs, bootstrap=5, seed=0, n_jobs=1).to_dict()
        curves = synthetic_curves(runs[runs["tokens"] == runs["tokens"].min()], points=6)
        trajectory = CrossSizeTrajectoryLaw(n_starts=1, n_bootstrap=2, max_segments=10, seed=0)
        document["trajectory"] = trajectory.fit(runs, curves).to_dict()
        _DOCUMENTS[sweep] = json.loads(json.dumps(document))
    return _DOCUMENTS[sweep]


def write_law_file(laws_dir: Path, sweep: str = "synthetic", law_id: str | None = None) -> Path:
    """Save the fitted synthetic sweep as <laws_dir>/<law_id>/laws.json; a law_id other than
    the sweep's is written into the file, as a sweep of that name would have it."""
    law_id = law_id or sweep
    path = laws_dir / law_id / "laws.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**law_document(sweep), "id": law_id}))
    return path


def fitted_laws(laws_dir: Path, law_id: str = "synthetic") -> scaling.ScalingLaws:
    return scaling.load(str(laws_dir / law_id / "laws.json"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def synthetic_curves(runs: pd.DataFrame, points: int = 10) -> pd.DataFrame:
    """Logged losses of the runs at the optimal LR and batch (one curve per cell): the loss law
    at the tokens seen so far, plus an excess that shrinks as the LR anneals."""
    optimal = np.isclose(runs["lr"], optimal_lr(runs["n_params"], runs["tokens"])) & np.isclose(
        runs["batch_tokens"], optimal_batch(runs["n_params"], runs["tokens"])
    )
    rows = []
    for run in runs[optimal].itertuples():
        lrs = ScheduleSpec.from_json(run.schedule_json).lrs(run.lr, int(run.steps))
        steps = np.unique(np.geomspace(max(2, run.steps // 50), run.steps, points).round())
        steps = steps.astype(int)
        seen = steps * run.batch_tokens
        loss = (E + A / run.n_params**ALPHA + B / seen**BETA) * (
            1.0 + 0.03 * lrs[steps - 1] / lrs.max()
        )
        for step, value, lr in zip(steps, loss, lrs[steps - 1], strict=True):
            rows.append(
                {
                    "run_id": run.run_id,
                    "step": int(step),
                    "tokens": float(step * run.batch_tokens),
                    "lr": float(lr),
                    "loss": float(value),
                    "train_loss": float(value),
                }
            )
    return pd.DataFrame(rows)
