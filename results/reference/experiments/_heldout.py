"""What the held-out-size experiments share: a sweep's finished runs and curves, and the
cross-size trajectory law refitted without its largest size (n_bootstrap=0, seed 0), as
`scaling.trajectory_backtest` refits it."""

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from scaling.runs import read_curves, read_runs  # noqa: E402
from scaling.trajectory import CrossSizeTrajectoryLaw  # noqa: E402


def load(name: str):
    """(results folder, finished runs, curves), run ids as strings."""
    folder = ROOT / "results" / name
    runs = read_runs(folder / "runs.csv")
    runs = runs[runs["state"] == "complete"].copy()
    runs["run_id"] = runs["run_id"].astype(str)
    curves = read_curves(folder / "curves.csv")
    curves["run_id"] = curves["run_id"].astype(str)
    return folder, runs, curves


def fit_without_largest(runs, curves):
    """(the law fitted on every size but the largest, the largest n_params)."""
    n_max = runs["n_params"].max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = CrossSizeTrajectoryLaw(n_bootstrap=0, seed=0).fit(
            runs[runs["n_params"] < n_max], curves
        )
    return law, n_max


def with_reruns(folder, runs, curves, keep=lambda rerun: True):
    """The runs and curves with the reruns of `rerun_runs.csv` that have a curve and another seed
    than the sweep's added as replicate runs (what a sweep with seeds would have made): each a
    copy of its sweep run's row with its own run id (the rerun's name), seed, final loss and
    device. keep(rerun row) chooses which."""
    import pandas as pd

    rr = pd.read_csv(folder / "rerun_runs.csv")
    rc = pd.read_csv(folder / "rerun_curves.csv")
    rr["rerun"] = [
        f"{r.cell}-{r.schedule}-lr{r.lr:g}-b{r.batch_tokens}-seed{r.seed}" for r in rr.itertuples()
    ]
    rr = rr[rr["rerun"].isin(set(rc["rerun"])) & (rr["seed"] != rr["sweep_seed"])]
    rr = rr.drop_duplicates("rerun")
    rr = rr[[bool(keep(r)) for _, r in rr.iterrows()]]
    base = runs.set_index("run_id").loc[rr["sweep_run_id"].astype(str)].reset_index()
    base["run_id"] = rr["rerun"].to_numpy()
    for col in ("seed", "loss", "device"):
        base[col] = rr[col].to_numpy()
    new_curves = rc[rc["rerun"].isin(set(rr["rerun"]))].rename(columns={"rerun": "run_id"})
    return (
        pd.concat([runs, base], ignore_index=True),
        pd.concat([curves, new_curves[curves.columns.intersection(new_curves.columns)]]),
    )
