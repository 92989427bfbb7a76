"""The cross-size trajectory law's residual map: its misfit at a grid point, carried to sizes and
points between the grid's."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from trajectory_support import PEAK_LR, STEPS, quick_held_out, run_row

from scaling._residual_map import GRID, ResidualMap, profile
from scaling.schedules import ScheduleSpec
from scaling.trajectory import (
    PARAM_NAMES,
    CrossSizeTrajectoryLaw,
    _predict_phi,
    fitted_steps,
    lr_schedule_of_run,
)

COSINE = ScheduleSpec("cosine", warmup_steps=20)
LRS = (3e-3, 1e-2, 3e-2)
BUMP = 0.01  # the wiggle in the log loss of runs at the highest LR, at every size


def _truth(n_params: float, peak: float, lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A multi-power law whose L0 moves smoothly with N and the LR (which the law's form
    follows), times a wiggle over the run at the highest LR (which no form of it follows)."""
    z, u = n_params / 1e6, math.log(peak / PEAK_LR)
    params = {"L0": 2.0 * z**-0.05 * math.exp(0.02 * u + 0.03 * u * u), "A": 1.0 * z**-0.1}
    params.update(alpha=0.5, B=30.0 * z**0.1, C=2.0, beta=0.5, gamma=0.5)
    phi = np.log([params[k] for k in PARAM_NAMES])
    loss = _predict_phi(phi, lrs, steps, max_segments=10**6)
    bump = BUMP * np.sin(4 * np.pi * steps / lrs.size) if peak == LRS[-1] else 0.0
    return loss * np.exp(bump)


@pytest.fixture(scope="module")
def bumped():
    """Fitted on three sizes, cosine runs at three peak LRs; the fourth size held out."""
    rng = np.random.default_rng(7)
    runs, curves = [], []
    for n in (2.5e5, 1e6, 4e6):
        for peak in LRS:
            rid = f"n{int(n)}-lr{peak:g}"
            lrs = COSINE.lrs(peak, STEPS)
            steps = np.arange(20, STEPS + 1, 20)
            loss = _truth(n, peak, lrs, steps) * np.exp(rng.normal(0.0, 0.001, steps.size))
            curves.append(pd.DataFrame({"run_id": rid, "step": steps, "loss": loss}))
            runs.append(run_row(rid, n, COSINE, np.nan, lr=peak))
    law = CrossSizeTrajectoryLaw(n_starts=2, n_bootstrap=2, max_segments=60, seed=0)
    return law.fit(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))


def _error(law, n, peak, spec=COSINE, corrected=True):
    lrs = spec.lrs(peak, STEPS)
    steps = np.arange(STEPS // 4, STEPS + 1)
    pred = law.predict(n, lrs, 4096, steps=steps, corrected=corrected)
    return float(np.mean(np.abs(pred / _truth(n, peak, lrs, steps) - 1)))


def test_the_misfit_at_a_grid_point_carries_to_a_held_out_size(bumped):
    law = bumped
    n_new = 1.6e7  # 4x beyond the largest fitted size
    alone, corrected = _error(law, n_new, LRS[-1], corrected=False), _error(law, n_new, LRS[-1])
    assert alone > 0.004  # the wiggle the smooth form cannot follow
    # Part of the wiggle the fit bends its LR terms to (and extrapolates in N); the rest, its
    # residual at the largest size or the two largest (as the map chose), the map carries over.
    assert corrected < 0.85 * alone
    lrs = COSINE.lrs(LRS[-1], STEPS)
    # at the logged steps past the first quarter, where the map measured its runs' residuals
    # (before the first of them it holds that one's residual)
    steps = np.arange(20, STEPS + 1, 20)
    steps = steps[steps >= STEPS // 4]
    fitted = [
        np.log(_truth(n, LRS[-1], lrs, steps) / law.predict(n, lrs, 4096, steps, corrected=False))
        for n in (1e6, 4e6)[-law.residual_map_.n_sizes :]
    ]
    carried = law.residual_map_.log_correction(n_new, lrs, 4096, steps)
    np.testing.assert_allclose(carried, np.mean(fitted, axis=0), atol=0.005)
    # At the other grid points the correction does no harm.
    for peak in LRS[:-1]:
        assert _error(law, n_new, peak) < max(
            0.003, 1.2 * _error(law, n_new, peak, corrected=False)
        )


def test_on_real_curves_the_map_brings_a_held_out_size_closer():
    """The committed `quick` sweep fitted without its largest size: the curves of that size
    (after the first quarter of each run) are predicted better with the map than without, over
    all its runs and over each cell's best."""
    law, runs, curves, held = quick_held_out()
    errors, best = {True: [], False: []}, {True: [], False: []}
    cells = runs[held & (runs["schedule"] == "cosine")].sort_values("loss").groupby("cell")
    best_ids = set(cells.head(1).index)
    for rid, run in runs[held].iterrows():
        lrs = lr_schedule_of_run(run)
        c = curves[curves["run_id"] == rid].dropna(subset=["loss"]).sort_values("step")
        keep = fitted_steps(c["step"].to_numpy(), lrs, 0.25)
        steps, loss = c["step"].to_numpy()[keep], c["loss"].to_numpy()[keep]
        for corrected in (True, False):
            pred = law.predict(
                run["n_params"], lrs, run["batch_tokens"], steps, corrected=corrected
            )
            err = float(np.mean(np.abs(pred / loss - 1)))
            errors[corrected].append(err)
            if rid in best_ids:
                best[corrected].append(err)
    assert len(errors[True]) >= 10 and len(best[True]) >= 2
    assert np.mean(errors[True]) < 0.85 * np.mean(errors[False])
    assert np.mean(best[True]) < 0.6 * np.mean(best[False])


def test_the_interval_moves_with_the_correction(bumped):
    lrs = COSINE.lrs(LRS[-1], STEPS)
    steps = np.arange(200, STEPS + 1, 50)
    mid, lo, hi = bumped.predict(1.6e7, lrs, 4096, steps=steps, return_interval=True)
    raw, raw_lo, raw_hi = bumped.predict_interval(1.6e7, lrs, 4096, steps=steps, corrected=False)
    np.testing.assert_allclose(lo / raw_lo, mid / raw, rtol=1e-9)
    np.testing.assert_allclose(hi / raw_hi, mid / raw, rtol=1e-9)
    assert np.all(lo < mid) and np.all(mid < hi)
    assert np.any(np.abs(mid / raw - 1) > BUMP / 2)  # the wiggle moves the prediction


def test_the_trajectory_frame_is_corrected_unless_asked_not_to_be(bumped):
    frame = bumped.trajectory(
        1.6e7, STEPS * 4096, lr=LRS[-1], batch_tokens=4096, warmup=20, points=40
    )
    lrs = COSINE.lrs(LRS[-1], STEPS)
    steps = frame["step"].to_numpy()
    np.testing.assert_allclose(frame["loss"], bumped.predict(1.6e7, lrs, 4096, steps))
    plain = bumped.trajectory(
        1.6e7, STEPS * 4096, lr=LRS[-1], batch_tokens=4096, warmup=20, points=40, corrected=False
    )
    np.testing.assert_allclose(
        plain["loss"], bumped.predict(1.6e7, lrs, 4096, steps, corrected=False)
    )
    assert not np.allclose(frame["loss"], plain["loss"])


def test_the_frame_says_how_much_of_the_curve_is_the_map(bumped):
    """At a fitted grid point the correction is carried in full by like runs of the nearest size
    or two (as the map chose); an LR far off the grid gets the law alone, and the frame says so."""
    kw = {"batch_tokens": 4096, "warmup": 20, "points": 40}
    at_grid = bumped.trajectory(1.6e7, STEPS * 4096, lr=LRS[-1], **kw)
    info = at_grid.attrs["residual_correction"]
    assert info["applied"] and info["support"] > 0.99 and info["reason"] is None
    assert info["material"] is True
    k = bumped.residual_map_.n_sizes
    assert info["n_params"] == [4e6, 1e6][:k] and info["runs"] == k
    ratio = at_grid["loss"] / at_grid["loss_law_alone"]
    assert np.abs(ratio - 1).max() > BUMP / 2  # the wiggle of the highest-LR runs
    plain = bumped.trajectory(1.6e7, STEPS * 4096, lr=LRS[-1], corrected=False, **kw)
    np.testing.assert_allclose(plain["loss_law_alone"], at_grid["loss_law_alone"])
    np.testing.assert_allclose(plain["loss"], plain["loss_law_alone"])
    assert plain.attrs["residual_correction"]["applied"] is False
    assert plain.attrs["residual_correction"]["reason"] == "corrected=False"
    assert plain.attrs["residual_correction"]["material"] is False
    # 100x the highest fitted LR: no fitted run near it, nothing moves
    far = bumped.trajectory(1.6e7, STEPS * 4096, lr=100 * LRS[-1], **kw)
    assert far.attrs["residual_correction"]["support"] < 1e-6
    # applied (the law has a map and it was asked for), but not enough to show
    assert far.attrs["residual_correction"]["applied"] is True
    assert far.attrs["residual_correction"]["material"] is False
    np.testing.assert_allclose(far["loss"], far["loss_law_alone"], rtol=1e-6)
    # half-way between two fitted LRs (in log): each weighs about as much, the support is lower
    mid = bumped.trajectory(1.6e7, STEPS * 4096, lr=math.sqrt(LRS[1] * LRS[2]), **kw)
    assert 0.0 < mid.attrs["residual_correction"]["support"] < info["support"]


def test_a_law_without_a_map_says_it_was_not_corrected(bumped):
    d = {k: v for k, v in bumped.to_dict().items() if k != "residual_map"}
    old = CrossSizeTrajectoryLaw.from_dict({**d, "format_version": 3})
    frame = old.trajectory(1.6e7, STEPS * 4096, lr=LRS[-1], batch_tokens=4096, points=10)
    assert frame.attrs["residual_correction"]["applied"] is False
    assert frame.attrs["residual_correction"]["reason"] == "no residual map in this law"
    np.testing.assert_allclose(frame["loss"], frame["loss_law_alone"])


def test_a_schedule_unlike_every_fitted_run_is_not_corrected(bumped):
    lrs = ScheduleSpec("wsd", warmup_steps=20).lrs(LRS[-1], STEPS)
    np.testing.assert_allclose(
        bumped.predict(1.6e7, lrs, 4096),
        bumped.predict(1.6e7, lrs, 4096, corrected=False),
        rtol=1e-6,
    )


def test_the_map_survives_the_law_file_and_an_older_file_predicts_uncorrected(bumped):
    d = json.loads(json.dumps(bumped.to_dict()))
    assert d["format_version"] == 4 and len(d["residual_map"]["rows"]) == 9
    back = CrossSizeTrajectoryLaw.from_dict(d)
    lrs = COSINE.lrs(LRS[-1], STEPS)
    np.testing.assert_allclose(back.predict(1.6e7, lrs, 4096), bumped.predict(1.6e7, lrs, 4096))
    old = {k: v for k, v in d.items() if k != "residual_map"}
    old["format_version"] = 3
    np.testing.assert_allclose(
        CrossSizeTrajectoryLaw.from_dict(old).predict(1.6e7, lrs, 4096),
        bumped.predict(1.6e7, lrs, 4096, corrected=False),
    )
    bad = dict(d, residual_map={"rows": [[0.0, 1.0]]})
    with pytest.raises(ValueError, match=r"residual_map\.rows"):
        CrossSizeTrajectoryLaw.from_dict(bad)
    bad = dict(d, residual_map={"rows": [[float("nan")] * len(d["residual_map"]["rows"][0])]})
    with pytest.raises(ValueError, match="residual_map.coords"):
        CrossSizeTrajectoryLaw.from_dict(bad)


# the map alone, on hand-made rows


def _map(rows):
    """rows: (n_params, peak LR, constant residual); batch 4096, 1000-step cosine runs."""
    lrs = COSINE.lrs(1.0, 1000)
    coords = [
        [math.log(n), math.log(lr), math.log(4096), math.log(4096 * 1000)] for n, lr, _ in rows
    ]
    profiles = [profile(lrs)] * len(rows)
    resid = [np.full(GRID.size, r) for _, _, r in rows]
    return ResidualMap(coords, profiles, resid)


def _at(rmap, n, lr, spec=COSINE):
    return float(rmap.log_correction(n, spec.lrs(lr, 1000), 4096, np.array([500]))[0])


def test_the_map_reads_grid_points_and_interpolates_between_them():
    rmap = _map([(1e6, 0.01, 0.02), (1e6, 0.02, -0.01), (1e6, 0.04, 0.0)])
    assert _at(rmap, 1e6, 0.01) == pytest.approx(0.02, abs=0.001)
    assert _at(rmap, 1e6, 0.02) == pytest.approx(-0.01, abs=0.001)
    assert _at(rmap, 1e6, math.sqrt(0.01 * 0.02)) == pytest.approx(0.005, abs=0.0005)
    # Beyond the grid: the edge's residual a quarter step out, nothing a whole step out.
    assert _at(rmap, 1e6, 0.01 / 2**0.25) == pytest.approx(0.02, abs=0.001)
    assert _at(rmap, 1e6, 0.005) == pytest.approx(0.0, abs=1e-5)
    # Another schedule shape at a grid point: no runs like it, no correction.
    assert _at(rmap, 1e6, 0.01, ScheduleSpec("constant", warmup_steps=20)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_the_map_averages_the_two_nearest_sizes_that_have_runs_like_the_query():
    rmap = _map([(1e5, 0.01, 0.04), (1e6, 0.01, 0.01), (4e6, 0.01, 0.03), (4e6, 0.04, 0.1)])
    assert _at(rmap, 1.6e7, 0.01) == pytest.approx(0.02, abs=0.001)  # 4e6 and 1e6
    assert _at(rmap, 1e5, 0.01) == pytest.approx(0.025, abs=0.001)  # 1e5 and 1e6
    assert _at(rmap, 1.6e7, 0.04) == pytest.approx(0.1, abs=0.002)  # only 4e6 has LR 0.04


def test_the_map_reads_one_size_where_its_misfit_drifts_with_n_and_two_where_it_scatters():
    """How many nearest sizes are read is chosen on the map's own rows: each size beyond the
    two smallest, predicted from the smaller ones. A misfit that grows with N is carried best
    by the nearest size alone; one that flips sign from size to size, by the mean of two."""
    sizes = (1e5, 1e6, 4e6, 1.6e7)
    drifting = _map([(n, lr, 0.01 * i) for i, n in enumerate(sizes) for lr in (0.01, 0.02)])
    assert drifting.n_sizes == 1
    assert drifting.transfer_error[1] < drifting.transfer_error[2]
    assert _at(drifting, 6.4e7, 0.01) == pytest.approx(0.03, abs=0.001)  # 1.6e7 alone
    flipping = _map([(n, lr, 0.02 * (-1) ** i) for i, n in enumerate(sizes) for lr in (0.01, 0.02)])
    assert flipping.n_sizes == 2
    assert flipping.transfer_error[2] < flipping.transfer_error[1]
    assert _at(flipping, 6.4e7, 0.01) == pytest.approx(0.0, abs=0.001)  # 1.6e7 and 4e6
    # Two sizes: nothing to compare, two are read (the rule before the choice).
    two = _map([(1e6, 0.01, 0.01), (4e6, 0.01, 0.03)])
    assert two.n_sizes == 2 and two.transfer_error == {}
    assert _at(two, 1.6e7, 0.01) == pytest.approx(0.02, abs=0.001)


def test_the_correction_fades_out_continuously_beyond_the_budgets():
    """Past the longest fitted budget the correction shrinks smoothly to nothing, with no jump
    where the nearest run stops counting."""
    lrs = COSINE.lrs(1.0, 1000)
    coords = [[math.log(1e6), math.log(0.01), math.log(4096), math.log(t)] for t in (3e6, 6e6)]
    rmap = ResidualMap(coords, [profile(lrs)] * 2, [np.full(GRID.size, 0.02)] * 2)
    got = []
    for tokens in np.geomspace(6e6, 6e6 * 2**2.5, 60):
        n_steps = int(tokens / 4096)
        lrs_q = COSINE.lrs(0.01, n_steps)
        got.append(rmap.log_correction(1e6, lrs_q, 4096, np.array([n_steps]))[0])
    got = np.array(got)
    assert got[0] == pytest.approx(0.02, abs=1e-4) and abs(got[-1]) < 1e-4
    assert np.all(np.diff(got) <= 1e-12) and np.max(-np.diff(got)) < 0.004


def test_the_map_rejects_rows_that_do_not_match():
    with pytest.raises(ValueError, match="same number"):
        ResidualMap(np.zeros((2, 4)), np.zeros((1, 16)), np.zeros((2, GRID.size)))
    with pytest.raises(ValueError, match="grid_points"):
        ResidualMap.from_dict({"rows": [], "grid_points": 7})


def test_token_counts_a_little_apart_are_one_budget_not_a_grid_step():
    """Runs of one budget at different batches have slightly different token counts; the map's
    step in tokens is the step between budgets, so a run at twice the budget still reads the
    shorter runs' residual."""
    lrs = COSINE.lrs(1.0, 1000)
    coords, resid = [], []
    for tokens, r in ((3e6, 0.01), (6e6, 0.02), (6.002e6, 0.02), (5.999e6, 0.02)):
        coords.append([math.log(1e6), math.log(0.01), math.log(4096), math.log(tokens)])
        resid.append(np.full(GRID.size, r))
    rmap = ResidualMap(coords, [profile(lrs)] * 4, resid)
    assert rmap.bandwidth[2] == pytest.approx(math.log(2) / 3, rel=1e-3)
    n_steps = int(12e6 / 4096)
    got = rmap.log_correction(1e6, COSINE.lrs(0.01, n_steps), 4096, np.array([n_steps]))
    assert got[0] == pytest.approx(0.02, abs=0.001)
