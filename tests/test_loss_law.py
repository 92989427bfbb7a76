"""LossLaw: recovers a known law from noisy synthetic points, reduces the form when the data
cannot identify a term, chooses between the additive and the coupled form by leave-one-out
error, and allocates compute the way the closed form says."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from scaling import LossLaw
from scaling._util import percentile_interval

TRUE = {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.36}


def law(n, d, p=TRUE):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def grid_points(seed=0, noise=0.004, sizes=6, budgets=5):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e6, 3e8, sizes), budgets)
    d = np.tile(np.geomspace(2e7, 5e9, budgets), sizes)
    loss = law(n, d) * np.exp(rng.normal(0, noise, n.size))
    return n, d, loss


@pytest.fixture(scope="module")
def fitted():
    n, d, loss = grid_points()
    return LossLaw(bootstrap=120, seed=0, n_jobs=1).fit(n, d, loss)


def test_recovers_parameters_inside_intervals(fitted):
    assert fitted.form_ == "E+A/N^alpha+B/D^beta"
    for key, true in TRUE.items():
        lo, hi = fitted.params_ci_[key]
        assert lo <= true <= hi, (key, true, lo, hi)
        assert lo <= fitted.params_[key] <= hi
    assert abs(fitted.params_["alpha"] - 0.34) < 0.05
    assert abs(fitted.params_["beta"] - 0.36) < 0.05


def test_residuals_and_prediction(fitted):
    n, d, loss = grid_points()
    assert fitted.residuals_.shape == loss.shape
    assert np.sqrt(np.mean(fitted.residuals_**2)) < 0.01
    pred = fitted.predict(1e9, 2e10)
    assert isinstance(pred, float)
    assert pred == pytest.approx(law(1e9, 2e10), rel=0.02)
    lo, hi = fitted.predict_interval(1e9, 2e10)
    assert lo <= pred <= hi


def test_compute_optimal_is_the_minimum_on_the_isoflop(fitted):
    flops = 1e21
    res = fitted.compute_optimal(flops)
    assert res["n_params"] * res["tokens"] * 6 == pytest.approx(flops, rel=1e-9)

    def loss_at(log_n):
        n = np.exp(log_n)
        return fitted.predict(n, flops / (6 * n))

    best = minimize_scalar(loss_at, bounds=(10, 40), method="bounded")
    assert res["n_params"] == pytest.approx(np.exp(best.x), rel=1e-3)
    lo, hi = res["intervals"]["n_params"]
    assert lo <= res["n_params"] <= hi


def test_single_token_budget_fits_reduced_form():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e6, 3e8, 8)
    d = np.full_like(n, 1e9)
    loss = law(n, d) * np.exp(rng.normal(0, 0.002, n.size))
    m = LossLaw().fit(n, d, loss)
    assert m.form_ == "E+A/N^alpha"
    assert m.params_["B"] is None and m.params_["beta"] is None
    assert "one token budget" in m.notes_[0]
    # E absorbs the D term at that budget.
    assert m.params_["E"] == pytest.approx(TRUE["E"] + TRUE["B"] / 1e9 ** TRUE["beta"], rel=0.05)
    assert abs(m.params_["alpha"] - TRUE["alpha"]) < 0.06
    with pytest.raises(ValueError, match="needs both the N and D terms"):
        m.compute_optimal(1e20)


def test_collinear_n_and_d_fits_reduced_form():
    n = np.geomspace(1e6, 3e8, 8)
    d = 20 * n
    m = LossLaw().fit(n, d, law(n, d))
    assert m.form_ == "E+A/N^alpha"
    assert "collinear" in m.notes_[0]


def test_single_size_fits_d_only():
    d = np.geomspace(1e7, 1e10, 7)
    n = np.full_like(d, 5e7)
    m = LossLaw().fit(n, d, law(n, d))
    assert m.form_ == "E+B/D^beta"
    assert abs(m.params_["beta"] - TRUE["beta"]) < 0.05


def test_bootstrap_is_seeded_and_independent_of_n_jobs():
    n, d, loss = grid_points(seed=3, sizes=4, budgets=4)
    a = LossLaw(bootstrap=12, seed=5, n_jobs=1).fit(n, d, loss)
    b = LossLaw(bootstrap=12, seed=5, n_jobs=2).fit(n, d, loss)
    np.testing.assert_allclose(a.bootstrap_samples_, b.bootstrap_samples_, rtol=1e-8)


def test_round_trip_dict(fitted):
    again = LossLaw.from_dict(fitted.to_dict())
    assert again.predict(3e9, 1e11) == pytest.approx(fitted.predict(3e9, 1e11), rel=1e-12)
    assert again.predict_interval(3e9, 1e11) == pytest.approx(
        fitted.predict_interval(3e9, 1e11), rel=1e-4
    )


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        LossLaw().predict(1e9, 1e10)
    with pytest.raises(ValueError, match=r"tokens\[1\]"):
        LossLaw().fit([1e6, 2e6, 3e6], [1e9, -1, 1e9], [3, 3, 3])
    with pytest.raises(ValueError, match="more than one"):
        LossLaw().fit([1e6] * 5, [1e9] * 5, [3.0] * 5)
    with pytest.raises(ValueError, match="needs more than 5 points"):
        LossLaw().fit(
            [1e6, 2e6, 4e6, 1e6, 4e6], [1e9, 2e9, 4e9, 4e9, 1e9], [3, 2.9, 2.8, 2.85, 2.9]
        )


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, -1e9, float("nan"), float("inf"), "1e9", None, True])
@pytest.mark.parametrize("field", ["n_params", "tokens"])
def test_predict_rejects_bad_inputs_naming_the_field_and_value(fitted, field, bad):
    args = {"n_params": 1e9, "tokens": 2e10, field: bad}
    needle = rf"^{field} must be a positive finite number, got {re.escape(repr(bad))}$"
    with pytest.raises(ValueError, match=needle):
        fitted.predict(**args)
    with pytest.raises(ValueError, match=needle):
        fitted.predict_interval(**args)


def test_predict_rejects_a_bad_element_of_an_array_and_keeps_arrays_working(fitted):
    with pytest.raises(
        ValueError, match=r"^n_params\[1\] must be a positive finite number, got -1"
    ):
        fitted.predict(np.array([1e9, -1.0]), 2e10)
    with pytest.raises(ValueError, match=r"^tokens\[2\] must be a positive finite number, got nan"):
        fitted.predict(1e9, [2e10, 3e10, float("nan")])
    with pytest.raises(ValueError, match=r"^tokens must be positive finite numbers"):
        fitted.predict(1e9, ["a", "b"])
    with pytest.raises(ValueError, match=r"^level must be at most 1"):
        fitted.predict_interval(1e9, 2e10, level=95)
    grid = fitted.predict(np.array([[1e8, 1e9], [1e10, 1e11]]), np.int64(20_000_000_000))
    assert grid.shape == (2, 2)
    assert grid[0, 1] == pytest.approx(fitted.predict(1e9, 2e10), rel=1e-12)


def _degenerate(shift: float) -> LossLaw:
    """A law whose bootstrap resamples all agree (zero spread) but sit `shift` (relative) off
    the point fit in E: the rounding a stored, or a noise-free, bootstrap leaves."""
    row = [TRUE["E"] * (1 + shift), TRUE["A"], TRUE["alpha"], TRUE["B"], TRUE["beta"]]
    return LossLaw.from_dict(
        {
            "form": "E+A/N^alpha+B/D^beta",
            "params": dict(TRUE),
            "bootstrap": {"columns": ["E", "A", "alpha", "B", "beta"], "samples": [row] * 50},
        }
    )


@pytest.mark.parametrize("shift", [1e-9, -1e-9])
def test_a_zero_width_interval_still_contains_its_point_estimate(shift):
    law = _degenerate(shift)
    point = law.predict(3e9, 1e11)
    lo, hi = law.predict_interval(3e9, 1e11)
    assert lo <= point <= hi
    assert hi - lo < 1e-8  # widened to the point, no further
    res = law.compute_optimal(1e21)
    for key in ("n_params", "tokens", "loss"):
        lo, hi = res["intervals"][key]
        assert lo <= res[key] <= hi, (key, lo, res[key], hi)


def test_percentile_interval_widens_to_its_point_and_leaves_nan_alone():
    samples = np.full(40, 2.0 + 1e-9)
    assert not percentile_interval(samples)[0] <= 2.0  # the miss the point= argument mends
    lo, hi = percentile_interval(samples, point=2.0)
    assert lo <= 2.0 <= hi and hi == 2.0 + 1e-9
    lo, hi = percentile_interval(samples, point=float("nan"))  # no point: unchanged
    assert lo == hi == 2.0 + 1e-9
    assert np.isnan(percentile_interval(np.full(5, np.nan), point=2.0)).all()  # no samples
    two = np.column_stack([np.full(30, 1.0 - 1e-9), np.full(30, 5.0 + 1e-9)])
    lo, hi = percentile_interval(two, point=[1.0, 5.0])
    assert (lo <= [1.0, 5.0]).all() and ([1.0, 5.0] <= hi).all()


def test_fitted_parameter_intervals_contain_the_point_fit():
    # Noise-free points: every resample refits to (nearly) the same law, a zero-width spread.
    n = np.repeat(np.geomspace(1e6, 3e8, 5), 4)
    d = np.tile(np.geomspace(2e7, 5e9, 4), 5)
    exact = LossLaw(bootstrap=20, seed=0, n_jobs=1).fit(n, d, law(n, d))
    for key, ci in exact.params_ci_.items():
        if ci is not None:
            assert ci[0] <= exact.params_[key] <= ci[1], (key, ci, exact.params_[key])


# --- the coupled form L = E + (A/N^alpha + B/D)^gamma ------------------------------------------
COUPLED = {"E": 1.5, "A": 2.0e4, "alpha": 0.7, "B": 3.0e7, "gamma": 0.4}


def coupled_law(n, d, p=COUPLED):
    return p["E"] + (p["A"] / n ** p["alpha"] + p["B"] / d) ** p["gamma"]


def coupled_points(seed=0, noise=0.003):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(3e4, 6e5, 5), 3)
    d = np.tile(np.geomspace(3e6, 1.2e7, 3), 5)
    return n, d, coupled_law(n, d) * np.exp(rng.normal(0, noise, n.size))


@pytest.fixture(scope="module")
def coupled():
    n, d, loss = coupled_points()
    return LossLaw(bootstrap=60, seed=0, n_jobs=1).fit(n, d, loss)


def test_coupled_data_choose_the_coupled_form_and_recover_it(coupled):
    # The larger model gains more from doubling D, which the additive form cannot express.
    n, d, loss = coupled_points(noise=0.0)
    gain = coupled_law(n, d) - coupled_law(n, 2 * d)
    assert gain[12] > 1.3 * gain[0]  # same budget, the largest size against the smallest
    sel = coupled.selection_
    assert sel["method"] == "leave-one-out" and sel["chosen"] == coupled.form_
    assert coupled.form_ == "E+(A/N^alpha+B/D)^gamma"
    rmse = sel["loo_rmse_log"]
    assert rmse["E+(A/N^alpha+B/D)^gamma"] < rmse["E+A/N^alpha+B/D^beta"]
    assert coupled.params_["beta"] == 1.0 and coupled.params_ci_["beta"] is None
    lo, hi = coupled.params_ci_["gamma"]
    assert lo <= COUPLED["gamma"] <= hi
    # Extrapolation to a model 4x larger than any fitted one, at the largest budget.
    assert coupled.predict(2.4e6, 1.2e7) == pytest.approx(coupled_law(2.4e6, 1.2e7), rel=0.01)
    lo, hi = coupled.predict_interval(2.4e6, 1.2e7)
    assert lo <= coupled.predict(2.4e6, 1.2e7) <= hi


def test_additive_data_keep_the_additive_form(fitted):
    sel = fitted.selection_
    assert sel["chosen"] == "E+A/N^alpha+B/D^beta"
    assert (
        sel["loo_rmse_log"]["E+A/N^alpha+B/D^beta"] < sel["loo_rmse_log"]["E+(A/N^alpha+B/D)^gamma"]
    )


def test_a_forced_form_skips_the_selection():
    n, d, loss = coupled_points()
    law_ = LossLaw(form="E+A/N^alpha+B/D^beta").fit(n, d, loss)
    assert law_.form_ == "E+A/N^alpha+B/D^beta" and law_.selection_ is None
    assert law_.params_["gamma"] is None


def test_coupled_compute_optimal_is_the_minimum_on_the_isoflop(coupled):
    flops = 1e16
    res = coupled.compute_optimal(flops)

    def loss_at(log_n):
        n = np.exp(log_n)
        return coupled.predict(n, flops / (6 * n))

    best = minimize_scalar(loss_at, bounds=(8, 30), method="bounded")
    assert res["n_params"] == pytest.approx(np.exp(best.x), rel=1e-3)
    assert res["loss"] == pytest.approx(best.fun, rel=1e-9)
    lo, hi = res["intervals"]["loss"]
    assert lo <= res["loss"] <= hi


def test_coupled_round_trip_and_a_file_from_before_the_coupled_form(coupled, fitted):
    again = LossLaw.from_dict(coupled.to_dict())
    assert again.selection_ == coupled.selection_
    assert again.predict(1e6, 2e7) == pytest.approx(coupled.predict(1e6, 2e7), rel=1e-12)
    assert again.predict_interval(1e6, 2e7) == pytest.approx(
        coupled.predict_interval(1e6, 2e7), rel=1e-4
    )
    # Law files written before the coupled form: five bootstrap columns, no gamma anywhere.
    old = fitted.to_dict()
    old["params"].pop("gamma")
    old["intervals"].pop("gamma")
    old.pop("selection")
    old["bootstrap"]["columns"] = old["bootstrap"]["columns"][:5]
    old["bootstrap"]["samples"] = [row[:5] for row in old["bootstrap"]["samples"]]
    loaded = LossLaw.from_dict(old)
    assert loaded.predict_interval(3e9, 1e11) == pytest.approx(
        fitted.predict_interval(3e9, 1e11), rel=1e-4
    )
