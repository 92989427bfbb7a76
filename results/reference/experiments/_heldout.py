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
