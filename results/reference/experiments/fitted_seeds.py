"""The held-out-size backtest with seeds: the reruns of `rerun_runs.csv` (other seeds, made on
the CPU) added to the reference runs as replicates, as a sweep with `[search] seeds` would have
made them (an experiment of session 21; not part of the served law).

    .venv/bin/python results/reference/experiments/fitted_seeds.py

Runs `scaling.trajectory_backtest`'s held-out-size experiment (the cross-size law fitted on
widths 32-96, scored on every width-144 run and, where a point has several seeds, on the mean
curve of its seeds) three times:
1. replicates at width 144 only: the law is the backtest's, and the mean-of-seeds rows check
   the backtest's new scoring against size_seeds.py (session 20);
2. replicates at the fitted widths too (seeds 1 and 2 of every grid point at 3M and, since
   session 22, at 6M tokens, and the 12M reruns), fitted as runs, each setting's replicates
   sharing its weight (as the cross-size law does since session 21);
2u. as 2, each replicate weighed as a run of its own (a replicated setting weighs 3 times: the
   fit before session 21; `fitted_seeds.py 2u`, not run by default);
3. as 2, but each replicated fitted setting fitted once, on the mean curve of its seeds.
"""

import sys

import numpy as np
import pandas as pd
from _heldout import load, with_reruns

from scaling.trajectory_backtest import backtest

R, runs, curves = load("reference")
width = lambda r: int(r.cell.split("-")[0][1:])  # noqa: E731
parts = sys.argv[1:] or ["1", "2", "3"]


def mean_of_replicates(runs, curves):
    """Each fitted point (width < 144) run at several seeds replaced by one run: the sweep's row
    with the mean curve of its seeds (exp of the mean log loss at the steps all logged)."""
    fitted = runs[runs["width"] < runs["width"].max()]
    key = ["width", "tokens", "schedule", "lr", "batch_tokens"]
    drop, add = [], []
    for _, g in fitted.groupby(key):
        if g["seed"].nunique() < 2:
            continue
        ids = list(g["run_id"])
        c = curves[curves["run_id"].isin(ids)].dropna(subset=["loss"])
        wide = c.pivot_table(index="step", columns="run_id", values="loss").dropna()
        first = g.sort_values("seed")["run_id"].iloc[0]
        drop += ids[1:] if ids[0] == first else [i for i in ids if i != first]
        m = np.exp(np.log(wide).mean(axis=1))
        add.append(pd.DataFrame({"run_id": first, "step": m.index, "loss": m.to_numpy()}))
        drop.append(first)  # its curve is replaced; its row is kept
    kept_rows = runs[~runs["run_id"].isin(set(drop) - {a["run_id"].iloc[0] for a in add})]
    kept_curves = curves[~curves["run_id"].isin(set(drop))]
    return kept_rows, pd.concat([kept_curves, *add], ignore_index=True)


def report(label, runs, curves):
    table, _, _ = backtest(runs, curves, experiments=("size",))
    print(f"\n## {label}\n")
    for kind, g in table.groupby("experiment", sort=False):
        lo, hi = g[g["lr"] <= 0.0101], g[g["lr"] >= 0.0199]
        print(
            f"- {kind}: {len(g)} curves, mean error {g['mean_rel_err'].mean():.3%} "
            f"(peak LR <= 0.01: {lo['mean_rel_err'].mean():.3%} over {len(lo)}; "
            f">= 0.02: {hi['mean_rel_err'].mean():.3%} over {len(hi)}); law alone "
            f"{g['law_alone_mean_rel_err'].mean():.3%}; curve fitted too "
            f"{g['fitted_mean_rel_err'].mean():.3%}"
        )
    means = table[table["experiment"] == "held-out size, mean of seeds"]
    cos = means[means["schedule"] == "cosine"]
    print(
        f"- of those, the cosine grid points ({len(cos)}): {cos['mean_rel_err'].mean():.3%} "
        "(size_seeds.py scores the same points, against the law as fitted)"
    )
    print("\n| mean of seeds | peak LR | points | mean rel. err | law alone |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in means.sort_values(["run_id", "lr"]).itertuples():
        print(
            f"| {r.run_id} | {r.lr:g} | {r.n_points} | {r.mean_rel_err:.3%} | "
            f"{r.law_alone_mean_rel_err:.3%} |"
        )
    return table


if "1" in parts:
    r1, c1 = with_reruns(R, runs, curves, keep=lambda r: width(r) == 144)
    report("1. replicates at width 144 only", r1, c1)
if {"2", "2u", "3"} & set(parts):
    r2, c2 = with_reruns(R, runs, curves)
    print(f"\nreplicate runs added: {len(r2) - len(runs)}")
    if "2" in parts:
        report("2. replicates at every width, fitted as runs", r2, c2)
    if "2u" in parts:
        import collections

        import scaling.trajectory

        class EachOnce(collections.Counter):  # every run a setting of its own
            def __getitem__(self, key):
                return 1

        scaling.trajectory.Counter = EachOnce
        report("2u. replicates at every width, each weighed as a run of its own", r2, c2)
        scaling.trajectory.Counter = collections.Counter
    if "3" in parts:
        r3, c3 = mean_of_replicates(r2, c2)
        report("3. replicates at every width, each fitted point on its seeds' mean", r3, c3)
