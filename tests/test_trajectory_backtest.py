"""The trajectory-law backtest (python -m scaling.trajectory_backtest) on synthetic curves drawn
from a known multi-power law: held-out schedules and a held-out size are predicted to within
the issue's targets, the scatter floor reads the noise that was put in, and bad input is one
error line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from trajectory_support import PEAK_LR, STEPS, run_row

from scaling.schedules import ScheduleSpec
from scaling.trajectory import PARAM_NAMES, _predict_phi
from scaling.trajectory_backtest import _scatter_floor, backtest, main

EVERY, NOISE = 20, 0.001
SIZES = (2.5e5, 1e6, 4e6)
SCHEDULES = ("constant", "cosine", "wsd", "step")


def _params_at(n_params: float) -> dict:
    z = n_params / 1e6
    return {
        "L0": 2.0 * z**-0.05,
        "A": 1.0 * z**-0.1,
        "alpha": 0.5,
        "B": 30.0 * z**0.1,
        "C": 2.0,
        "beta": 0.5,
        "gamma": 0.5,
    }


def _sweep(rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, curves = [], []
    for n in SIZES:
        phi = np.log([_params_at(n)[k] for k in PARAM_NAMES])
        for name in SCHEDULES:
            spec = ScheduleSpec(name, warmup_steps=20)
            lrs = spec.lrs(PEAK_LR, STEPS)
            rid = f"n{int(n)}-{name}"
            steps = np.arange(EVERY, STEPS + 1, EVERY)
            loss = _predict_phi(phi, lrs, steps, 10**6) * np.exp(rng.normal(0, NOISE, steps.size))
            runs.append(run_row(rid, n, spec, float(loss[-1])))
            curves.append(pd.DataFrame({"run_id": rid, "step": steps, "loss": loss}))
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    runs, curves = _sweep(np.random.default_rng(3))
    d = tmp_path_factory.mktemp("tb")
    runs.to_csv(d / "runs.csv", index=False)
    curves.to_csv(d / "curves.csv", index=False)
    return d, runs, curves


@pytest.fixture(scope="module")
def result(tables):
    _, runs, curves = tables
    return backtest(runs, curves, seed=0)


def test_held_out_schedules_and_size_meet_the_targets_on_a_known_law(result):
    table, plots, excluded = result
    sched = table[table["experiment"] == "held-out schedule"]
    size = table[table["experiment"] == "held-out size"]
    # WSD and step at each size from that size's constant and cosine runs; and WSD from its
    # constant, cosine and step runs.
    fit_set = sched["fitted_on"].str.split(" ").str[0]
    two = sched[fit_set == "constant+cosine"]
    three = sched[fit_set == "constant+cosine+step"]
    assert len(two) + len(three) == len(sched)
    assert sorted(two["schedule"]) == sorted(["wsd", "step"] * len(SIZES))
    assert list(three["schedule"]) == ["wsd"] * len(SIZES)
    # Every run of the largest size, from the smaller sizes' runs.
    assert sorted(size["schedule"]) == sorted(SCHEDULES)
    assert set(size["n_params"]) == {int(SIZES[-1])}
    assert sched["mean_rel_err"].max() <= 0.003
    assert size["mean_rel_err"].max() <= 0.01
    assert table["meets_target"].all()
    # The law fitted on the scored curve too cannot do worse than the noise allows.
    assert (table["fitted_mean_rel_err"] < 2 * NOISE).all()
    assert len(plots) == len(table)
    assert excluded["diverged"] == 0


def test_scatter_floor_reads_the_noise_put_in(result):
    table, _, _ = result
    expected = NOISE * math.sqrt(2 / math.pi)
    floors = table["scatter_floor"].to_numpy(float)
    assert np.isfinite(floors).all()
    # ~19 scored points per curve: each estimate is rough, their mean is not.
    assert 0.7 * expected < floors.mean() < 1.3 * expected


def test_scatter_floor_ignores_a_curves_bend_and_a_steps_jumps():
    rng = np.random.default_rng(0)
    t = np.arange(1, 401, dtype=float) * 10
    smooth = 2.0 + 30.0 * t**-0.5
    assert _scatter_floor(smooth) < 1e-5  # a power law's bend is not scatter
    jumps = smooth * np.where(t > 2000, 0.95, 1.0) * np.where(t > 3200, 0.97, 1.0)
    assert _scatter_floor(jumps) < 1e-5  # nor are two LR drops
    sigma = 0.004
    noisy = jumps * np.exp(rng.normal(0, sigma, t.size))
    assert _scatter_floor(noisy) == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.15)
    assert math.isnan(_scatter_floor(smooth[:6]))


def test_cli_writes_report_table_and_figure(tables, capsys):
    d, _, _ = tables
    out = d / "out" / "trajectory_backtest.md"
    code = main(
        [
            "--runs", str(d / "runs.csv"),
            "--curves", str(d / "curves.csv"),
            "--out", str(out),
            "--bootstrap", "0",
        ]
    )  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "| held-out schedule | n4000000-wsd |" in text
    assert "scatter floor" in text
    assert "held-out size: mean of the per-curve mean errors" in text
    table = pd.read_csv(out.with_suffix(".csv"))
    assert {"mean_rel_err", "scatter_floor", "fitted_mean_rel_err"} <= set(table.columns)
    size_rows = table[table["experiment"] == "held-out size"]
    assert size_rows["law_alone_mean_rel_err"].notna().all()
    assert "law alone:" in text
    assert len(table) == 3 * len(SIZES) + len(SCHEDULES)
    assert "- held-out schedule, fitted on constant+cosine: mean of" in text
    assert "- held-out schedule, fitted on constant+cosine+step: mean of" in text
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.startswith("# Trajectory-law backtest")


def test_one_experiment_alone_is_the_same_rows(tables, result):
    """--experiments schedule runs the single-size fits only (seconds, not the cross-size fit)
    and gives the same rows as the full backtest's held-out-schedule part."""
    _, runs, curves = tables
    full, _, _ = result
    only, plots, _ = backtest(runs, curves, seed=0, experiments=("schedule",))
    assert set(only["experiment"]) == {"held-out schedule"}
    expected = full[full["experiment"] == "held-out schedule"].reset_index(drop=True)
    # The law-alone column belongs to the held-out size (the residual map's cross-size law).
    expected = expected.drop(columns="law_alone_mean_rel_err")
    pd.testing.assert_frame_equal(only.reset_index(drop=True), expected)
    assert {p[0] for p in plots} == {"held-out schedule"}
    sizes, _, _ = backtest(runs, curves, seed=0, experiments=("size",))
    assert set(sizes["experiment"]) == {"held-out size"}
    with pytest.raises(ValueError, match="experiments must be one or more of schedule, size"):
        backtest(runs, curves, experiments=("sizes",))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"runs": "missing.csv"}, "error: file not found: "),
        ({"bootstrap": "-1"}, "error: --bootstrap must be >= 0, got -1"),
        ({"skip_frac": "1.5"}, "error: skip_frac must be in [0, 1), got 1.5"),
        ({"drop": "loss"}, "error: --curves: missing column(s) loss"),
        ({"experiments": "sched"}, "error: --experiments must be one or more of schedule, size"),
        ({"experiments": ","}, "error: --experiments must be one or more of schedule, size"),
    ],
)
def test_cli_bad_input_is_one_error_line(tables, tmp_path, capsys, change, message):
    d, _, curves = tables
    curves_path = d / "curves.csv"
    if "drop" in change:
        curves_path = tmp_path / "curves.csv"
        curves.drop(columns=[change["drop"]]).to_csv(curves_path, index=False)
    argv = [
        "--runs", str(tmp_path / change["runs"]) if "runs" in change else str(d / "runs.csv"),
        "--curves", str(curves_path),
        "--out", str(tmp_path / "tb.md"),
        "--bootstrap", change.get("bootstrap", "0"),
        "--skip-frac", change.get("skip_frac", "0.25"),
        "--experiments", change.get("experiments", "schedule,size"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "tb.md").exists()


@pytest.mark.parametrize(
    "which, content, needle",
    [
        ("curves", b'run_id,step,loss\n"r1,10,2.5\n', "cannot parse as CSV"),
        ("curves", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x92", "cannot parse as CSV"),
        ("curves", b"a,b\n1,2\n", "missing column(s) run_id, step, loss in "),
        ("runs", b"", "cannot parse as CSV"),
    ],
)
def test_cli_unreadable_file_is_one_error_line_naming_it(
    tables, tmp_path, capsys, which, content, needle
):
    d, _, _ = tables
    paths = {"runs": d / "runs.csv", "curves": d / "curves.csv"}
    paths[which] = tmp_path / f"{which}.csv"
    paths[which].write_bytes(content)
    argv = ["--runs", str(paths["runs"]), "--curves", str(paths["curves"]),
            "--out", str(tmp_path / "tb.md"), "--bootstrap", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and str(paths[which]) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "tb.md").exists()


def test_with_bootstrap_refits_the_report_says_how_much_of_each_curve_the_band_holds(
    tables, result
):
    """--bootstrap N: each held-out curve's share of points inside its prediction's 95% band;
    on curves drawn from the law itself with known noise, most of them. The errors are the
    same as without refits (the point fit does not depend on them)."""
    from scaling.trajectory_backtest import _markdown

    _, runs, curves = tables
    banded, _, excluded = backtest(runs, curves, seed=0, n_bootstrap=8, experiments=("schedule",))
    plain = result[0][result[0]["experiment"] == "held-out schedule"].reset_index(drop=True)
    assert banded["mean_rel_err"].tolist() == pytest.approx(plain["mean_rel_err"].tolist())
    cover = banded["interval_coverage"].to_numpy(float)
    assert np.isfinite(cover).all() and ((0 <= cover) & (cover <= 1)).all()
    held = np.sum(cover * banded["n_points"]) / banded["n_points"].sum()
    assert held > 0.8, cover
    assert plain["interval_coverage"].isna().all()
    text = _markdown(banded, excluded, "cmd", 1.0, 0.25)
    assert "in 95% band |" in text
    for fit_set, rows in banded.groupby(banded["fitted_on"].str.split(" ").str[0]):
        share = np.sum(rows["interval_coverage"] * rows["n_points"]) / rows["n_points"].sum()
        line = next(
            x
            for x in text.splitlines()
            if x.startswith(f"- held-out schedule, fitted on {fit_set}:")
        )
        assert f"the 95% band holds {share:.0%} of the scored" in line
    assert "in 95% band" not in _markdown(plain, excluded, "cmd", 1.0, 0.25)


def test_coverage_counts_the_points_inside_the_band():
    from scaling.trajectory_backtest import _coverage

    low, high = np.full(4, 1.0), np.full(4, 2.0)
    assert _coverage((low, high), np.array([0.5, 1.0, 1.5, 3.0])) == 0.5
    assert math.isnan(_coverage(None, np.ones(4)))


def test_cli_fit_schedules_picks_the_fitted_sets(tables, capsys):
    d, runs, curves = tables
    base = ["--runs", str(d / "runs.csv"), "--curves", str(d / "curves.csv"),
            "--experiments", "schedule"]  # fmt: skip
    out = d / "sets" / "tb.md"
    assert main([*base, "--out", str(out), "--fit-schedules", "constant,cosine,wsd"]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["fitted_on"].str.split(" ").str[0]) == {"constant+cosine+wsd"}
    assert set(table["schedule"]) == {"step"}
    argv = [*base, "--out", str(out), "--fit-schedules", "constant", "--fit-schedules", "cosine"]
    assert main(argv) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["fitted_on"].str.split(" ").str[0]) == {"constant", "cosine"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out", str(d / "none.md"), "--fit-schedules", " , "])
    assert exc.value.code == 2
    assert "--fit-schedules must name a schedule, got ' , '" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fit_schedules must be"):
        backtest(runs, curves, fit_schedules=())
    # A string is one comma-separated set, not a set of one-letter names.
    one, _, _ = backtest(runs, curves, fit_schedules="constant,cosine", experiments=("schedule",))
    assert set(one["fitted_on"].str.split(" ").str[0]) == {"constant+cosine"}


def test_replicate_seeds_of_a_held_out_schedule_are_also_scored_as_their_mean():
    """Three seeds of every schedule at one size (`seeds` of a sweep's variants): each held-out
    run is scored, and so is the mean of its seeds, whose scatter is about 1/sqrt(3) of one
    run's; the law predicts the expected curve, so the mean comes closer to it."""
    rng = np.random.default_rng(5)
    noise = 4 * NOISE
    phi = np.log([_params_at(1e6)[k] for k in PARAM_NAMES])
    runs, curves = [], []
    for name in SCHEDULES:
        spec = ScheduleSpec(name, warmup_steps=20)
        lrs = spec.lrs(PEAK_LR, STEPS)
        steps = np.arange(5, STEPS + 1, 5)  # ~75 scored points: a steadier scatter floor
        truth = _predict_phi(phi, lrs, steps, 10**6)
        for seed in (0, 1, 2):
            rid = f"{name}-s{seed}"
            loss = truth * np.exp(rng.normal(0, noise, steps.size))
            runs.append(dict(run_row(rid, 1e6, spec, float(loss[-1])), seed=seed))
            curves.append(pd.DataFrame({"run_id": rid, "step": steps, "loss": loss}))
    runs, curves = pd.DataFrame(runs), pd.concat(curves, ignore_index=True)
    table, _, _ = backtest(
        runs, curves, fit_schedules=("constant", "cosine"), experiments=("schedule",)
    )
    single = table[table["experiment"] == "held-out schedule"]
    means = table[table["experiment"] == "held-out schedule, mean of seeds"]
    assert sorted(single["schedule"]) == sorted(["wsd", "step"] * 3)
    assert sorted(means["schedule"]) == ["step", "wsd"]
    assert means["run_id"].str.contains(r"mean of 3 runs \(seeds 0, 1, 2\)").all()
    for _, row in means.iterrows():
        alone = single.loc[single["schedule"] == row["schedule"]]
        assert row["mean_rel_err"] < alone["mean_rel_err"].mean()
    # 1/sqrt(3) = 0.58 on average; one curve's floor is rough (0.45-0.76 in 95% of draws).
    assert means["scatter_floor"].mean() < 0.8 * single["scatter_floor"].mean()
    # Without a seed column (or with one seed) there is nothing to average.
    plain, _, _ = backtest(
        runs.drop(columns="seed"), curves, fit_schedules=("constant", "cosine"),
        experiments=("schedule",),
    )  # fmt: skip
    assert set(plain["experiment"]) == {"held-out schedule"}


def test_replicate_seeds_at_the_held_out_size_are_also_scored_as_their_mean():
    """Every schedule of the largest size run at three seeds (search.seeds on a grid, or the
    variants' seeds), each seed's curve off the expected one by its own factor (a run's luck,
    as seeds give): each run is scored, and so is each schedule's mean of seeds, which is no
    further from the law than its runs are on average (the mean of the seeds' errors, not the
    mean of their sizes), and here nearer."""
    rng = np.random.default_rng(11)
    runs, curves = _sweep(rng)
    runs["seed"] = 0
    largest = max(SIZES)
    phi = np.log([_params_at(largest)[k] for k in PARAM_NAMES])
    extra_runs, extra_curves = [], []
    for name in SCHEDULES:
        spec = ScheduleSpec(name, warmup_steps=20)
        lrs = spec.lrs(PEAK_LR, STEPS)
        steps = np.arange(EVERY, STEPS + 1, EVERY)
        truth = _predict_phi(phi, lrs, steps, 10**6)
        rid0 = f"n{int(largest)}-{name}"
        luck0 = math.exp(rng.normal(0, 0.01))
        curves.loc[curves["run_id"] == rid0, "loss"] *= luck0
        for seed in (1, 2):
            rid = f"{rid0}-s{seed}"
            luck = math.exp(rng.normal(0, 0.01))
            loss = truth * luck * np.exp(rng.normal(0, NOISE, steps.size))
            extra_runs.append(dict(run_row(rid, largest, spec, float(loss[-1])), seed=seed))
            extra_curves.append(pd.DataFrame({"run_id": rid, "step": steps, "loss": loss}))
    runs = pd.concat([runs, pd.DataFrame(extra_runs)], ignore_index=True)
    curves = pd.concat([curves, *extra_curves], ignore_index=True)
    table, _, _ = backtest(runs, curves, experiments=("size",))
    single = table[table["experiment"] == "held-out size"]
    means = table[table["experiment"] == "held-out size, mean of seeds"]
    assert len(single) == 12 and sorted(means["schedule"]) == sorted(SCHEDULES)
    assert means["run_id"].str.contains(r"mean of 3 runs \(seeds 0, 1, 2\)").all()
    assert (means["n_params"] == int(largest)).all()
    for _, row in means.iterrows():
        alone = single.loc[single["schedule"] == row["schedule"], "mean_rel_err"]
        assert row["mean_rel_err"] <= alone.mean() + 1e-4
    assert means["mean_rel_err"].mean() < 0.8 * single["mean_rel_err"].mean()
