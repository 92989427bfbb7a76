"""Held-out size against more than one seed: how much of the cross-size law's miss on the runs
of width 144 is run-to-run scatter (an experiment of session 20; not part of the served law).

    .venv/bin/python results/reference/experiments/size_seeds.py

Refits the cross-size law without width 144 (n_bootstrap=0, seed 0), as
`scaling.trajectory_backtest` does for its held-out-size experiment, then scores each width-144
cosine grid point that was rerun with other seeds (`rerun_curves.csv`, made on the CPU; the
sweep's seed-0 runs are in `curves.csv`, made on an H100):
- the law's mean relative error against each seed's curve and against the mean curve of the
  seeds (exp of the mean log loss at each logged step);
- the seed gap: the mean |a / b - 1| between two seeds' curves on the same points, the error
  with which one seed's run predicts another's. With independent scatter of sigma per run,
  a perfect prediction of the expected curve scores about gap / sqrt(2) against one run, and
  gap / sqrt(2k) against the mean of k seeds.
Scored on the same points as the backtest (after the warmup and the first quarter of the run).

Last, seed 0's luck by width: at the 3M-token grid points at peak LR 0.02 and 0.04, rerun with
seeds 1 and 2 at widths 64, 96 and 144, the sweep's final loss against the mean of the three;
and the law refitted with those points' runs at widths 64 and 96 replaced by their seeds' mean
curves, scored on width 144's six points against the mean of their seeds.
"""

import numpy as np
import pandas as pd
from _heldout import fit_without_largest, load

from scaling.trajectory import SKIP_FRAC, fitted_steps, lr_schedule_of_run

TAG = {3: "3e6", 6: "6e6", 12: "1.2e7"}
R, runs, curves = load("reference")
reruns = pd.read_csv(R / "rerun_curves.csv")
law, n_max = fit_without_largest(runs, curves)
# Each run's and each rerun's logged losses by step, read once.
loss_of_run = {
    k: g.dropna(subset=["loss"]).set_index("step")["loss"].sort_index()
    for k, g in curves.groupby("run_id")
}
loss_of_rerun = {
    k: g.dropna(subset=["loss"]).set_index("step")["loss"].sort_index()
    for k, g in reruns.groupby("rerun")
}


def seed_curves(run):
    """{seed: losses by step}: the sweep's run (seed 0) and its reruns with seeds 1 and 2; and
    the sweep's seed rerun on the CPU (None where there is none)."""
    budget = TAG[round(run["tokens"] / 1e6)]
    stem = f"w{run['width']}-d2-t{budget}-cosine-lr{run['lr']:g}-b{int(run['batch_tokens'])}"
    seeds = {0: loss_of_run[run["run_id"]]}
    seeds.update(
        {s: loss_of_rerun[f"{stem}-seed{s}"] for s in (1, 2) if f"{stem}-seed{s}" in loss_of_rerun}
    )
    return seeds, loss_of_rerun.get(f"{stem}-seed0")


def mean_curve(seeds, steps):
    """exp(mean over the seeds of log loss) at these steps."""
    return np.exp(
        np.mean([np.log(c.reindex(steps).to_numpy(dtype=float)) for c in seeds.values()], axis=0)
    )


def err(pred, loss):
    return float(np.mean(np.abs(pred / loss - 1.0)))


rows = []
largest = runs[(runs["n_params"] == n_max) & (runs["schedule"] == "cosine")]
for _, run in largest.sort_values(["tokens", "batch_tokens", "lr"]).iterrows():
    lrs = lr_schedule_of_run(run)
    by_seed, cpu0 = seed_curves(run)
    if len(by_seed) < 2:
        continue
    steps = by_seed[0].index.to_numpy()
    steps = steps[fitted_steps(steps, lrs, SKIP_FRAC)]
    seeds = {s: c.reindex(steps).to_numpy(dtype=float) for s, c in by_seed.items()}
    pred = law.predict(n_max, lrs, run["batch_tokens"], steps=steps)
    mean = mean_curve(by_seed, steps)
    gaps = [err(seeds[a], seeds[b]) for i, a in enumerate(seeds) for b in list(seeds)[i + 1 :]]
    rows.append(
        {
            "tokens": TAG[round(run["tokens"] / 1e6)],
            "batch": int(run["batch_tokens"]),
            "lr": run["lr"],
            **{f"seed {s}": err(pred, seeds[s]) if s in seeds else np.nan for s in (0, 1, 2)},
            "mean of seeds": err(pred, mean),
            "law - mean": float(np.mean(pred / mean - 1.0)),
            "seed gap": float(np.mean(gaps)),
            "seed 0 highest": bool(seeds[0][-1] >= max(v[-1] for v in seeds.values())),
            "final loss, seed 0 / 1 / 2": " / ".join(f"{v[-1]:.4f}" for v in seeds.values()),
            "seed 0, CPU vs H100": np.nan if cpu0 is None else err(cpu0.reindex(steps), seeds[0]),
        }
    )

t = pd.DataFrame(rows)
show = t.copy()
for c in show.columns[3:]:
    if show[c].dtype == float:
        show[c] = [
            f"{x:+.2%}" if c == "law - mean" else f"{x:.2%}" if x == x else "" for x in show[c]
        ]
print("| " + " | ".join(show.columns) + " |")
print("|" + " --- |" * len(show.columns))
for row in show.itertuples(index=False):
    print("| " + " | ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in row) + " |")
print()
groups = [("all", t)] + [(f"{b} tokens", t[t["tokens"] == b]) for b in t["tokens"].unique()]
groups += [(f"peak LR {lr:g}", t[t["lr"] == lr]) for lr in sorted(t["lr"].unique())]
groups += [("peak LR <= 0.01", t[t["lr"] <= 0.0101]), ("peak LR >= 0.02", t[t["lr"] >= 0.0199])]
for label, sel in groups:
    cols = ("seed 0", "seed 1", "seed 2", "mean of seeds", "seed gap")
    print(
        f"- {label} ({len(sel)} grid points): "
        + ", ".join(f"{c} {sel[c].mean():.2%}" for c in cols if sel[c].notna().any())
        + f"; seed 0's final loss the highest of its seeds in {int(sel['seed 0 highest'].sum())}"
    )

# Seed 0's luck by width: the sweep's final loss against the mean over its seeds, at the grid
# points rerun at several widths (3M tokens, peak LR 0.02 and 0.04, every batch).
rr = pd.read_csv(R / "rerun_runs.csv")
rr = rr[(rr["schedule"] == "cosine") & (rr["seed"] > 0) & rr["cell"].str.endswith("-t3e6")]
rr = rr[rr["lr"] >= 0.0199]
print(
    "\n| width | grid points | seed 0 vs the mean of seeds 0-2, final loss (LR 0.02 then 0.04; "
    "batch 1,024, 2,048, 4,096) | mean |"
)
print("| ---: | ---: | --- | ---: |")
for cell, grp in sorted(rr.groupby("cell"), key=lambda kv: int(kv[0].split("-")[0][1:])):
    offs = []
    for _, g in grp.groupby(["lr", "batch_tokens"]):
        if len(g) < 2:
            continue
        finals = [g["sweep_loss"].iloc[0], *g["loss"]]
        offs.append(finals[0] / np.mean(finals) - 1.0)
    if offs:
        each = ", ".join(f"{o:+.1%}" for o in offs)
        print(f"| {cell.split('-')[0][1:]} | {len(offs)} | {each} | {np.mean(offs):+.2%} |")

# The same law refitted with those points' runs at widths 64 and 96 replaced by the mean curve of
# their three seeds, against the law as fitted: each scored on width 144's six points, against
# the mean of its seeds (a signed error below 0: the law predicts too low a loss).


high = runs[(runs["schedule"] == "cosine") & (runs["tokens"] < 3.1e6) & (runs["lr"] >= 0.0199)]
averaged = curves.copy()
for _, run in high[high["width"].isin([64, 96])].iterrows():
    idx = loss_of_run[run["run_id"]].index
    m = pd.Series(mean_curve(seed_curves(run)[0], idx), index=idx).dropna()
    averaged = pd.concat(
        [
            averaged[averaged["run_id"] != run["run_id"]],
            pd.DataFrame({"run_id": run["run_id"], "step": m.index, "loss": m.to_numpy()}),
        ]
    )
law_avg, _ = fit_without_largest(runs, averaged)
print()
for label, fitted in (("as fitted (seed 0)", law), ("widths 64, 96 averaged", law_avg)):
    signed, absolute = [], []
    for _, run in high[high["width"] == 144].iterrows():
        lrs = lr_schedule_of_run(run)
        by_seed, _ = seed_curves(run)
        steps = by_seed[0].index.to_numpy()
        steps = steps[fitted_steps(steps, lrs, SKIP_FRAC)]
        rel = fitted.predict(n_max, lrs, run["batch_tokens"], steps=steps) / mean_curve(
            by_seed, steps
        )
        signed.append(float(np.mean(rel - 1.0)))
        absolute.append(float(np.mean(np.abs(rel - 1.0))))
    print(
        f"- law {label}: width 144's six high-LR 3M points against the mean of their seeds, "
        f"signed {np.mean(signed):+.2%}, mean |error| {np.mean(absolute):.2%}"
    )
