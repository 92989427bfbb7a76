"""Held-out schedules per seed and on the seed-averaged curves, at one grid point of each of
widths 32, 64 and 144 (12M tokens; the grid point of the sweep's schedule variants). Width 32
is session 11's experiment; widths 64 and 144 were added in session 18.

    .venv/bin/python results/reference/experiments/schedule_seeds.py [WIDTH ...]

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
SCHEDULES = ("constant", "cosine", "wsd", "step")
# width: (peak LR, batch tokens, tokens) of the schedule variants' grid point
POINTS = {32: (0.02, 4096, 12001280), 64: (0.01, 4096, 12001280), 144: (0.01, 2048, 11999232)}


def score(sel, curvesets, tag, fit):
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


def experiment(width):
    lr, batch, tokens = POINTS[width]
    sel = runs[
        (runs["width"] == width)
        & (runs["tokens"] == tokens)
        & (runs["lr"] == lr)
        & (runs["batch_tokens"] == batch)
    ].set_index("schedule")
    seeds = {0: {s: curves[curves["run_id"] == sel.loc[s, "run_id"]] for s in SCHEDULES}}
    for seed in (1, 2):
        seeds[seed] = {
            s: reruns[reruns["rerun"] == f"w{width}-d2-t1.2e7-{s}-lr{lr:g}-b{batch}-seed{seed}"]
            for s in SCHEDULES
        }
    mean = {}
    for sch in SCHEDULES:
        logs = [
            np.log(v[sch].dropna(subset=["loss"]).set_index("step")["loss"]) for v in seeds.values()
        ]
        mean[sch] = np.exp(sum(logs) / len(logs)).dropna().rename("loss").reset_index()
    print(f"\nwidth {width} (peak LR {lr:g}, batch {batch:,})\n")
    print("| curves | fitted on | WSD | step | fitted too (mean) | scatter floor (mean) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for fit in (("constant", "cosine"), ("constant", "cosine", "step")):
        sets = [(f"seed {s}", v) for s, v in seeds.items()] + [("mean of 3 seeds", mean)]
        for tag, curveset in sets:
            t = score(sel, curveset, tag.replace(" ", ""), fit)
            step = f"{t.loc['step', 'mean_rel_err']:.3%}" if "step" in t.index else "fitted"
            print(
                f"| {tag} | {'+'.join(fit)} | {t.loc['wsd', 'mean_rel_err']:.3%} | {step} | "
                f"{t['fitted_mean_rel_err'].mean():.3%} | {t['scatter_floor'].mean():.3%} |"
            )


for w in [int(a) for a in sys.argv[1:]] or sorted(POINTS):
    experiment(w)
