"""The trajectory interval leaves out bootstrap refits whose loss goes non-positive on the
queried run (a refit that stopped far out on the annealing term's B-C ridge), and says so."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

import scaling
import scaling.trajectory as trajectory

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "results" / "quick" / "laws.json"


def test_the_interval_leaves_out_members_with_a_non_positive_or_non_finite_loss():
    rng = np.random.default_rng(0)
    pred = np.linspace(3.0, 2.0, 50)
    good = pred * np.exp(rng.normal(0, 0.02, (12, 50)))
    bad = good[:2].copy()
    bad[0, -1] = -0.5
    bad[1, 10] = np.nan
    lo, hi, left_out = trajectory._interval(np.vstack([good, bad]), pred, 0.01, 0.95)
    lo_good, hi_good, none_out = trajectory._interval(good, pred, 0.01, 0.95)
    assert (left_out, none_out) == (2, 0)
    assert np.array_equal(lo, lo_good) and np.array_equal(hi, hi_good)
    assert (lo > 1.5).all() and (lo < pred).all() and (hi > pred).all()


def test_with_fewer_than_two_members_left_the_interval_is_the_residual_band():
    pred = np.full(5, 2.0)
    members = np.array([[2.1] * 5, [2.0, 2.0, 2.0, 2.0, -1.0], [np.inf] * 5])
    lo, hi, left_out = trajectory._interval(members, pred, 0.01, 0.95)
    assert left_out == 2
    assert np.allclose(lo, 2.0 * np.exp(-0.01)) and np.allclose(hi, 2.0 * np.exp(0.01))


@pytest.fixture(scope="module")
def laws():
    return scaling.load(QUICK)


@pytest.fixture(scope="module")
def ridge(laws):
    """The same laws with one more bootstrap refit: the point fit moved along the B-C ridge
    (B x e^40, C x e^-40), which the fitted runs cannot tell from it but whose annealing term
    grows without bound on long runs."""
    out = copy.deepcopy(laws)
    tl = out._trajectory
    theta = tl.theta_.copy()
    names = list(tl.THETA_NAMES)
    theta[names.index("b")] += 40.0
    theta[names.index("C")] -= 40.0
    tl.theta_boot_ = np.vstack([tl.theta_boot_, theta])
    return out, theta


def test_a_ridge_refit_is_kept_on_fitted_runs_and_left_out_far_beyond_them(laws, ridge):
    out, theta = ridge
    tl = out._trajectory
    kw = dict(lr=0.01, batch_tokens=4096, corrected=False)
    # Within the fitted runs (N 3.3e4-2.5e5, 122-366 steps) the refit's curve is a plausible one
    # and counts.
    near = tl.trajectory(1e5, 1.5e6, **kw)
    assert near.attrs["interval"] == {"level": 0.95, "refits": len(tl.theta_boot_), "left_out": 0}
    alone = copy.deepcopy(tl)
    alone.theta_boot_ = theta[None, :]
    alone.theta_ = theta
    assert (alone.trajectory(1e5, 1.5e6, **kw)["loss"] > 0).all()
    # 24,000 steps: its loss ends below zero, and the interval is the one without it.
    far_alone = alone.trajectory(1e6, 1e8, **kw)
    assert far_alone["loss"].iloc[-1] < 0
    far = tl.trajectory(1e6, 1e8, **kw)
    far_base = laws._trajectory.trajectory(1e6, 1e8, **kw)
    assert far.attrs["interval"]["left_out"] == far_base.attrs["interval"]["left_out"] + 1
    assert np.array_equal(far["loss_low"], far_base["loss_low"])
    assert np.array_equal(far["loss_high"], far_base["loss_high"])
    assert (far["loss_low"] > 0.1).all()


def test_the_laws_say_how_many_refits_the_interval_left_out(ridge):
    out, _ = ridge
    frame = out.trajectory(1e6, 1e8, lr=0.01, batch_tokens=4096)
    left_out = frame.attrs["interval"]["left_out"]
    assert left_out >= 1
    said = [w for w in frame.attrs["warnings"] if w.startswith("loss_low, loss_high:")]
    assert len(said) == 1
    assert (
        f"leaves out {left_out} of the trajectory law's {len(out._trajectory.theta_boot_)}"
        in said[0]
    )
    quiet = out.trajectory(1e5, 1.5e6, lr=0.01, batch_tokens=4096)
    assert quiet.attrs["interval"]["left_out"] == 0
    assert not any(w.startswith("loss_low") for w in quiet.attrs["warnings"])
