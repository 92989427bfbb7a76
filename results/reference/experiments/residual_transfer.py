"""Held-out size: the cross-size trajectory law alone, and corrected by its own misfit at the
same grid point of the smaller sizes (an experiment of session 11; not part of the served law).

    .venv/bin/python results/reference/experiments/residual_transfer.py reference   # or quick

Refits the cross-size law without the largest size (n_bootstrap=0, seed 0, as
`scaling.trajectory_backtest` does), then scores every run of the largest size after the first
quarter of the run:
- law: the law's prediction (the backtest's held-out-size number);
- prev / last2 / all: the law's prediction times exp(r), r the log residual (log measured - log
  law) at the same step of the run with the same tokens, peak LR, batch and schedule at the
  next smaller size / the mean over the two next smaller / over all smaller sizes;
- extrap: r extrapolated linearly in log N from the three next smaller sizes.
A law-free baseline: log loss at each step extrapolated linearly in log N from the same grid
point's runs at the smaller sizes (law_free_*).
"""

import sys

import numpy as np
import pandas as pd
from _heldout import fit_without_largest, load

from scaling.trajectory import SKIP_FRAC, fitted_steps, lr_schedule_of_run

name = sys.argv[1] if len(sys.argv) > 1 else "reference"
R, runs, curves = load(name)
law, n_max = fit_without_largest(runs, curves)
by_id = runs.set_index("run_id")


def observed(rid):
    lrs = lr_schedule_of_run(by_id.loc[rid])
    c = curves[curves["run_id"] == rid].dropna(subset=["loss"]).sort_values("step")
    steps = c["step"].to_numpy()
    return lrs, steps, c["loss"].to_numpy(), fitted_steps(steps, lrs, SKIP_FRAC)


def predicted(rid, steps):
    row = by_id.loc[rid]
    return law.predict(row["n_params"], lr_schedule_of_run(row), row["batch_tokens"], steps=steps)


best = set(
    runs[(runs["n_params"] == n_max) & (runs["schedule"] == "cosine")]
    .sort_values("loss")
    .groupby("cell")
    .head(1)["run_id"]
)
rows = []
for _, run in runs[runs["n_params"] == n_max].iterrows():
    lrs, steps, loss, keep = observed(run["run_id"])
    pred = predicted(run["run_id"], steps)

    def err(p, keep=keep, loss=loss):
        return float(np.mean(np.abs(p[keep] / loss[keep] - 1)))

    row = {"run": run["run_id"], "best": run["run_id"] in best, "law": err(pred)}
    same = runs[runs["n_params"] < n_max]
    for k in ("tokens", "lr", "batch_tokens", "schedule"):
        same = same[same[k] == run[k]]
    same = same.sort_values("n_params")
    if len(same):
        resid, logs = [], []
        for rid in same["run_id"]:
            _, s_steps, s_loss, _ = observed(rid)
            measured = pd.Series(np.log(s_loss), index=s_steps).reindex(steps).to_numpy()
            logs.append(measured)
            resid.append(measured - np.log(predicted(rid, steps)))
        resid, logs = np.array(resid), np.array(logs)
        x = np.log(same["n_params"].to_numpy(dtype=float))
        row["prev"] = err(pred * np.exp(resid[-1]))
        row["last2"] = err(pred * np.exp(resid[-2:].mean(0)))
        row["all"] = err(pred * np.exp(resid.mean(0)))
        if len(same) >= 3:
            fit = np.polyfit(x[-3:], resid[-3:], 1)
            row["extrap"] = err(pred * np.exp(np.polyval(fit, np.log(n_max))))
        if len(same) >= 2:
            row["law_free_all"] = err(np.exp(np.polyval(np.polyfit(x, logs, 1), np.log(n_max))))
            row["law_free_last2"] = err(
                np.exp(np.polyval(np.polyfit(x[-2:], logs[-2:], 1), np.log(n_max)))
            )
    rows.append(row)
t = pd.DataFrame(rows)
print(f"{name}: {len(t)} runs of the largest size (N = {n_max:,.0f}), {t['best'].sum()} cell bests")
print(
    "| prediction | runs | mean error, all | the law alone on them | cell bests | the law alone |"
)
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for col in ("law", "prev", "last2", "all", "extrap", "law_free_all", "law_free_last2"):
    if col not in t:
        continue
    m = t[col].notna()
    b = m & t["best"]
    print(
        f"| {col} | {m.sum()} | {t.loc[m, col].mean():.3%} | {t.loc[m, 'law'].mean():.3%} | "
        f"{t.loc[b, col].mean():.3%} | {t.loc[b, 'law'].mean():.3%} |"
    )
