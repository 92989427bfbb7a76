"""Optimal-LR and -batch laws: recovered from synthetic sweeps (coarse grids over many cells, and
few cells with many runs), with reduced forms when D cannot be separated from N."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from scaling.hparam_laws import fit_power_law
from scaling.optimum import cell_optima
from scaling.synthetic import TrueLaws, make_sweep


def laws_from(runs, n_boot=150, compute=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, boot, _ = cell_optima(runs, bootstrap=n_boot, seed=0, return_bootstrap=True)
        out = {}
        for target, col, k, edge in (
            ("lr", "lr_opt", 0, "edge_lr"),
            ("batch_tokens", "batch_opt", 1, "edge_batch"),
        ):
            out[target] = fit_power_law(
                target,
                table["n_params"].to_numpy(),
                table["tokens"].to_numpy(),
                table[col].to_numpy(),
                np.exp(boot[:, :, k]),
                exclude=table[edge].to_numpy(),
                compute=compute,
                cell_names=table["cell"].tolist(),
            )
    return out, table


def assert_inside(law, truth: dict):
    for key, true in truth.items():
        lo, hi = law.params_ci_[key]
        assert lo <= true <= hi, (law.target, key, true, (lo, hi), law.params_[key])


def test_many_cells_coarse_grid_recovers_both_laws():
    runs, truth = make_sweep(
        seed=11,
        sizes=(2e6, 6e6, 2e7, 6e7, 2e8),
        lr_factors=(1 / 6, 1 / 2.5, 1, 2.5, 6),
        batch_factors=(1 / 4, 1, 4),
        noise=0.003,
    )
    laws, table = laws_from(runs)
    assert len(table) == 15 and table["n_diverged"].sum() > 0
    assert laws["lr"].variables == ("N", "D")
    assert_inside(laws["lr"], {"exp_N": truth.lr["exp_N"], "exp_D": truth.lr["exp_D"]})
    assert_inside(
        laws["batch_tokens"], {"exp_N": truth.batch["exp_N"], "exp_D": truth.batch["exp_D"]}
    )
    assert abs(laws["lr"].params_["exp_N"] - truth.lr["exp_N"]) < 0.15
    # The coefficient interval covers the truth's prediction at a point inside the data.
    lo, hi = laws["lr"].predict_interval(2e7, 4e8)
    assert lo <= truth.lr_at(2e7, 4e8) <= hi


def test_few_cells_many_runs():
    runs, truth = make_sweep(
        seed=12,
        sizes=(3e6, 3e7),
        budget_per_param=(10.0, 60.0),
        n_runs=60,
        noise=0.003,
        missing=0.1,
    )
    laws, table = laws_from(runs)
    assert len(table) == 4 and table["n_runs"].min() >= 40
    assert_inside(laws["lr"], {"exp_N": truth.lr["exp_N"], "exp_D": truth.lr["exp_D"]})
    assert_inside(laws["batch_tokens"], {"exp_D": truth.batch["exp_D"]})


def test_single_budget_gives_reduced_form_in_n():
    truth = TrueLaws()
    runs, truth = make_sweep(seed=13, tokens=(4e8,), sizes=(2e6, 6e6, 2e7, 6e7), truth=truth)
    laws, _ = laws_from(runs, n_boot=60)
    lr = laws["lr"]
    assert lr.variables == ("N",)
    assert any("one value" in note for note in lr.notes_)
    assert_inside(lr, {"exp_N": truth.lr["exp_N"]})


def test_collinear_budgets_give_reduced_form_with_warning():
    runs, truth = make_sweep(seed=14, budget_per_param=(20.0,), sizes=(2e6, 6e6, 2e7, 6e7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = cell_optima(runs, bootstrap=0)
    with pytest.warns(UserWarning, match="collinear"):
        law = fit_power_law("lr", table["n_params"], table["tokens"], table["lr_opt"])
    assert law.variables == ("N",)
    # Along D = 20 N the effective exponent is exp_N + exp_D.
    assert law.params_["exp_N"] == pytest.approx(truth.lr["exp_N"] + truth.lr["exp_D"], abs=0.12)


def test_compute_form():
    runs, truth = make_sweep(seed=15, budget_per_param=(20.0,), sizes=(2e6, 6e6, 2e7, 6e7, 2e8))
    laws, table = laws_from(runs, n_boot=80, compute=True)
    lr = laws["lr"]
    assert lr.variables == ("C",)
    # D = 20 N, C = 120 N^2, so lr ~ N^(a + b) = C^((a + b) / 2).
    expected = (truth.lr["exp_N"] + truth.lr["exp_D"]) / 2
    lo, hi = lr.params_ci_["exp_C"]
    assert lo <= expected <= hi
    c = 6 * 2e8 * 4e9
    assert lr.predict(flops=c) == pytest.approx(truth.lr_at(2e8, 4e9), rel=0.5)


def test_round_trip_and_errors():
    runs, _ = make_sweep(seed=16, sizes=(2e6, 2e7, 2e8), budget_per_param=(5.0, 50.0))
    laws, _ = laws_from(runs, n_boot=30)
    from scaling.hparam_laws import PowerLaw

    again = PowerLaw.from_dict(laws["lr"].to_dict())
    assert again.predict(1e9, 1e10) == pytest.approx(laws["lr"].predict(1e9, 1e10), rel=1e-12)
    assert again.predict_interval(1e9, 1e10) == pytest.approx(
        laws["lr"].predict_interval(1e9, 1e10), rel=1e-4
    )
    with pytest.raises(ValueError, match="more than one"):
        fit_power_law("lr", [1e6, 1e7], [1e8, 1e8], [np.nan, 2e-3])


@pytest.mark.parametrize("shift", [1e-9, -1e-9])
def test_a_zero_width_interval_still_contains_its_point_estimate(shift):
    from scaling.hparam_laws import PowerLaw, _store_fit

    law = PowerLaw("lr", ("N", "D"), {"coef": 0.5, "exp_N": -0.3, "exp_D": 0.1})
    beta = law._beta()
    # Every resample at the same solution, a hair off the point fit (a zero-width spread).
    _store_fit(law, beta, [beta + [shift, shift, 0.0]] * 40)
    for key, (lo, hi) in law.params_ci_.items():
        assert lo <= law.params_[key] <= hi, (key, lo, law.params_[key], hi)
    point = law.predict(1e9, 1e10)
    lo, hi = law.predict_interval(1e9, 1e10)
    assert lo <= point <= hi and hi - lo < 1e-6 * point


def test_edge_cell_warnings_name_the_form_and_agree_with_the_counts():
    # 6 cells on a 3 x 2 (N, D) grid, 3 of them with their optimum on the grid's edge: the
    # (N, D) law (3 parameters) must keep them, the compute law (2 parameters) can leave them out.
    n = np.array([1e6, 1e6, 4e6, 4e6, 1.6e7, 1.6e7])
    d = np.array([2e7, 8e7, 2e7, 8e7, 2e7, 8e7])
    lr = 0.01 * (n / 1e6) ** -0.1 * (d / 2e7) ** -0.05
    edge = np.array([True, False, False, True, False, True])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_power_law("lr", n, d, lr, exclude=edge)
        fit_power_law("lr", n, d, lr, exclude=edge, compute=True)
    messages = [str(w.message) for w in caught]
    kept = [m for m in messages if "kept" in m]
    left = [m for m in messages if "left out" in m]
    assert len(kept) == 1 and kept[0].startswith("lr law in N, D: kept 3 cell(s)")
    assert "without them 3 would be left, fewer than the 4 needed for 3 parameters" in kept[0]
    assert len(left) == 1 and left[0].startswith("lr law in C: left out 3 cell(s)")


def test_lr_at_batch_law_recovers_the_lr_batch_coupling():
    # Adam's valley: the best LR grows as the square root of the batch. The LR-at-batch law
    # must find that exponent, and predict the LR of a batch the batch law did not pick.
    from scaling.hparam_laws import fit_lr_at_batch
    from scaling.optimum import conditional_lr_optima, split_cells

    truth = TrueLaws(lr_batch_exp=0.5)
    runs, _ = make_sweep(seed=21, truth=truth, noise=0.002)
    table = conditional_lr_optima(split_cells(runs))
    assert set(table.columns) >= {"cell", "batch_tokens", "lr_opt", "edge"}
    assert table.groupby("cell")["batch_tokens"].nunique().min() >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = fit_lr_at_batch(table, bootstrap=100, seed=0)
    assert law.variables == ("N", "D", "B")
    assert law.params_["exp_B"] == pytest.approx(0.5, abs=0.05)
    lo, hi = law.params_ci_["exp_B"]
    assert lo < law.params_["exp_B"] < hi and hi - lo < 0.2
    n, d = 2e8, 4e9
    for factor in (0.25, 4.0):
        b = factor * truth.batch_at(n, d)
        assert law.predict(n, d, batch_tokens=b) == pytest.approx(
            truth.lr_at_batch(n, d, b), rel=0.35
        )
    with pytest.raises(ValueError, match="batch_tokens"):
        law.predict(n, d)
    # Without the coupling the same fit finds none.
    runs, _ = make_sweep(seed=21, noise=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = fit_lr_at_batch(conditional_lr_optima(split_cells(runs)))
    assert flat.params_["exp_B"] == pytest.approx(0.0, abs=0.05)


def test_lr_at_batch_law_needs_two_batch_sizes():
    from scaling.hparam_laws import fit_lr_at_batch
    from scaling.optimum import conditional_lr_optima, split_cells

    runs, _ = make_sweep(seed=22, batch_factors=(1.0,))
    table = conditional_lr_optima(split_cells(runs))
    assert table.empty  # no cell swept two batch sizes
    runs, _ = make_sweep(seed=22, batch_factors=(0.5, 2.0))
    table = conditional_lr_optima(split_cells(runs))
    one_batch = table[table["batch_tokens"] == table["batch_tokens"].iloc[0]]
    with pytest.raises(ValueError, match="two or more batch sizes"):
        fit_lr_at_batch(one_batch.assign(batch_tokens=1024.0))
