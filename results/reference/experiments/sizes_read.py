"""How many fitted sizes the residual map should read (an experiment of session 22).

    .venv/bin/python results/reference/experiments/sizes_read.py

For each sweep (reference, quick) and each held-out width W beyond the two smallest, the
cross-size trajectory law is fitted once on the widths below W (no bootstrap), and every run of
width W is predicted with the map reading the nearest fitted size (1), the two nearest (2, the
rule before session 22) or three: mean over runs of the mean |predicted / measured - 1| on the
scored points (as `scaling.trajectory_backtest` scores them). Then, for the map of each law
fitted on every width, the transfer errors `choose_sizes_read` compares (each size beyond the two
smallest read from the smaller ones' rows) and the count it picks.
"""

import json
import time

import numpy as np
import pandas as pd

from scaling._residual_map import ResidualMap
from scaling.trajectory import CrossSizeTrajectoryLaw, _usable_runs, lr_schedule_of_run
from scaling.trajectory_backtest import SKIP_FRAC, _observed

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def held_out(sweep: str, width: int) -> None:
    runs = pd.read_csv(ROOT / f"results/{sweep}/runs.csv")
    curves = pd.read_csv(ROOT / f"results/{sweep}/curves.csv")
    curves["run_id"] = curves["run_id"].astype(str)
    runs = runs[runs["width"] <= width]
    ok, _ = _usable_runs(runs)
    ok = ok[ok.index.isin(set(curves["run_id"]))]
    t0 = time.time()
    law = CrossSizeTrajectoryLaw(n_bootstrap=0, skip_frac=SKIP_FRAC, seed=0)
    law.fit(runs[runs["width"] < width], curves)
    rmap = law.residual_map_
    print(
        f"\n{sweep}, width {width} held out (fit {time.time() - t0:.0f} s; the map of this fit "
        f"picks {rmap.n_sizes})"
    )
    chosen = rmap.n_sizes
    for k in (1, 2, 3):
        rmap.n_sizes = k
        errs, low, high = [], [], []
        for rid, row in ok[ok["width"] == width].iterrows():
            lrs = lr_schedule_of_run(row)
            steps, loss = _observed(curves, rid, lrs, SKIP_FRAC)
            pred = law.predict(row["n_params"], lrs, row["batch_tokens"], steps)
            e = float(np.mean(np.abs(pred / loss - 1)))
            errs.append(e)
            (low if row["lr"] <= 0.0101 else high).append(e)
        print(
            f"- {k} size(s): {len(errs)} runs, {np.mean(errs):.3%} (peak LR <= 0.01: "
            f"{np.mean(low):.3%} over {len(low)}; >= 0.02: {np.mean(high):.3%} over {len(high)})"
        )
    rmap.n_sizes = chosen


def served(sweep: str) -> None:
    laws = json.loads((ROOT / f"results/{sweep}/laws.json").read_text())

    def find(o):
        if isinstance(o, dict):
            if o.get("residual_map"):
                return o["residual_map"]
            return next((r for r in map(find, o.values()) if r), None)
        return None

    rmap = ResidualMap.from_dict(find(laws))
    errs = ", ".join(f"{k}: {v:.3%}" for k, v in rmap.transfer_error.items())
    print(f"\n{sweep} laws.json: transfer errors {errs}; reads {rmap.n_sizes}")


for sweep, widths in (("reference", (64, 96, 144)), ("quick", (64, 96))):
    served(sweep)
    for w in widths:
        held_out(sweep, w)
