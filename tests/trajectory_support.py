"""The runs-table row of a synthetic trajectory run, shared by the trajectory tests."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from scaling.schedules import ScheduleSpec

PEAK_LR, STEPS, BATCH_TOKENS = 1e-2, 500, 4096
# the columns of a trajectory frame, in order (loss_law_alone: without the residual map)
FRAME_COLUMNS = ["step", "tokens", "lr", "loss", "loss_low", "loss_high", "loss_law_alone"]


def run_row(
    run_id: str,
    n_params: float,
    spec: ScheduleSpec,
    loss: float,
    lr: float = PEAK_LR,
    batch_tokens: int = BATCH_TOKENS,
) -> dict:
    """One finished run of STEPS steps at this peak LR and batch (contract 1 columns)."""
    return {
        "run_id": run_id,
        "n_params": n_params,
        "tokens": STEPS * batch_tokens,
        "lr": lr,
        "batch_tokens": batch_tokens,
        "loss": loss,
        "steps": STEPS,
        "schedule": spec.name,
        "schedule_json": spec.to_json(),
        "diverged": False,
        "pruned": False,
        "state": "complete",
    }


@functools.cache
def quick_held_out():
    """The committed `quick` sweep's cross-size trajectory law fitted without its largest size
    (real curves): (law, runs indexed by run_id, curves, mask of the held-out runs)."""
    from scaling.runs import read_runs
    from scaling.trajectory import CrossSizeTrajectoryLaw

    root = Path(__file__).resolve().parents[1] / "results" / "quick"
    runs = read_runs(root / "runs.csv")
    runs.index = runs["run_id"].astype(str)
    curves = pd.read_csv(root / "curves.csv")
    curves["run_id"] = curves["run_id"].astype(str)
    held = runs["n_params"] >= 0.99 * runs["n_params"].max()
    law = CrossSizeTrajectoryLaw(n_bootstrap=0, skip_frac=0.25, seed=0).fit(runs[~held], curves)
    return law, runs, curves, held
