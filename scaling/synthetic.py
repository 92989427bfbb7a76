"""Seeded synthetic sweeps drawn from known laws, for tests and the benchmark.

Each run's loss is L(N, D) plus quadratic penalties in log lr and log batch_tokens around the
true optima, plus noise; runs far above the optimal LR diverge (loss NaN) as real ones do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["TrueLaws", "make_sweep"]


@dataclass
class TrueLaws:
    loss: dict = field(
        default_factory=lambda: {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.36}
    )
    lr: dict = field(default_factory=lambda: {"coef": 2.0, "exp_N": -0.35, "exp_D": 0.08})
    batch: dict = field(default_factory=lambda: {"coef": 0.5, "exp_N": 0.05, "exp_D": 0.45})
    lr_curvature: float = 0.04  # loss increase per (ln lr - ln lr*)^2
    batch_curvature: float = 0.02
    # The optimal LR at batch bt is lr* (bt / B*)^lr_batch_exp (Adam's valley: about 0.5).
    lr_batch_exp: float = 0.0
    diverge_factor: float = 6.0  # runs above this multiple of lr* diverge

    def loss_at(self, n, d):
        p = self.loss
        return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]

    def lr_at(self, n, d):
        p = self.lr
        return p["coef"] * n ** p["exp_N"] * d ** p["exp_D"]

    def batch_at(self, n, d):
        p = self.batch
        return p["coef"] * n ** p["exp_N"] * d ** p["exp_D"]

    def lr_at_batch(self, n, d, batch_tokens):
        return self.lr_at(n, d) * (batch_tokens / self.batch_at(n, d)) ** self.lr_batch_exp


def make_sweep(
    *,
    seed: int = 0,
    sizes=(2e6, 6e6, 2e7, 6e7, 2e8),
    budget_per_param=(5.0, 20.0, 80.0),
    tokens: tuple[float, ...] | None = None,
    lr_factors=(1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0),
    batch_factors=(1 / 4, 1 / 2, 1.0, 2.0, 4.0),
    n_runs: int | None = None,
    noise: float = 0.004,
    truth: TrueLaws | None = None,
    missing: float = 0.0,
    pruned: float = 0.0,
    sweep: str = "synthetic",
    jitter: float = 0.15,
) -> tuple[pd.DataFrame, TrueLaws]:
    """A runs table (contract 1) over sizes x budgets. With n_runs, each cell samples n_runs
    (lr, batch) points log-uniformly over the factor ranges (like a TPE study) instead of the
    full grid. tokens gives fixed budgets; else budget_per_param x N. The grid is centred at the
    true optimum times a per-cell random offset (jitter, in ln units) so grids are not aligned
    with the truth. missing drops that share of runs; pruned marks that share as pruned."""
    truth = truth or TrueLaws()
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        budgets = tokens if tokens is not None else [k * n for k in budget_per_param]
        for d in budgets:
            lr_star, b_star = truth.lr_at(n, d), truth.batch_at(n, d)
            centre_lr = lr_star * np.exp(rng.normal(0, jitter))
            centre_b = b_star * np.exp(rng.normal(0, jitter))
            if n_runs is None:
                grid = [(f, g) for f in lr_factors for g in batch_factors]
            else:
                lo_f, hi_f = np.log(min(lr_factors)), np.log(max(lr_factors))
                lo_g, hi_g = np.log(min(batch_factors)), np.log(max(batch_factors))
                grid = [
                    (np.exp(rng.uniform(lo_f, hi_f)), np.exp(rng.uniform(lo_g, hi_g)))
                    for _ in range(n_runs)
                ]
            for f, g in grid:
                lr, bt = centre_lr * f, centre_b * g
                loss = (
                    truth.loss_at(n, d)
                    + truth.lr_curvature * np.log(lr / truth.lr_at_batch(n, d, bt)) ** 2
                    + truth.batch_curvature * np.log(bt / b_star) ** 2
                ) * np.exp(rng.normal(0, noise))
                diverged = lr > truth.diverge_factor * truth.lr_at_batch(n, d, bt)
                is_pruned = (not diverged) and rng.uniform() < pruned
                if rng.uniform() < missing:
                    continue
                state = "diverged" if diverged else ("pruned" if is_pruned else "complete")
                rows.append(
                    {
                        "run_id": f"r{len(rows):05d}",
                        "sweep": sweep,
                        "cell": f"N{n:.3g}-D{d:.3g}",
                        "n_params": n,
                        "tokens": d,
                        "lr": lr,
                        "batch_tokens": bt,
                        "loss": np.nan if diverged else loss,
                        "diverged": diverged,
                        "pruned": is_pruned,
                        "state": state,
                        "parametrization": "mup",
                        "base_width": 64,
                        "seq_len": 128,
                    }
                )
    return pd.DataFrame(rows), truth
