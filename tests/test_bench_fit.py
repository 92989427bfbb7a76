"""`python -m scaling.bench`: the fit benchmark, with the trajectory fit timed on real curves."""

import json
from pathlib import Path

import pandas as pd
import pytest

from scaling import bench

QUICK = Path(__file__).resolve().parents[1] / "results" / "quick"


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """Two sizes of the committed quick sweep, short runs only: a real but quick trajectory fit."""
    runs = pd.read_csv(QUICK / "runs.csv")
    runs = runs[runs["width"].isin([32, 48]) & (runs["tokens"] < 1e6)]
    runs = runs.groupby("width").head(3)  # 3 peak LRs per size
    curves = pd.read_csv(QUICK / "curves.csv")
    out = tmp_path_factory.mktemp("sweep")
    runs.to_csv(out / "runs.csv", index=False)
    curves[curves["run_id"].isin(runs["run_id"])].to_csv(out / "curves.csv", index=False)
    return out


def test_the_bench_times_the_trajectory_fit_on_the_given_curves(small_sweep, tmp_path, capsys):
    assert (
        bench.main(["--out", str(tmp_path), "--bootstrap", "0", "--curves-from", str(small_sweep)])
        == 0
    )
    result = json.loads((tmp_path / "fit.json").read_text())
    trajectory = result["trajectory_fit"]
    assert trajectory["runs"] == 6 and trajectory["seconds"] > 0
    assert trajectory["bootstrap_refits"] == 20 and 2 <= trajectory["bootstrap_refits_kept"] <= 20
    md = (tmp_path / "fit.md").read_text()
    assert "cross-size trajectory law, 6 real curves" in md
    printed = json.loads(capsys.readouterr().out)
    assert printed["trajectory_fit"] == trajectory
    # The shipped reference law's queries, up to a 7B target's tens of millions of steps.
    queries = result["trajectory_queries"]
    assert printed["trajectory_queries"] == queries
    assert [q["n_params"] for q in queries["queries"]] == [535_968, 1e9, 7e9]
    assert queries["queries"][-1]["steps"] > 10_000_000
    assert all(q["median_s"] > 0 for q in queries["queries"])
    assert all(0 <= gap < 1e-3 for gap in queries["blocks_vs_steps_2m"].values())
    assert "| 7e+09 | 2e+12 |" in md and "step-by-step sum at 2M steps" in md


def test_the_bench_can_skip_the_trajectory_fit(tmp_path):
    result = bench.run_bench(tmp_path, bootstrap=10, curves_from=None, queries_law=None)
    assert result["trajectory_fit"] is None and result["trajectory_queries"] is None
    assert "trajectory" not in (tmp_path / "fit.md").read_text().lower()


def test_a_missing_curves_folder_is_one_error_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--out", str(tmp_path), "--curves-from", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--curves-from" in err and "runs.csv not found" in err
    assert not (tmp_path / "fit.json").exists()
