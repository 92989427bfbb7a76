"""The loss law's interval: the bootstrap spread of its parameters, widened by its own
leave-one-out error, and no interval where a reduced form is asked about what it never saw."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import scaling
from scaling import LossLaw
from scaling.synthetic import make_sweep

TRUE = {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.36}
FULL = "E+A/N^alpha+B/D^beta"


def law(n, d):
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def points(seed, sizes, budgets, noise=0.004):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e6, 3e8, sizes), len(budgets))
    d = np.tile(budgets, sizes)
    return n, d, law(n, d) * np.exp(rng.normal(0, noise, n.size))


@pytest.fixture(scope="module")
def fitted():
    n, d, loss = points(0, 6, np.geomspace(2e7, 5e9, 5))
    return LossLaw(bootstrap=60, seed=0, n_jobs=1).fit(n, d, loss)


def test_the_interval_is_the_parameter_spread_widened_in_quadrature(fitted):
    s = fitted.loo_rmse_log_
    # Where the leave-one-out error chose the form, it is that form's.
    assert s == fitted.selection_["loo_rmse_log"][FULL] and 0 < s < 0.02
    z = 1.959963984540054
    for n, d in ((1e9, 2e10), (3e6, 1e8)):
        point = fitted.predict(n, d)
        lo0, hi0 = fitted.predict_interval(n, d, misfit=False)
        lo, hi = fitted.predict_interval(n, d)
        assert lo < lo0 <= point <= hi0 < hi
        assert math.log(point / lo) == pytest.approx(math.hypot(math.log(point / lo0), z * s))
        assert math.log(hi / point) == pytest.approx(math.hypot(math.log(hi0 / point), z * s))
    # A 50% interval is narrower, widened by its own quantile.
    lo, hi = fitted.predict_interval(1e9, 2e10)
    lo50, hi50 = fitted.predict_interval(1e9, 2e10, level=0.5)
    assert lo < lo50 and hi50 < hi
    # compute_optimal's loss interval is widened the same way.
    res = fitted.compute_optimal(1e21)
    assert res["intervals"]["loss"] == pytest.approx(
        fitted.predict_interval(res["n_params"], res["tokens"]), rel=1e-3
    )


def test_a_forced_form_measures_its_own_leave_one_out_error(fitted):
    n, d, loss = points(0, 6, np.geomspace(2e7, 5e9, 5))
    forced = LossLaw(form=FULL, bootstrap=10, seed=0, n_jobs=1).fit(n, d, loss)
    assert forced.selection_ is None
    assert forced.loo_rmse_log_ == pytest.approx(fitted.loo_rmse_log_, rel=1e-6)
    assert LossLaw(form=FULL).fit(n, d, loss).loo_rmse_log_ is None  # no bootstrap, no interval


def test_law_files_keep_the_error_and_older_ones_fall_back(fitted):
    doc = fitted.to_dict()
    assert doc["loo_rmse_log"] == fitted.loo_rmse_log_
    again = LossLaw.from_dict(doc)
    assert again.predict_interval(1e9, 2e10) == pytest.approx(
        fitted.predict_interval(1e9, 2e10), rel=1e-4
    )
    # Written before the widening: the selection's error for the chosen form stands in.
    doc.pop("loo_rmse_log")
    assert LossLaw.from_dict(doc).loo_rmse_log_ == fitted.loo_rmse_log_
    # Without either, the interval is the parameter spread alone, as it was.
    doc.pop("selection")
    bare = LossLaw.from_dict(doc)
    assert bare.predict_interval(1e9, 2e10) == pytest.approx(
        fitted.predict_interval(1e9, 2e10, misfit=False), rel=1e-4
    )


def test_few_cells_the_widened_interval_holds_a_larger_size_more_often():
    """quick's design: 3 sizes x 2 budgets fitted (6 points, 5 parameters), the next size
    predicted, over 20 seeds (40 held-out points). The bootstrap of 6 points is narrower than
    the miss: the parameter spread held 27 of the 40 and the widened interval 32 (on an Intel
    Xeon, 2026-11-25). Four of the 40 lie within 0.05% of an edge, and machines round
    differently (on an AMD EPYC the first 5 seeds read 4 and 7 of 10, on the Intel 5 and 7), so
    the bounds leave room for them. Still short of 95%: six points' leave-one-out error is
    itself a rough estimate."""
    held = {False: 0, True: 0}
    for seed in range(20):
        n, d, loss = points(seed, 4, np.array([2e8, 1e9]))
        keep = n < n.max()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "only two distinct tokens values"
            m = LossLaw(bootstrap=50, seed=0, n_jobs=1).fit(n[keep], d[keep], loss[keep])
        assert m.selection_ is None and m.loo_rmse_log_ > 0  # 6 points: no form selection
        for i in np.flatnonzero(~keep):
            for misfit in held:
                lo, hi = m.predict_interval(n[i], d[i], misfit=misfit)
                held[misfit] += bool(lo <= loss[i] <= hi)
    assert held[True] >= 28 and held[True] >= held[False] + 3, held


def test_a_reduced_form_gives_no_interval_away_from_what_it_was_fitted_at():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e6, 3e8, 8)
    d = np.full_like(n, 1e9) * (1 + 0.001 * np.arange(8))  # one budget, a few steps apart
    m = LossLaw(bootstrap=30, seed=0, n_jobs=1).fit(
        n, d, law(n, d) * np.exp(rng.normal(0, 2e-3, 8))
    )
    assert m.form_ == "E+A/N^alpha" and m.loo_rmse_log_ > 0
    assert m.off_reduced_range(3e9, 1.02e9) is None
    lo, hi = m.predict_interval(3e9, 1.02e9)  # a larger model at that budget: a prediction
    assert lo < m.predict(3e9, 1.02e9) < hi
    assert m.off_reduced_range(3e9, 3e9) == "tokens"
    assert m.predict_interval(3e9, 3e9) is None
    assert m.predict_interval(3e9, 5e8) is None
    size = LossLaw(bootstrap=20, seed=0, n_jobs=1).fit(
        np.full(6, 5e7), np.geomspace(1e8, 1e10, 6), law(5e7, np.geomspace(1e8, 1e10, 6))
    )
    assert size.form_ == "E+B/D^beta"
    assert size.off_reduced_range(2e8, 1e9) == "n_params"
    assert size.predict_interval(2e8, 1e9) is None
    assert size.predict_interval(5e7, 3e10) is not None


def test_scaling_laws_say_why_a_reduced_loss_law_has_no_interval():
    runs, _ = make_sweep(seed=3, tokens=(1e9,), sizes=(2e6, 6e6, 2e7, 6e7), n_runs=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        laws = scaling.fit(runs, bootstrap=20, seed=0, n_jobs=1)
    at_budget = laws.predict(2e8, 1e9)
    assert at_budget.intervals["loss"] is not None
    assert not any("no interval is given" in w for w in at_budget.warnings)
    away = laws.predict(2e8, 1e10)
    assert away.intervals["loss"] is None
    (note,) = [w for w in away.warnings if "no interval is given" in w]
    assert "tokens=1e+10" in note and "knows only tokens" in note, note
