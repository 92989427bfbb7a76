"""Tests of the loss-trajectory laws on synthetic curves drawn from a known multi-power law."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from trajectory_support import FRAME_COLUMNS, PEAK_LR, STEPS, quick_held_out, run_row

from scaling.schedules import ScheduleSpec
from scaling.trajectory import (
    PARAM_NAMES,
    CrossSizeTrajectoryLaw,
    TrajectoryLaw,
    _predict_phi,
    lr_schedule_of_run,
)

TRUE = {"L0": 2.0, "A": 1.0, "alpha": 0.5, "B": 30.0, "C": 2.0, "beta": 0.5, "gamma": 0.5}
EVERY, NOISE, SEGMENTS = 20, 0.001, 60


def _specs():
    return {
        name: ScheduleSpec(name, warmup_steps=20) for name in ("constant", "cosine", "wsd", "step")
    }


def _true_curve(params: dict, lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    phi = np.log([params[k] for k in PARAM_NAMES])
    return _predict_phi(phi, lrs, steps, max_segments=10**6)


def _logged(params, lrs, rng, run_id):
    steps = np.arange(EVERY, lrs.size + 1, EVERY)
    loss = _true_curve(params, lrs, steps) * np.exp(rng.normal(0.0, NOISE, steps.size))
    return pd.DataFrame({"run_id": run_id, "step": steps, "loss": loss})


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(1)
    lrs = {name: spec.lrs(PEAK_LR, STEPS) for name, spec in _specs().items()}
    curves = pd.concat([_logged(TRUE, lrs[name], rng, name) for name in lrs], ignore_index=True)
    return curves, lrs


@pytest.fixture(scope="module")
def fitted(synthetic):
    curves, lrs = synthetic
    train = curves[curves["run_id"].isin(["constant", "cosine"])]
    return TrajectoryLaw(n_starts=3, n_bootstrap=8, max_segments=SEGMENTS, seed=0).fit(train, lrs)


def test_recovers_the_law_and_predicts_held_out_schedules(synthetic, fitted):
    _, lrs = synthetic
    p = fitted.params_
    assert p["L0"] == pytest.approx(TRUE["L0"], rel=0.02)
    assert p["A"] == pytest.approx(TRUE["A"], rel=0.05)
    assert p["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05)
    # B, C, beta and gamma trade off against each other when every curve has the same peak
    # LR (Luo et al. fit them on more schedules); the held-out predictions below test them.
    ci = fitted.params_ci_
    for name in ("L0", "alpha"):
        lo, hi = ci[name]
        assert lo <= p[name] <= hi
        assert lo * 0.98 <= TRUE[name] <= hi * 1.02
    steps = np.arange(40, STEPS + 1)
    for name in ("wsd", "step"):  # never seen in the fit: the annealing effect is extrapolated
        truth = _true_curve(TRUE, lrs[name], steps)
        rel = np.abs(fitted.predict(lrs[name], steps) / truth - 1)
        assert rel.mean() < 0.003, name
        # Right after a sharp LR drop the response speed depends on gamma, which curves at one
        # peak LR hardly pin down; the worst point is looser than the mean.
        assert rel.max() < 0.03, name


def test_an_annealed_loss_below_l0_leaves_l0_free():
    """A strong annealing term takes the decayed runs below L0 (the cosine run ends at 1.94,
    L0 is 2.0), as the reference sweep's runs do. L0 is not bounded by the lowest loss: with
    that bound the fit gave L0 1.90 and missed the held-out WSD run by 0.21%."""
    truth = dict(TRUE, B=100.0)
    rng = np.random.default_rng(1)
    lrs = {name: spec.lrs(PEAK_LR, STEPS) for name, spec in _specs().items()}
    curves = pd.concat([_logged(truth, lrs[n], rng, n) for n in lrs], ignore_index=True)
    assert curves.loc[curves["run_id"] == "cosine", "loss"].min() < 0.98 * truth["L0"]
    train = curves[curves["run_id"].isin(["constant", "cosine", "step"])]
    law = TrajectoryLaw(n_starts=3, n_bootstrap=0, max_segments=SEGMENTS, seed=0).fit(train, lrs)
    assert law.params_["L0"] == pytest.approx(truth["L0"], rel=0.02)
    steps = np.arange(40, STEPS + 1)
    rel = np.abs(law.predict(lrs["wsd"], steps) / _true_curve(truth, lrs["wsd"], steps) - 1)
    assert rel.mean() < 0.0012


def test_default_steps_and_interval(synthetic, fitted):
    _, lrs = synthetic
    loss = fitted.predict(lrs["wsd"])
    assert loss.shape == (STEPS,)
    mid, lo, hi = fitted.predict(lrs["wsd"], np.arange(100, STEPS + 1), return_interval=True)
    assert np.all(lo < mid) and np.all(mid < hi)
    truth = _true_curve(TRUE, lrs["wsd"], np.arange(100, STEPS + 1))
    # A held-out schedule: the interval must cover the true curve at most steps.
    assert np.mean((lo <= truth) & (truth <= hi)) > 0.85
    again = fitted.predict_interval(lrs["wsd"], np.arange(100, STEPS + 1))
    np.testing.assert_allclose(again[2], hi)


def test_fit_is_deterministic(synthetic):
    curves, lrs = synthetic
    train = curves[curves["run_id"].isin(["wsd", "cosine"])]
    settings = {"n_starts": 2, "n_bootstrap": 2, "max_segments": 50, "seed": 3}
    first = TrajectoryLaw(**settings).fit(train, lrs)
    again = TrajectoryLaw(**settings).fit(train, lrs)
    np.testing.assert_array_equal(again.theta_, first.theta_)
    np.testing.assert_array_equal(again.theta_boot_, first.theta_boot_)


def test_round_trip_through_json(synthetic, fitted):
    _, lrs = synthetic
    d = json.loads(json.dumps(fitted.to_dict()))
    back = TrajectoryLaw.from_dict(d)
    np.testing.assert_allclose(back.predict(lrs["step"]), fitted.predict(lrs["step"]))
    for name, (lo, hi) in fitted.params_ci_.items():
        assert back.params_ci_[name] == pytest.approx((lo, hi))
    bad = dict(d, format_version=99)
    with pytest.raises(ValueError, match="format_version"):
        TrajectoryLaw.from_dict(bad)
    with pytest.raises(ValueError, match="theta"):
        TrajectoryLaw.from_dict(dict(d, theta=[1.0, 2.0]))


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        TrajectoryLaw().predict(np.full(10, 1e-2))
    with pytest.raises(RuntimeError, match="not fitted"):
        CrossSizeTrajectoryLaw().predict(1e6, np.full(10, 1e-2))
    with pytest.raises(RuntimeError, match="not fitted"):
        TrajectoryLaw().to_dict()


def test_bad_inputs_name_the_field(synthetic, fitted):
    curves, lrs = synthetic
    with pytest.raises(ValueError, match="lr_schedule"):
        fitted.predict(np.array([1e-2, np.nan, 1e-2]))
    with pytest.raises(ValueError, match="lr_schedule"):
        fitted.predict(np.array([1e-2, -1e-3]))
    with pytest.raises(ValueError, match="steps"):
        fitted.predict(lrs["cosine"], [STEPS + 1])
    with pytest.raises(ValueError, match="steps"):
        fitted.predict(lrs["cosine"], [0])
    short = {k: v[:100] for k, v in lrs.items()}  # logged steps beyond the schedule's end
    with pytest.raises(ValueError, match=r"curves\.step.*mismatch"):
        TrajectoryLaw(n_starts=1, n_bootstrap=0).fit(curves, short)
    broken = dict(lrs, cosine=np.where(np.arange(STEPS) == 50, np.inf, lrs["cosine"]))
    with pytest.raises(ValueError, match=r"lr_schedules\['cosine'\]"):
        TrajectoryLaw(n_starts=1, n_bootstrap=0).fit(curves, broken)
    with pytest.raises(ValueError, match="lr_schedules"):
        TrajectoryLaw(n_starts=1, n_bootstrap=0).fit(curves, {"constant": lrs["constant"]})
    with pytest.raises(ValueError, match="curves"):
        TrajectoryLaw().fit(curves.drop(columns="loss"), lrs)
    with pytest.raises(ValueError, match="level"):
        fitted.predict(lrs["cosine"], return_interval=True, level=1.5)
    with pytest.raises(ValueError, match="skip_frac"):
        TrajectoryLaw(skip_frac=1.5)


# --------------------------------------------------------------------------------------------
# across sizes

N_REF = 1e6


def _params_at(n_params: float) -> dict:
    z = n_params / N_REF
    return dict(TRUE, L0=2.0 * z**-0.05, A=1.0 * z**-0.1, B=30.0 * z**0.1)


def _tables(sizes, schedules, rng):
    runs, curves = [], []
    for n in sizes:
        for name in schedules:
            spec = ScheduleSpec(name, warmup_steps=20)
            rid = f"n{int(n)}-{name}"
            runs.append(run_row(rid, n, spec, np.nan))
            curves.append(_logged(_params_at(n), spec.lrs(PEAK_LR, STEPS), rng, rid))
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


@pytest.fixture(scope="module")
def cross_size():
    rng = np.random.default_rng(2)
    runs, curves = _tables([2.5e5, 1e6, 4e6], ["cosine", "step"], rng)
    # A diverged run and a pruned one, which the fit must skip and count.
    bad = runs.iloc[:2].copy()
    bad["run_id"] = ["diverged-run", "pruned-run"]
    bad["diverged"] = [True, False]
    bad["pruned"] = [False, True]
    bad["state"] = ["diverged", "pruned"]
    junk = curves[curves["run_id"] == runs["run_id"].iloc[0]].copy()
    junk["run_id"], junk["loss"] = "pruned-run", junk["loss"] * 1.5
    runs = pd.concat([runs, bad], ignore_index=True)
    curves = pd.concat([curves, junk], ignore_index=True)
    law = CrossSizeTrajectoryLaw(n_starts=2, n_bootstrap=3, max_segments=SEGMENTS, seed=0)
    law.fit(runs, curves)
    return law, runs


def test_cross_size_predicts_an_unswept_size(cross_size):
    law, _ = cross_size
    assert law.excluded_["diverged"] == 1 and law.excluded_["pruned"] == 1
    assert law.n_runs_ == 6
    n_new = 1.6e7  # 4x beyond the largest fitted size
    lrs = ScheduleSpec("wsd", warmup_steps=20).lrs(PEAK_LR, STEPS)
    steps = np.arange(40, STEPS + 1)
    truth = _true_curve(_params_at(n_new), lrs, steps)
    rel = np.abs(law.predict(n_new, lrs, steps=steps) / truth - 1)
    assert rel.mean() < 0.01
    p = law.params_
    assert p["q_L0"] == pytest.approx(-0.05, abs=0.02)
    assert p["alpha"] == pytest.approx(0.5, rel=0.1)
    mid, lo, hi = law.predict(n_new, lrs, steps=steps, return_interval=True)
    assert np.all(lo < mid) and np.all(mid < hi)


def test_cross_size_round_trip(cross_size):
    law, runs = cross_size
    back = CrossSizeTrajectoryLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    lrs = lr_schedule_of_run(runs.set_index("run_id").loc["n1000000-step"])
    np.testing.assert_allclose(back.predict(3e6, lrs), law.predict(3e6, lrs))
    assert back.to_dict()["fitted_range"]["n_params"] == [2.5e5, 4e6]
    assert back.params_at(1e6) == pytest.approx(law.params_at(1e6))
    with pytest.raises(ValueError, match="n_params"):
        back.predict(-1.0, lrs)
    with pytest.raises(ValueError, match="batch_tokens"):
        back.predict(1e6, lrs, batch_tokens=float("nan"))


def test_cross_size_trajectory_frame(cross_size):
    law, _ = cross_size
    frame = law.trajectory(2e6, 300 * 4096, schedule="wsd", warmup=10, points=50)
    assert list(frame.columns) == FRAME_COLUMNS
    assert len(frame) == 50 and frame["step"].iloc[-1] == 300
    # During warmup the law diverges as the LR area goes to 0: capped at the highest loss seen.
    assert frame["loss"].max() <= law.loss_cap_ == pytest.approx(law.to_dict()["loss_cap"])
    lrs = ScheduleSpec("wsd", warmup_steps=10).lrs(PEAK_LR, 300)
    np.testing.assert_allclose(frame["loss"], law.predict(2e6, lrs, 4096, frame["step"]))
    assert (frame["loss_low"] <= frame["loss"]).all() and (
        frame["loss"] <= frame["loss_high"]
    ).all()
    late = frame[frame["step"] > 100]
    assert (late["loss_low"] < late["loss"]).all() and (late["loss"] < late["loss_high"]).all()
    with pytest.raises(ValueError, match="tokens"):
        law.trajectory(2e6, float("inf"))
    with pytest.raises(ValueError, match="warmup"):
        law.trajectory(2e6, 1e6, warmup=-3)


def test_cross_size_needs_the_runs_columns(cross_size):
    _, runs = cross_size
    with pytest.raises(ValueError, match="steps"):
        CrossSizeTrajectoryLaw().fit(runs.drop(columns="steps"), pd.DataFrame())


def test_curves_of_another_sweep_are_an_error_that_says_so(cross_size):
    _, runs = cross_size
    curves = pd.DataFrame({"run_id": ["other-sweep-t0"] * 3, "step": [10, 20, 30]})
    curves["loss"] = [3.0, 2.9, 2.8]
    with pytest.raises(ValueError, match="no run_id of the curves table") as exc:
        CrossSizeTrajectoryLaw(n_starts=1, n_bootstrap=0).fit(runs, curves)
    assert "'other-sweep-t0'" in str(exc.value) and "same sweep" in str(exc.value)


def test_cross_size_reads_a_format_1_file(cross_size):
    """Files written before the peak-LR terms (11 theta entries) load with those terms at 0."""
    law, runs = cross_size
    d = json.loads(json.dumps(law.to_dict()))
    assert law.params_["s_L0"] == 0.0 and d["lr_ref"] is None  # one peak LR: terms held at 0
    old = dict(d, format_version=1, theta=d["theta"][:11])
    old["theta_boot"] = [row[:11] for row in d["theta_boot"]]
    del old["lr_ref"]
    back = CrossSizeTrajectoryLaw.from_dict(old)
    lrs = lr_schedule_of_run(runs.set_index("run_id").loc["n1000000-step"])
    np.testing.assert_allclose(back.predict(3e6, lrs), law.predict(3e6, lrs))
    with pytest.raises(ValueError, match="theta"):
        CrossSizeTrajectoryLaw.from_dict(dict(d, theta=d["theta"][:11]))


def test_cross_size_reads_a_format_2_file(cross_size):
    """Files written before the peak-LR x batch terms (15 theta entries) load with them at 0;
    a current file cut to 15 entries is an error, not a silent pad."""
    law, runs = cross_size
    d = json.loads(json.dumps(law.to_dict()))
    assert d["format_version"] == 4 and len(d["theta"]) == 17
    old = dict(d, format_version=2, theta=d["theta"][:15])
    old["theta_boot"] = [row[:15] for row in d["theta_boot"]]
    back = CrossSizeTrajectoryLaw.from_dict(old)
    assert back.params_["t_L0"] == 0.0 and back.params_["t_B"] == 0.0
    lrs = lr_schedule_of_run(runs.set_index("run_id").loc["n1000000-step"])
    np.testing.assert_allclose(back.predict(3e6, lrs), law.predict(3e6, lrs))
    with pytest.raises(ValueError, match="theta"):
        CrossSizeTrajectoryLaw.from_dict(dict(d, theta=d["theta"][:15]))


def _lr_params(n_params: float, peak: float) -> dict:
    """Truth for runs at several peak LRs: above the best LR every loss is higher (L0 rises),
    which the multi-power law's LR area alone cannot give."""
    u = np.log(peak / PEAK_LR)
    return dict(
        _params_at(n_params), L0=_params_at(n_params)["L0"] * np.exp(0.02 * u + 0.03 * u * u)
    )


def test_cross_size_fits_runs_at_many_peak_lrs():
    """A sweep's runs span a wide LR grid (27x on the quick sweep); the fit must describe them
    all and predict a held-out schedule at another size, not a compromise that fits none."""
    rng = np.random.default_rng(4)
    runs, curves = [], []
    for n in (5e5, 2e6):
        for name, peak in [
            ("cosine", 3e-3),
            ("cosine", 1e-2),
            ("cosine", 3e-2),
            ("constant", 1e-2),
        ]:
            spec = ScheduleSpec(name, warmup_steps=20)
            rid = f"n{int(n)}-{name}-{peak:g}"
            runs.append(run_row(rid, n, spec, np.nan, lr=peak))
            curves.append(_logged(_lr_params(n, peak), spec.lrs(peak, STEPS), rng, rid))
    law = CrossSizeTrajectoryLaw(n_starts=2, n_bootstrap=0, max_segments=SEGMENTS, seed=0)
    law.fit(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))
    assert law.residuals_["mean_abs_rel"] < 0.003
    steps = np.arange(STEPS // 4, STEPS + 1)
    for n, peak in [(1e6, 3e-2), (1e6, 3e-3)]:
        lrs = ScheduleSpec("wsd", warmup_steps=20).lrs(peak, STEPS)
        truth = _true_curve(_lr_params(n, peak), lrs, steps)
        rel = np.abs(law.predict(n, lrs, steps=steps) / truth - 1)
        assert rel.mean() < 0.005, (n, peak)
    assert law.params_["lr_ref"] is not None


def _lr_batch_params(n_params: float, peak: float, batch: float) -> dict:
    """Truth where the best LR grows with the batch: a high LR costs less at a large batch."""
    u, v = np.log(peak / PEAK_LR), np.log(batch / 4096)
    p = _params_at(n_params)
    return dict(p, L0=p["L0"] * np.exp(0.02 * u + 0.03 * u * u - 0.04 * u * v))


def test_cross_size_recovers_an_lr_batch_interaction():
    """Runs at two batch sizes and three peak LRs whose LR dependence shifts with the batch:
    the u*v term of L0 is recovered, and a held-out size at the corner (high LR, large batch)
    is predicted, which a form without the term misses."""
    rng = np.random.default_rng(5)
    runs, curves = [], []
    for n in (5e5, 2e6):
        for batch in (2048, 8192):
            for peak in (3e-3, 1e-2, 3e-2):
                spec = ScheduleSpec("cosine", warmup_steps=20)
                rid = f"n{int(n)}-b{batch}-{peak:g}"
                runs.append(
                    {
                        "run_id": rid,
                        "n_params": n,
                        "lr": peak,
                        "batch_tokens": batch,
                        "steps": STEPS,
                        "schedule": "cosine",
                        "schedule_json": spec.to_json(),
                        "state": "complete",
                    }
                )
                params = _lr_batch_params(n, peak, batch)
                curves.append(_logged(params, spec.lrs(peak, STEPS), rng, rid))
    law = CrossSizeTrajectoryLaw(n_starts=3, n_bootstrap=0, max_segments=SEGMENTS, seed=0)
    law.fit(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))
    assert law.params_["t_L0"] == pytest.approx(-0.04, abs=0.01)
    assert law.residuals_["mean_abs_rel"] < 0.003
    steps = np.arange(STEPS // 4, STEPS + 1)
    lrs = ScheduleSpec("wsd", warmup_steps=20).lrs(3e-2, STEPS)
    truth = _true_curve(_lr_batch_params(1e6, 3e-2, 8192), lrs, steps)
    rel = np.abs(law.predict(1e6, lrs, 8192, steps=steps) / truth - 1)
    assert rel.mean() < 0.005


def test_cross_size_fit_does_not_depend_on_run_names_or_row_order():
    # A sweep run again numbers its trials differently: the same runs under other names, in
    # another order, must give the same law (the seeded starts and bootstrap included).
    rng = np.random.default_rng(4)
    runs, curves = _tables([2.5e5, 1e6, 4e6], ["cosine", "step", "wsd"], rng)
    settings = {"n_starts": 3, "n_bootstrap": 3, "max_segments": SEGMENTS, "seed": 0}
    first = CrossSizeTrajectoryLaw(**settings).fit(runs, curves)
    names = {rid: f"trial-{i}" for i, rid in enumerate(runs["run_id"][::-1])}
    renamed = runs.assign(run_id=runs["run_id"].map(names)).sample(frac=1.0, random_state=1)
    renamed_curves = curves.assign(run_id=curves["run_id"].map(names)).sample(
        frac=1.0, random_state=2
    )
    again = CrossSizeTrajectoryLaw(**settings).fit(renamed, renamed_curves)
    np.testing.assert_array_equal(again.theta_, first.theta_)
    np.testing.assert_array_equal(again.theta_boot_, first.theta_boot_)


def test_cross_size_law_keeps_the_annealing_drop_at_a_held_out_size():
    """On the committed `quick` sweep (real curves), fitted without its largest size: the drop
    in loss over the second half of each cosine run there is predicted at its measured size.
    Per-size fits over mixed peak LRs set the annealing term to zero, and a joint fit started
    from a line through them predicted a median of 0.4x the measured drop."""
    from scaling.trajectory import fitted_steps

    law, runs, curves, held = quick_held_out()
    ratios = []
    for rid, run in runs[held & (runs["schedule"] == "cosine")].iterrows():
        lrs = lr_schedule_of_run(run)
        c = curves[curves["run_id"] == rid].sort_values("step")
        c = c[np.isfinite(c["loss"])]
        steps, loss = c["step"].to_numpy(), c["loss"].to_numpy()
        assert fitted_steps(steps, lrs, 0.25).any()
        i = int(np.searchsorted(steps, 0.5 * lrs.size))
        pred = law.predict(
            float(run["n_params"]), lrs, float(run["batch_tokens"]), [steps[i], steps[-1]]
        )
        ratios.append((pred[0] - pred[1]) / (loss[i] - loss[-1]))
    assert len(ratios) >= 8
    assert 0.6 <= float(np.median(ratios)) <= 1.6, ratios


@pytest.mark.parametrize("width, linear", [(64, True), (32, False)])
def test_a_fit_in_the_annealing_terms_linear_limit_is_flagged(width, linear):
    """On the committed `reference` curves, the constant and cosine runs of width 64 (peak LR
    1e-2, 12M tokens) leave the annealing term in its linear limit (B -> inf, C -> 0), and the
    WSD and step runs are then predicted 1.0% and 1.7% off; width 32's fit saturates. Only
    the first is flagged, with the numbers that show it."""
    import warnings
    from pathlib import Path

    from scaling.runs import read_runs
    from scaling.trajectory import TrajectoryFitWarning

    root = Path(__file__).resolve().parents[1] / "results" / "reference"
    runs = read_runs(root / "runs.csv")
    runs.index = runs["run_id"].astype(str)
    variant = runs[(runs["width"] == width) & (runs["schedule"] == "wsd")].iloc[0]
    same = (
        (runs["width"] == width)
        & (runs["lr"] == variant["lr"])
        & (runs["batch_tokens"] == variant["batch_tokens"])
        & (runs["steps"] == variant["steps"])
        & runs["schedule"].isin(["constant", "cosine"])
    )
    train = runs[same]
    assert sorted(train["schedule"]) == ["constant", "cosine"]
    curves = pd.read_csv(root / "curves.csv")
    curves = curves[curves["run_id"].astype(str).isin(train.index)]
    schedules = {rid: lr_schedule_of_run(run) for rid, run in train.iterrows()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        law = TrajectoryLaw(n_bootstrap=0, skip_frac=0.25, seed=0).fit(curves, schedules)
    flagged = [w for w in caught if issubclass(w.category, TrajectoryFitWarning)]
    if linear:
        assert law.annealing_saturation_ < 0.1
        assert len(flagged) == 1 and "linear limit" in str(flagged[0].message)
        assert "WSD, step" in str(flagged[0].message)
    else:
        assert law.annealing_saturation_ > 1.0
        assert not flagged


def test_annealing_saturation_is_none_without_an_lr_drop():
    rng = np.random.default_rng(0)
    lrs = _specs()["constant"].lrs(PEAK_LR, STEPS)
    law = TrajectoryLaw(n_bootstrap=0, seed=0).fit(_logged(TRUE, lrs, rng, "c"), {"c": lrs})
    assert law.annealing_saturation_ is None


def test_cross_size_fit_weighs_a_setting_once_however_many_seeds_ran_it(monkeypatch):
    """Replicates of one setting (size, batch, schedule: seeds of a grid point) share its
    weight. Copies of the runs of one size, as a sweep part-way through adding seeds holds,
    leave the law where it was; weighed as runs of their own, they pull it toward that size."""
    import collections

    import scaling.trajectory as trajectory

    rng = np.random.default_rng(6)
    runs, curves = _tables([2.5e5, 1e6, 4e6], ["cosine", "step"], rng)
    settings = {"n_starts": 2, "n_bootstrap": 0, "max_segments": SEGMENTS, "seed": 0}
    base = CrossSizeTrajectoryLaw(**settings).fit(runs, curves)
    one = runs[runs["n_params"] == 1e6]
    runs3, curves3 = [runs], [curves]
    for seed in (1, 2):
        runs3.append(one.assign(run_id=one["run_id"] + f"-s{seed}", seed=seed))
        for rid in one["run_id"]:
            curves3.append(curves[curves["run_id"] == rid].assign(run_id=f"{rid}-s{seed}"))
    runs3 = pd.concat(runs3, ignore_index=True)
    curves3 = pd.concat(curves3, ignore_index=True)
    law = CrossSizeTrajectoryLaw(**settings).fit(runs3, curves3)
    assert law.n_runs_ == len(runs) + 2 * len(one)
    np.testing.assert_allclose(law.theta_, base.theta_, atol=1e-4)

    class EachOnce(collections.Counter):  # every run a setting of its own
        def __getitem__(self, key):
            return 1

    monkeypatch.setattr(trajectory, "Counter", EachOnce)
    unweighted = CrossSizeTrajectoryLaw(**settings).fit(runs3, curves3)
    assert np.max(np.abs(unweighted.theta_ - base.theta_)) > 1e-3


def test_the_residual_map_keeps_one_entry_per_setting_the_mean_of_its_seeds():
    """Replicates of a setting make one entry of the residual map, the mean of their log
    residuals (as they share one weight in the fit): a replicated point does not outweigh an
    unreplicated neighbour in the map's kernel average."""
    from dataclasses import replace

    from scaling.trajectory import _collect, _replicate_keys, lr_schedule_of_run

    rng = np.random.default_rng(6)
    runs, curves = _tables([2.5e5, 1e6, 4e6], ["cosine", "step"], rng)
    law = CrossSizeTrajectoryLaw(n_starts=2, n_bootstrap=0, max_segments=SEGMENTS, seed=0)
    law.fit(runs, curves)
    by_id = runs.set_index("run_id")
    schedules = {rid: lr_schedule_of_run(row) for rid, row in by_id.iterrows()}
    n_of = by_id["n_params"].astype(float).to_dict()
    bt_of = by_id["batch_tokens"].astype(float).to_dict()
    design = lambda rid: law._design(n_of[rid], bt_of[rid], float(schedules[rid].max()))  # noqa: E731
    fits = [cv for cv, _, _ in _collect(curves, schedules, SEGMENTS, design, law.skip_frac)]
    settings = _replicate_keys(list(schedules), n_of, bt_of, schedules)
    base = law._residual_map(fits, schedules, n_of, bt_of, settings)
    assert base.resid.shape[0] == len(runs)
    # Two more seeds of the 1e6 runs, 3% above and 1.5% below in loss: the mean of the three
    # moves each such entry by log(1.03 * 0.985) / 3 and leaves the others as they were.
    shifted = {"n1000000-cosine", "n1000000-step"}
    extra = []
    for cv in fits:
        if cv.run_id in shifted:
            for seed, factor in ((1, 1.03), (2, 0.985)):
                rid = f"{cv.run_id}-s{seed}"
                schedules[rid], n_of[rid], bt_of[rid] = (
                    schedules[cv.run_id],
                    n_of[cv.run_id],
                    bt_of[cv.run_id],
                )
                extra.append(replace(cv, run_id=rid, log_loss=cv.log_loss + math.log(factor)))
    settings = _replicate_keys(list(schedules), n_of, bt_of, schedules)
    merged = law._residual_map(fits + extra, schedules, n_of, bt_of, settings)
    assert merged.resid.shape == base.resid.shape
    np.testing.assert_array_equal(merged.coords, base.coords)
    moved = np.isclose(merged.coords[:, 0], round(math.log(1e6), 6))
    assert moved.sum() == 2
    np.testing.assert_allclose(
        merged.resid[moved] - base.resid[moved], math.log(1.03 * 0.985) / 3, atol=2e-6
    )
    np.testing.assert_array_equal(merged.resid[~moved], base.resid[~moved])


def _fit_problem(synthetic, names=("constant", "cosine", "wsd")):
    from scaling.trajectory import _N_LOCAL, _collect, _local_bounds

    curves, lrs = synthetic
    data = _collect(
        curves[curves["run_id"].isin(names)],
        lrs,
        SEGMENTS,
        design=lambda rid: np.eye(_N_LOCAL),
        skip_frac=0.25,
    )
    fits = [cv for cv, _, _ in data]
    min_loss = float(min(np.exp(cv.log_loss).min() for cv in fits))
    return fits, _local_bounds(min_loss)


@pytest.mark.parametrize("weights", [None, (1.0, 0.5, 0.5)])
def test_the_least_squares_form_is_the_huber_objective(synthetic, weights):
    """The fit minimizes `_objective` as robust least squares: 0.5 * sum(rho(f^2)) equals the
    objective, and the Jacobian equals finite differences of the residuals; also with curves
    weighted as replicates are (1/k each)."""
    from dataclasses import replace

    from scaling.trajectory import _objective, _Problem

    fits, bounds = _fit_problem(synthetic)
    if weights is not None:
        fits = [replace(cv, weight=w) for cv, w in zip(fits, weights, strict=True)]
    rng = np.random.default_rng(0)
    truth = np.log([TRUE[k] for k in PARAM_NAMES])
    for scale in (
        0.0,
        0.05,
        0.3,
    ):  # at the truth (residuals inside Huber's quadratic part) and off it
        theta = np.clip(truth + rng.normal(0, scale, truth.size), *np.array(bounds).T)
        problem = _Problem(theta, fits, bounds, 1e-2)
        x = theta[problem.free]
        f = problem.residuals(x)
        cost = 0.5 * problem.rho(f**2)[0].sum()
        assert cost == pytest.approx(_objective(theta, fits, 1e-2)[0], rel=1e-9)
        jac = problem.jacobian(x)
        eps = 1e-6
        for k in range(x.size):
            step = np.zeros_like(x)
            step[k] = eps
            numeric = (problem.residuals(x + step) - problem.residuals(x - step)) / (2 * eps)
            np.testing.assert_allclose(jac[:, k], numeric, rtol=1e-4, atol=1e-6)


def test_the_least_squares_fit_reaches_the_lbfgs_optimum(synthetic):
    """From the same start, the least-squares solver ends at an objective no worse than
    L-BFGS-B run to convergence on `_objective` (what the fit used before), in far fewer
    evaluations of the law."""
    from scipy.optimize import minimize

    from scaling.trajectory import _heuristic_phi, _minimize, _objective

    fits, bounds = _fit_problem(synthetic)
    xy = [(cv.terms.s1, np.exp(cv.log_loss), PEAK_LR, STEPS) for cv in fits]
    start = np.clip(_heuristic_phi(xy), *np.array(bounds).T)
    ours = _minimize(start, fits, bounds, 1e-2, maxiter=1000, ftol=1e-12)
    with np.errstate(all="ignore"):
        ref = minimize(
            lambda th: _objective(th, fits, 1e-2),
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12},
        )
    assert ours.success
    assert ours.fun <= ref.fun + 1e-9
    assert ours.nit < ref.nfev
    np.testing.assert_allclose(ours.x[:3], ref.x[:3], atol=0.02)  # L0, A, alpha: well pinned
