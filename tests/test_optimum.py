"""Per-cell optima: near-optimal runs, divergence as evidence, pruned runs excluded, edges flagged."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from scaling import cell_optima

LR_STAR, B_STAR = 3e-3, 65536.0


def cell_runs(
    lr_factors,
    batch_factors=(1.0,),
    *,
    seed=0,
    noise=0.002,
    diverge_above=None,
    n=1e7,
    d=2e8,
    curv=0.05,
):
    rng = np.random.default_rng(seed)
    rows = []
    for f in lr_factors:
        for g in batch_factors:
            lr, bt = LR_STAR * f, B_STAR * g
            loss = (3.0 + curv * np.log(f) ** 2 + 0.02 * np.log(g) ** 2) * np.exp(
                rng.normal(0, noise)
            )
            diverged = diverge_above is not None and f > diverge_above
            rows.append(
                dict(
                    n_params=n,
                    tokens=d,
                    lr=lr,
                    batch_tokens=bt,
                    loss=np.nan if diverged else loss,
                    diverged=diverged,
                )
            )
    return pd.DataFrame(rows)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_lr_optimum_from_noisy_grid():
    runs = cell_runs(np.geomspace(1 / 16, 16, 13), seed=1, noise=0.003)
    row = cell_optima(runs, bootstrap=200, seed=0).iloc[0]
    assert row["lr_opt"] == pytest.approx(LR_STAR, rel=0.3)
    assert row["lr_low"] <= LR_STAR <= row["lr_high"]
    assert not row["edge"]
    assert row["method"] == "quadratic"
    assert row["n_runs"] == 13 and row["n_diverged"] == 0
    assert row["loss_opt"] == pytest.approx(3.0, rel=0.01)


def test_quadratic_beats_argmin_on_average():
    grid = np.geomspace(1 / 8, 8, 7) * 1.4  # grid points miss the optimum
    err_fit, err_argmin = [], []
    for seed in range(12):
        runs = cell_runs(grid, seed=seed, noise=0.004)
        row = cell_optima(runs, bootstrap=0).iloc[0]
        err_fit.append(abs(np.log(row["lr_opt"] / LR_STAR)))
        best = runs.loc[runs["loss"].idxmin(), "lr"]
        err_argmin.append(abs(np.log(best / LR_STAR)))
    assert np.mean(err_fit) < np.mean(err_argmin)


def test_diverged_runs_are_kept_and_bound_the_optimum():
    # Everything above 2x the optimum diverged: the optimum is bracketed, not on an edge.
    runs = cell_runs(np.geomspace(1 / 16, 16, 13), seed=2, diverge_above=2.0)
    row = cell_optima(runs, bootstrap=50).iloc[0]
    assert row["n_diverged"] == int((runs["diverged"]).sum()) > 0
    assert row["n_runs"] == len(runs)
    assert not row["edge_lr_high"]
    min_div = runs.loc[runs["diverged"], "lr"].min()
    assert row["lr_opt"] < min_div
    assert row["lr_opt"] == pytest.approx(LR_STAR, rel=0.4)


def test_divergence_caps_an_estimate_that_would_cross_it():
    # Finished runs only below the optimum, divergence right above the largest: the vertex
    # would land past the last finished LR, but the diverged runs cap it there.
    runs = cell_runs(np.geomspace(1 / 16, 1.0, 7), seed=3)
    blown = cell_runs([1.3, 2.0, 4.0], seed=3, diverge_above=1.0)
    runs = pd.concat([runs, blown], ignore_index=True)
    row = cell_optima(runs, bootstrap=0).iloc[0]
    assert row["lr_opt"] <= LR_STAR * 1.3
    assert not row["edge_lr_high"]


def test_optimum_on_the_edge_is_flagged():
    runs = cell_runs(np.geomspace(1 / 64, 1 / 4, 7), seed=4)  # the whole grid is below lr*
    with pytest.warns(UserWarning, match="edge of the swept range"):
        row = cell_optima(runs, bootstrap=0).iloc[0]
    assert row["edge_lr_high"] and row["edge"] and not row["edge_lr_low"]
    assert row["lr_opt"] <= runs["lr"].max() * (1 + 1e-9)


def test_pruned_runs_are_not_finished_runs():
    runs = cell_runs(np.geomspace(1 / 16, 16, 9), seed=5)
    # A pruned run reports a partial loss that looks better than anything: it must not count.
    fake = dict(n_params=1e7, tokens=2e8, lr=LR_STAR * 30, batch_tokens=B_STAR, loss=1.0)
    runs = pd.concat([runs, pd.DataFrame([fake | {"pruned": True}])], ignore_index=True)
    row = quiet(cell_optima, runs, bootstrap=0).iloc[0]
    assert row["n_pruned"] == 1
    assert row["lr_opt"] == pytest.approx(LR_STAR, rel=0.4)


def test_missing_runs_still_estimate():
    runs = cell_runs(np.geomspace(1 / 16, 16, 13), seed=6).drop(index=[5, 6, 8])
    row = cell_optima(runs, bootstrap=100).iloc[0]
    assert row["lr_low"] <= LR_STAR <= row["lr_high"]
    assert row["n_runs"] == 10


def test_joint_lr_and_batch_optimum():
    runs = cell_runs(np.geomspace(1 / 8, 8, 7), np.geomspace(1 / 8, 8, 5), seed=7, noise=0.002)
    row = cell_optima(runs, bootstrap=100).iloc[0]
    assert row["method"].startswith("quadratic-2d")
    assert row["lr_opt"] == pytest.approx(LR_STAR, rel=0.35)
    assert row["batch_opt"] == pytest.approx(B_STAR, rel=0.5)
    assert row["lr_low"] <= LR_STAR <= row["lr_high"]
    assert row["batch_low"] <= B_STAR <= row["batch_high"]


def test_all_diverged_cell_is_reported_not_dropped():
    good = cell_runs(np.geomspace(1 / 8, 8, 7), seed=8)
    dead = cell_runs([20.0, 40.0], seed=8, diverge_above=1.0, n=2e7)
    with pytest.warns(UserWarning, match="no finished run"):
        table = cell_optima(pd.concat([good, dead], ignore_index=True), bootstrap=0)
    assert len(table) == 2
    dead_row = table[table["n_params"] == 2e7].iloc[0]
    assert dead_row["n_diverged"] == 2 and np.isnan(dead_row["lr_opt"])


def test_single_setting_cells_are_not_searches():
    from scaling.optimum import searched_cells

    runs = pd.DataFrame(
        {
            "cell": ["a"] * 4 + ["a-wsd"] + ["b"] * 2,
            "n_params": [1e5] * 7,
            "tokens": [1e6] * 7,
            "lr": [1e-3, 3e-3, 1e-2, 3e-2, 3e-3, 1e-3, 1e-3],
            "batch_tokens": [4096] * 5 + [4096, 8192],
            "loss": [3.0, 2.9, 2.95, 3.1, 2.85, 3.0, 3.05],
            "schedule": ["cosine"] * 4 + ["wsd"] + ["cosine"] * 2,
        }
    )
    assert searched_cells(runs).tolist() == [True] * 4 + [False] * 3
    # Without a cell column, cells are (N, D, schedule): the WSD run stays apart.
    no_cell = runs.drop(columns="cell")
    assert searched_cells(no_cell).tolist() == [True] * 4 + [False] + [True] * 2


def test_a_cells_bootstrap_does_not_depend_on_the_other_cells():
    """Each cell's resamples come from the seed and its name: holding cells out (a backtest)
    leaves the others' resampled optima, hence their weights in the LR and batch laws, as in
    the full fit."""
    from scaling.optimum import cell_bootstrap, split_cells
    from scaling.synthetic import make_sweep

    runs, _ = make_sweep(seed=3, sizes=(2e6, 6e6, 2e7), budget_per_param=(5.0, 20.0), n_runs=12)
    cells = split_cells(runs)
    full = cell_bootstrap(cells, 40, seed=7)
    some = cell_bootstrap(cells[2:], 40, seed=7, n_jobs=2)
    np.testing.assert_array_equal(full[:, 2:], some)
    other_seed = cell_bootstrap(cells[2:], 40, seed=8)
    assert not np.array_equal(np.nan_to_num(some), np.nan_to_num(other_seed))


def test_a_bootstrap_cache_reuses_only_cells_whose_runs_are_the_same():
    """Fits that share cells (a backtest's refits, the full fit) resample each cell once; a
    cell with the same name but other runs, or another seed or resample count, is redone."""
    from scaling.optimum import BootstrapCache, cell_bootstrap, split_cells
    from scaling.synthetic import make_sweep

    runs, _ = make_sweep(seed=3, sizes=(2e6, 6e6, 2e7), budget_per_param=(5.0, 20.0), n_runs=12)
    cells = split_cells(runs)
    cache = BootstrapCache()
    ticks = []
    full = cell_bootstrap(cells, 40, seed=7, cache=cache, progress=ticks.append)
    assert len(cache) == len(cells) and cache.hits == 0 and sum(ticks) == len(cells)
    ticks.clear()
    again = cell_bootstrap(cells[1:], 40, seed=7, cache=cache, n_jobs=2, progress=ticks.append)
    assert cache.hits == len(cells) - 1 and sum(ticks) == len(cells) - 1
    np.testing.assert_array_equal(again, full[:, 1:])
    # Same name, one loss changed: resampled afresh, not taken from the cache.
    changed = split_cells(runs)[0]
    changed.loss = changed.loss.copy()
    changed.loss[0] += 0.5
    before = cache.hits
    cell_bootstrap([changed], 40, seed=7, cache=cache)
    assert cache.hits == before and len(cache) == len(cells) + 1
    cell_bootstrap(cells[:1], 40, seed=8, cache=cache)
    cell_bootstrap(cells[:1], 41, seed=7, cache=cache)
    assert cache.hits == before and len(cache) == len(cells) + 3


def test_fit_optimum_laws_with_a_shared_cache_is_the_same_law():
    from scaling.laws import fit_optimum_laws
    from scaling.optimum import BootstrapCache
    from scaling.synthetic import make_sweep

    runs, _ = make_sweep(seed=5, sizes=(2e6, 6e6, 2e7), budget_per_param=(5.0, 20.0), n_runs=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = BootstrapCache()
        fit_optimum_laws(runs, bootstrap=60, seed=1, cache=cache, loss_intervals=False)
        held_in = runs[runs["n_params"] < runs["n_params"].max()]
        cached = fit_optimum_laws(held_in, bootstrap=60, seed=1, cache=cache, loss_intervals=False)
        fresh = fit_optimum_laws(held_in, bootstrap=60, seed=1, loss_intervals=False)
    assert cache.hits == held_in.groupby(["n_params", "tokens"]).ngroups
    assert cached.lr.params_ == fresh.lr.params_
    assert cached.batch_tokens.params_ == fresh.batch_tokens.params_
    pd.testing.assert_frame_equal(cached.cells, fresh.cells)
