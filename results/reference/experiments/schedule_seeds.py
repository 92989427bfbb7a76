"""Held-out schedules at width 32 (12M tokens, peak LR 0.02, batch 4,096), per seed and on the
seed-averaged curves (an experiment of session 11).

    .venv/bin/python results/reference/experiments/schedule_seeds.py

Seed 0 is the sweep's runs (runs.csv, curves.csv); seeds 1 and 2 are in rerun_curves.csv. The
mean curve of a schedule is exp(mean over seeds of log loss) at each logged step. Scored as
`scaling.trajectory_backtest` scores held-out schedules.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from scaling.trajectory_backtest import backtest  # noqa: E402

R = ROOT / "results" / "reference"
runs = pd.read_csv(R / "runs.csv")
curves = pd.read_csv(R / "curves.csv")
reruns = pd.read_csv(R / "rerun_curves.csv")
sel = runs[
    (runs["width"] == 32)
    & (runs["tokens"] == 12001280)
    & (runs["lr"] == 0.02)
    & (runs["batch_tokens"] == 4096)
].set_index("schedule")
SCHEDULES = ("constant", "cosine", "wsd", "step")
seeds = {0: {s: curves[curves["run_id"] == sel.loc[s, "run_id"]] for s in SCHEDULES}}
for seed in (1, 2):
    seeds[seed] = {
        s: reruns[reruns["rerun"] == f"w32-d2-t1.2e7-{s}-lr0.02-b4096-seed{seed}"] for s in SCHEDULES
    }


def score(curvesets, tag, fit):
    rows, frames = [], []
    for sch, c in curvesets.items():
        row = sel.loc[sch].copy()
        row["run_id"], row["schedule"] = f"{tag}-{sch}", sch
        rows.append(row)
        c = c[["step", "loss"]].dropna().copy()
        c["run_id"] = f"{tag}-{sch}"
        frames.append(c)
    table, _, _ = backtest(
        pd.DataFrame(rows).reset_index(drop=True),
        pd.concat(frames),
        fit_schedules=fit,
        experiments=("schedule",),
    )
    return table.set_index("schedule")


mean = {}
for sch in SCHEDULES:
    logs = [np.log(v[sch].dropna(subset=["loss"]).set_index("step")["loss"]) for v in seeds.values()]
    mean[sch] = np.exp(sum(logs) / len(logs)).dropna().rename("loss").reset_index()
print("| curves | fitted on | WSD | step | fitted too (mean) | scatter floor (mean) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for fit in (("constant", "cosine"), ("constant", "cosine", "step")):
    for tag, sets in [(f"seed {s}", v) for s, v in seeds.items()] + [("mean of 3 seeds", mean)]:
        t = score(sets, tag.replace(" ", ""), fit)
        step = f"{t.loc['step', 'mean_rel_err']:.3%}" if "step" in t.index else "fitted"
        print(
            f"| {tag} | {'+'.join(fit)} | {t.loc['wsd', 'mean_rel_err']:.3%} | {step} | "
            f"{t['fitted_mean_rel_err'].mean():.3%} | {t['scatter_floor'].mean():.3%} |"
        )
