"""The extrapolation backtest (issue 7): held-out size and budget, on sweeps drawn from known
laws, and the grid reading of the loss at predicted hyperparameters."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.backtest import extrapolation_backtest, grid_loss_at, main
from scaling.synthetic import make_sweep


def _grid_cell() -> pd.DataFrame:
    lrs, bts = [1e-3, 2e-3, 4e-3], [1024, 2048]
    rows = [
        {"cell": "c", "lr": lr, "batch_tokens": bt, "pruned": False,
         "loss": 2.0 + (math.log(lr / 2e-3)) ** 2 + 0.1 * (bt == 2048)}
        for lr in lrs for bt in bts
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_grid_loss_at_interpolates_in_log_space_and_clamps():
    cell = _grid_cell()
    assert grid_loss_at(cell, 2e-3, 1024) == (pytest.approx(2.0), False)
    # Half-way in log lr between 2e-3 and 4e-3: the mean of the two grid values.
    value, clamped = grid_loss_at(cell, math.sqrt(8e-6), 1024)
    assert value == pytest.approx(2.0 + 0.5 * math.log(2) ** 2) and not clamped
    value, clamped = grid_loss_at(cell, 1.0, 4096)  # far outside: the corner, flagged
    assert value == pytest.approx(2.1 + math.log(2) ** 2) and clamped


def test_grid_loss_at_scattered_runs_and_repeats():
    cell = _grid_cell()
    partial = cell.drop(index=[0, 5])  # a TPE-like scatter: two corners missing
    value, clamped = grid_loss_at(partial, 2e-3, 1024)
    assert value == pytest.approx(2.0) and not clamped
    value, clamped = grid_loss_at(partial, 1e-3, 1024)  # outside the hull: nearest run
    assert math.isfinite(value) and clamped
    repeated = pd.concat([cell, cell.assign(loss=cell["loss"] + 1.0)])
    # a setting run twice (replicates at two seeds): the geometric mean of its runs
    assert grid_loss_at(repeated, 2e-3, 1024)[0] == pytest.approx(math.sqrt(2.0 * 3.0))
    line = cell[cell["batch_tokens"] == 1024]
    value, _ = grid_loss_at(line, math.sqrt(8e-6), 4096)  # one batch size: along lr only
    assert value == pytest.approx(2.0 + 0.5 * math.log(2) ** 2)


def test_best_point_ranks_replicated_settings_by_their_mean():
    """With seeds (search.seeds), a cell's best setting is the one with the lowest mean over
    its seeds, not the one holding the single luckiest run."""
    from scaling.backtest import _best_point

    runs = pd.DataFrame(
        {
            "run_id": ["a0", "a1", "b0", "b1", "c0"],
            "lr": [1e-3, 1e-3, 2e-3, 2e-3, 4e-3],
            "batch_tokens": [1024] * 5,
            "loss": [2.00, 2.40, 2.10, 2.12, math.nan],  # a: luckiest run, b: best mean
        }
    )
    best_runs, best = _best_point(runs)
    assert list(best_runs["run_id"]) == ["b0", "b1"]
    assert best == pytest.approx(math.sqrt(2.10 * 2.12))
    best_runs, best = _best_point(runs[runs["run_id"] != "a1"])  # one seed each: the best run
    assert list(best_runs["run_id"]) == ["a0"] and best == 2.0


def test_backtest_on_a_known_law_is_accurate():
    # 4 budgets: with only two left after holding one out, the loss law's D term (B, beta)
    # and E are not separately identified.
    runs, _ = make_sweep(seed=1, tokens=(1e9, 3e9, 1e10, 3e10), noise=0.0005, jitter=0.1)
    result, _ = extrapolation_backtest(runs)
    for hold, n_cells in (("size", 4), ("budget", 5)):  # 5 sizes x 4 budgets
        s = result[hold]
        assert len(s["cells"]) == n_cells and s["fitted_on_runs"] < len(runs)
        assert s["mean_abs_loss_error_pct"] < 1.0, s
        assert s["mean_abs_gap_pct"] < 1.0, s
        assert 0.7 < s["geomean_lr_ratio"] < 1.4, s
        # Each prediction comes with the refit's 95% interval, and the summary counts the
        # held-out cells whose own fitted optimum it holds: on a known law, all or all but one
        # (the loss's measured 4 of 4 and 4 of 5; the parameter spread alone, before it was
        # widened by the leave-one-out error, held 3 of 4 and 0 of 5).
        for r in s["cells"]:
            for key, pred in (("loss", "loss_pred"), ("lr", "lr_pred"), ("batch", "batch_pred")):
                lo, hi = r[f"{key}_interval"]
                assert lo <= r[pred] <= hi, (key, r)
        assert s["loss_opt_in_interval"][1] == s["lr_opt_in_interval"][1] == n_cells
        assert s["lr_opt_in_interval"][0] >= n_cells - 1, s["lr_opt_in_interval"]
        assert s["loss_opt_in_interval"][0] >= n_cells - 1, s["loss_opt_in_interval"]
    assert result["size"]["held_out_value"] == runs["n_params"].max()


def test_backtest_notices_a_wrong_law():
    """Losses that stop improving with N at the largest size: the size backtest must show a
    large loss error (it is not a formality)."""
    runs, _ = make_sweep(seed=1, tokens=(1e9, 3e9, 1e10), noise=0.0005)
    big = runs["n_params"] == runs["n_params"].max()
    runs.loc[big, "loss"] *= 1.08
    result, _ = extrapolation_backtest(runs, bootstrap=50)  # the loss law has no weights
    assert result["size"]["mean_abs_loss_error_pct"] > 4.0
    # ... and its intervals do not hold those cells' losses.
    assert result["size"]["loss_opt_in_interval"] == [0, 3]


def test_cli_writes_report_json_and_figure(tmp_path, capsys):
    runs, _ = make_sweep(seed=2, tokens=(1e9, 3e9, 1e10))
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "bt" / "backtest.md"
    assert main(["--runs", str(tmp_path / "runs.csv"), "--out", str(out), "--bootstrap", "50"]) == 0
    text = out.read_text()
    assert "Held out: the largest model size" in text and "largest token budget" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data) == {"size", "budget"}
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert np.isfinite(data["budget"]["mean_abs_loss_error_pct"])
    assert "- the refit's 95% intervals (*[95%]* columns) hold the held-out cell's own" in text
    assert data["size"]["cells"][0]["loss_interval"][0] < data["size"]["cells"][0]["loss_pred"]


def test_cli_missing_file_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--runs", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "b.md")])
    assert exc.value.code == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"a,b\n1,2\n", "curves table is missing column(s) run_id, step, loss"),
        (b'run_id,step,loss\n"r1,10,2.5\n', "cannot parse as CSV"),
    ],
)
def test_cli_broken_curves_file_is_one_error_line(tmp_path, capsys, content, needle):
    runs, _ = make_sweep(seed=2, tokens=(1e9, 3e9, 1e10))
    runs.to_csv(tmp_path / "runs.csv", index=False)
    curves = tmp_path / "curves.csv"
    curves.write_bytes(content)
    argv = ["--runs", str(tmp_path / "runs.csv"), "--curves", str(curves)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "b.md")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {curves}: ") and needle in err
    assert err.count("\n") == 1 and not (tmp_path / "b.md").exists()


def test_the_refit_is_the_law_the_fit_would_ship():
    """The cell bootstrap weights the cells of the LR and batch laws, so the backtest refits
    with the fit's bootstrap: its predictions for the held-out size are those of
    `fit_optimum_laws` on the held-in runs with that bootstrap, and differ from an unweighted
    refit's."""
    from scaling.laws import fit_optimum_laws

    runs, _ = make_sweep(seed=4, tokens=(1e9, 3e9, 1e10), n_runs=10, noise=0.01)
    result, _ = extrapolation_backtest(runs, bootstrap=60, seed=3)
    held_in = runs[runs["n_params"] < runs["n_params"].max()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        core = fit_optimum_laws(held_in, bootstrap=60, seed=3)
        flat = fit_optimum_laws(held_in, bootstrap=0, seed=3)
    cells = result["size"]["cells"]
    n, d = np.array([c["n_params"] for c in cells]), np.array([c["tokens"] for c in cells])
    got_lr = np.array([c["lr_pred"] for c in cells])
    got_batch = np.array([c["batch_pred"] for c in cells])
    np.testing.assert_allclose(got_lr, core.lr.predict(n, d, 6 * n * d), rtol=1e-12)
    np.testing.assert_allclose(got_batch, core.batch_tokens.predict(n, d, 6 * n * d), rtol=1e-12)
    assert not np.allclose(got_lr, flat.lr.predict(n, d, 6 * n * d), rtol=1e-6)


@pytest.mark.parametrize("flag, value", [("--bootstrap", "-1"), ("--jobs", "0")])
def test_cli_bad_bootstrap_or_jobs_is_one_error_line(tmp_path, capsys, flag, value):
    runs, _ = make_sweep(seed=2, sizes=(2e6, 6e6, 2e7), tokens=(1e9, 3e9))
    runs.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        main(["--runs", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "b.md"), flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} must be" in err and f"got {value}" in err


def test_curve_error_reports_the_law_alone_beside_the_corrected_curve():
    """The curve column is the trajectory law times its residual map; the law alone is kept
    beside it, so the report shows what the map adds (on the committed quick sweep's curves)."""
    from trajectory_support import quick_held_out

    from scaling.backtest import _curve_error

    law, runs, curves, held = quick_held_out()
    best = runs[held & (runs["schedule"] == "cosine")].sort_values("loss").iloc[[0]]
    got = _curve_error(law, best, curves, 0.25)
    assert 0 < got["mean"] < got["mean_alone"]
    assert got["pred_full"].size == int(best["steps"].iloc[0])
    # Two runs of the setting (seeds) are scored as their geometric mean curve.
    rid = str(best["run_id"].iloc[0])
    twin = curves[curves["run_id"] == rid].assign(run_id="twin")
    twin["loss"] *= 1.02
    both = pd.concat([best, best.assign(run_id="twin")])
    got2 = _curve_error(law, both, pd.concat([curves, twin]), 0.25)
    np.testing.assert_allclose(got2["loss"], got["loss"] * math.sqrt(1.02), rtol=1e-12)


def test_a_single_budget_refit_gives_no_loss_interval_at_the_held_out_budget(tmp_path):
    """Two budgets: holding the larger out leaves one, and the refit's reduced loss law (E
    absorbs the D term) has no basis for an interval at the held-out budget."""
    runs, _ = make_sweep(seed=2, tokens=(1e9, 3e9))
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "backtest.md"
    assert main(["--runs", str(tmp_path / "runs.csv"), "--out", str(out), "--bootstrap", "30"]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    cells = data["budget"]["cells"]
    assert all(c["loss_off_reduced_range"] and "loss_interval" not in c for c in cells)
    assert all("loss_pred" in c and "loss_opt" in c for c in cells)
    assert "loss_opt_in_interval" not in data["budget"]
    assert all("loss_interval" in c for c in data["size"]["cells"])
    text = out.read_text()
    assert f"- no loss interval in {len(cells)} of {len(cells)} cells" in text
