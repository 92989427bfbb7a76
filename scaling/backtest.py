"""Extrapolation backtests of a sweep's laws: does a law fitted on the smaller proxies (or the
shorter runs) predict the largest ones?

Two experiments, each a refit without part of the sweep:

- held-out size: every run of the largest n_params is left out;
- held-out budget: every run of the largest token budget is left out.

For each held-out cell the refitted laws predict the optimal LR, the optimal batch size, the
final loss and the loss curve, and we compare with what the sweep itself found there:

- `gap_pct`: the loss at the predicted (lr, batch), read off the cell's measured LR x batch
  grid by linear interpolation in (log lr, log batch), against the cell's best measured run.
  Linear interpolation of a convex landscape over-estimates the loss between grid points, so
  this is a conservative stand-in for a new run at the predicted setting; a prediction
  outside the grid is clamped to its edge and flagged.
- `loss_error_pct`: the loss law's prediction against the cell's best measured loss.
- `lr_ratio`, `batch_ratio`: predicted over the cell's fitted optimum.
- `curve_mean_rel_err`: the trajectory law (cross-size form, refitted on the held-in runs)
  predicts the whole curve of the cell's best run, at its LR, batch and schedule; mean
  relative error over the points the trajectory law is judged on (after the first
  SKIP_FRAC of the run).

    python -m scaling.backtest --runs R --curves C --out results/<name>/backtest.md

writes the markdown report, a JSON of the same numbers and a PNG figure next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .laws import fit_optimum_laws
from .optimum import BootstrapCache, cell_optima, searched_cells
from .runs import read_csv_table, read_curves, validate_runs

__all__ = ["TARGETS", "extrapolation_backtest", "grid_loss_at"]

# Targets of issue 7.
TARGETS = {"gap_pct": 0.5, "loss_error_pct": 1.0, "curve_mean_rel_err_pct": 1.0}


def grid_loss_at(cell_runs: pd.DataFrame, lr: float, batch_tokens: float) -> tuple[float, bool]:
    """The loss at (lr, batch_tokens) read off a cell's measured runs: linear interpolation in
    (log lr, log batch) on a full grid (triangulated when the runs are scattered, as a TPE
    sweep leaves them), clamped to the measured range (returns the loss and whether it was
    clamped). Diverged runs count as the cell's worst finished loss; a setting run several
    times (replicates at several seeds) reads as the geometric mean of its runs."""
    from scipy.interpolate import RegularGridInterpolator, griddata

    df = cell_runs[~cell_runs["pruned"].to_numpy()] if "pruned" in cell_runs else cell_runs
    loss = df["loss"].to_numpy(dtype=float)
    if not np.isfinite(loss).any():
        return math.nan, False
    loss = np.where(np.isfinite(loss), loss, np.nanmax(loss))
    pts = (
        pd.DataFrame(
            {
                "x": np.round(np.log(df["lr"].to_numpy(dtype=float)), 9),
                "y": np.round(np.log(df["batch_tokens"].to_numpy(dtype=float)), 9),
                "loss": np.log(loss),
            }
        )
        .groupby(["x", "y"], as_index=False)["loss"]
        .mean()
    )
    pts["loss"] = np.exp(pts["loss"])
    xs, ys = np.unique(pts["x"]), np.unique(pts["y"])
    x = math.log(lr)
    y = math.log(batch_tokens) if np.isfinite(batch_tokens) else float(ys[0])
    xc, yc = float(np.clip(x, xs[0], xs[-1])), float(np.clip(y, ys[0], ys[-1]))
    clamped = not (math.isclose(xc, x, abs_tol=1e-9) and math.isclose(yc, y, abs_tol=1e-9))
    if xs.size == 1 or ys.size == 1:  # one LR or one batch size: a line
        along_x = ys.size == 1
        line = pts.sort_values("x" if along_x else "y")
        axis = line["x" if along_x else "y"].to_numpy()
        value = float(np.interp(xc if along_x else yc, axis, line["loss"].to_numpy()))
        return value, clamped
    if len(pts) == xs.size * ys.size:  # a full grid
        grid = pts.pivot(index="x", columns="y", values="loss").loc[xs, ys].to_numpy()
        interp = RegularGridInterpolator((xs, ys), grid, method="linear")
        return float(interp([[xc, yc]])[0]), clamped
    xy = pts[["x", "y"]].to_numpy()
    at = np.flatnonzero(np.all(np.isclose(xy, [xc, yc], rtol=0, atol=1e-9), axis=1))
    if at.size:  # a measured setting (also on the hull's edge, where triangulation is fragile)
        return float(pts["loss"].iloc[at[0]]), clamped
    value = float(griddata(xy, pts["loss"].to_numpy(), [(xc, yc)], method="linear")[0])
    if not math.isfinite(value):  # outside the runs' convex hull: the nearest run
        value = float(griddata(xy, pts["loss"].to_numpy(), [(xc, yc)], method="nearest")[0])
        clamped = True
    return value, clamped


def _nominal_tokens(runs: pd.DataFrame) -> pd.Series:
    """Each run's budget as its cell's median (runs at different batch sizes round the same
    budget to slightly different token counts)."""
    return runs.groupby("cell")["tokens"].transform("median")


def _best_point(cell_runs: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """A cell's best setting (LR, batch) and its final loss: the lowest finished run, or where
    settings were run at several seeds (replicates) the lowest geometric mean over a setting's
    finished runs; returns that setting's finished runs and the loss."""
    finished = cell_runs[np.isfinite(cell_runs["loss"].to_numpy(dtype=float))]
    point = [np.round(np.log(finished["lr"].to_numpy(dtype=float)), 9), finished["batch_tokens"]]
    means = np.exp(np.log(finished["loss"].astype(float)).groupby(point).mean())
    at = means.idxmin()
    mask = (point[0] == at[0]) & (finished["batch_tokens"].to_numpy() == at[1])
    return finished[mask], float(means.min())


def _curve_error(law, runs: pd.DataFrame, curves: pd.DataFrame, skip_frac: float):
    """The law's error on a setting's curve; several runs of it (seeds) are scored as their
    mean curve (geometric, at the steps they all logged)."""
    from .trajectory import lr_schedule_of_run
    from .trajectory_backtest import _mean_curve

    row = runs.iloc[0]
    lrs = lr_schedule_of_run(row)
    rids = list(runs["run_id"].astype(str))
    steps, loss = _mean_curve(curves, rids, dict.fromkeys(rids, lrs), skip_frac)
    if not steps.size:
        return None
    pred = law.predict(float(row["n_params"]), lrs, float(row["batch_tokens"]), steps=steps)
    rel = np.abs(pred / loss - 1.0)
    alone = law.predict(
        float(row["n_params"]), lrs, float(row["batch_tokens"]), steps=steps, corrected=False
    )
    full = law.predict(float(row["n_params"]), lrs, float(row["batch_tokens"]))
    return {
        "mean": float(rel.mean()),
        "mean_alone": float(np.mean(np.abs(alone / loss - 1.0))),
        "max": float(rel.max()),
        "steps": steps,
        "loss": loss,
        "pred_full": full,
    }


def _one(
    runs: pd.DataFrame,
    searched: pd.DataFrame,
    table: pd.DataFrame,
    curves: pd.DataFrame | None,
    hold: str,
    seed: int,
    skip_frac: float,
    bootstrap: int,
    n_jobs: int,
    cache: BootstrapCache | None = None,
) -> tuple[dict[str, Any], list]:
    """One experiment: `runs` are all runs, `searched` those of cells that searched the
    hyperparameters, `table` their cell optima (what the sweep found)."""
    column = "n_params" if hold == "size" else "_tokens"
    held_value = float(searched[column].max())
    held = np.isclose(runs[column].to_numpy(dtype=float), held_value, rtol=0.01)
    held_searched = np.isclose(searched[column].to_numpy(dtype=float), held_value, rtol=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core = fit_optimum_laws(
            searched[~held_searched],
            bootstrap=bootstrap,
            seed=seed,
            n_jobs=n_jobs,
            cache=cache,
        )
    loss_law, lr_law, batch_law = core.loss, core.lr, core.batch_tokens
    lr_at_batch = core.lr_at_batch
    traj = None
    if curves is not None:
        from .trajectory import CrossSizeTrajectoryLaw

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traj = CrossSizeTrajectoryLaw(n_bootstrap=0, skip_frac=skip_frac, seed=seed).fit(
                runs[~held], curves
            )
    rows, plots = [], []
    cells = table[
        np.isclose(table["n_params" if hold == "size" else "tokens"], held_value, rtol=0.01)
    ]
    for _, cell in cells.iterrows():
        cell_runs = searched[searched["cell"].astype(str) == str(cell["cell"])]
        n, d = float(cell["n_params"]), float(cell["tokens"])
        best_runs, best = _best_point(cell_runs)
        best_run = best_runs.iloc[0]
        row: dict[str, Any] = {
            "cell": str(cell["cell"]),
            "n_params": n,
            "tokens": d,
            "best_loss": best,
            "best_lr": float(best_run["lr"]),
            "best_batch_tokens": float(best_run["batch_tokens"]),
            "lr_opt": float(cell["lr_opt"]),
            "batch_opt": float(cell["batch_opt"]),
        }
        lr_pred = float(lr_law.predict(n, d, 6 * n * d)) if lr_law is not None else math.nan
        b_pred = float(batch_law.predict(n, d, 6 * n * d)) if batch_law is not None else math.nan
        # What `ScalingLaws.predict` recommends: the LR at the recommended batch where the laws
        # have the LR-batch coupling, else the LR law's own optimum.
        lr_rec = lr_pred
        if lr_at_batch is not None and math.isfinite(b_pred):
            lr_rec = float(lr_at_batch.predict(n, d, batch_tokens=b_pred))
        row.update(lr_pred=lr_pred, batch_pred=b_pred, lr_rec=lr_rec)
        row["lr_ratio"] = lr_pred / row["lr_opt"] if row["lr_opt"] > 0 else math.nan
        row["batch_ratio"] = b_pred / row["batch_opt"] if row["batch_opt"] > 0 else math.nan
        # Do the refit's 95% intervals hold what the held-out cell found?
        for key, law, found in (
            ("lr", lr_law, row["lr_opt"]),
            ("batch", batch_law, row["batch_opt"]),
        ):
            iv = law.predict_interval(n, d, 6 * n * d) if law is not None else None
            if iv is not None and math.isfinite(found):
                row[f"{key}_interval"] = [float(iv[0]), float(iv[1])]
                row[f"{key}_opt_in_interval"] = bool(iv[0] <= found <= iv[1])
        if math.isfinite(lr_rec):
            # Without a batch law, the batch of the cell's best run stands in (flagged).
            b_eval = b_pred if math.isfinite(b_pred) else row["best_batch_tokens"]
            at_pred, clamped = grid_loss_at(cell_runs, lr_rec, b_eval)
            # The same reading at the cell's own fitted optimum: the floor of this measure
            # (what reading between grid points costs even with a perfect prediction).
            b_opt = row["batch_opt"] if math.isfinite(b_pred) else row["best_batch_tokens"]
            at_opt, _ = grid_loss_at(cell_runs, row["lr_opt"], b_opt)
            row.update(
                loss_at_pred=at_pred,
                gap_pct=100.0 * (at_pred / best - 1.0),
                gap_at_opt_pct=100.0 * (at_opt / best - 1.0),
                clamped=clamped,
                batch_from_best_run=not math.isfinite(b_pred),
            )
        if loss_law is not None:
            pred = float(loss_law.predict(n, d))
            row.update(loss_pred=pred, loss_error_pct=100.0 * (pred / best - 1.0))
            # The law is fitted on cells' fitted optimal losses: the held-out cell's is what its
            # interval is for (the best run also carries the grid's step and its noise).
            found = float(cell["loss_opt"])
            if math.isfinite(found):
                row["loss_opt"] = found
            iv = loss_law.predict_interval(n, d)
            if loss_law.off_reduced_range(n, d):
                row["loss_off_reduced_range"] = True
            if iv is not None:
                row["loss_interval"] = [float(iv[0]), float(iv[1])]
                if math.isfinite(found):
                    row["loss_opt_in_interval"] = bool(iv[0] <= found <= iv[1])
        if traj is not None:
            got = _curve_error(traj, best_runs, curves, skip_frac)
            if got is not None:
                row.update(
                    curve_mean_rel_err_pct=100 * got["mean"],
                    curve_max_rel_err_pct=100 * got["max"],
                    curve_alone_mean_rel_err_pct=100 * got["mean_alone"],
                )
                plots.append((hold, row["cell"], got))
        rows.append(row)
    summary: dict[str, Any] = {
        "held_out": hold,
        "held_out_value": held_value,
        "fitted_on_runs": int((~held).sum()),
        "cells": rows,
        "refit_warnings": sorted({str(w.message) for w in caught}),
    }
    for key in ("gap_pct", "loss_error_pct", "curve_mean_rel_err_pct"):
        vals = np.array([abs(r[key]) for r in rows if key in r and np.isfinite(r[key])])
        if vals.size:
            summary[f"mean_abs_{key}"] = float(vals.mean())
            summary[f"max_abs_{key}"] = float(vals.max())
            summary[f"meets_{key}"] = bool(vals.mean() <= TARGETS[key])
    for key in ("loss_opt_in_interval", "lr_opt_in_interval", "batch_opt_in_interval"):
        held_in = [r[key] for r in rows if key in r]
        if held_in:
            summary[key] = [int(sum(held_in)), len(held_in)]
    alone = [r["curve_alone_mean_rel_err_pct"] for r in rows if "curve_alone_mean_rel_err_pct" in r]
    if alone:
        summary["mean_curve_alone_mean_rel_err_pct"] = float(np.mean(alone))
    floor = np.array([r["gap_at_opt_pct"] for r in rows if "gap_at_opt_pct" in r])
    if floor.size:
        summary["mean_gap_at_opt_pct"] = float(floor.mean())
    for key in ("lr_ratio", "batch_ratio"):
        vals = np.array([r[key] for r in rows if np.isfinite(r.get(key, math.nan))])
        if vals.size:
            summary[f"geomean_{key}"] = float(np.exp(np.mean(np.log(vals))))
            summary[f"worst_{key}"] = float(vals[np.argmax(np.abs(np.log(vals)))])
    return summary, plots


def extrapolation_backtest(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    *,
    seed: int = 0,
    skip_frac: float | None = None,
    bootstrap: int = 1000,
    n_jobs: int = 2,
) -> tuple[dict[str, Any], list]:
    """Both experiments: {"size": summary, "budget": summary} and the curves to plot.

    bootstrap and seed must be those of the fit being tested (`fit`'s defaults: 1000, 0): the
    cell bootstrap weights the cells of the LR and batch laws, so it is part of their point
    estimates. Each cell's resamples depend only on its own runs and the seed, so the held-in
    cells weigh what they weigh in the full fit."""
    from .trajectory import SKIP_FRAC

    runs = validate_runs(runs.copy())
    if "cell" not in runs.columns:
        raise ValueError("the runs table needs a 'cell' column (sweeps export writes one)")
    runs["_tokens"] = _nominal_tokens(runs)
    if curves is not None:
        curves = curves.copy()
        curves["run_id"] = curves["run_id"].astype(str)
    skip = SKIP_FRAC if skip_frac is None else skip_frac
    searched = runs[searched_cells(runs).to_numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's own report already warns about these cells
        table = cell_optima(searched, bootstrap=0, seed=seed)
    out, plots = {}, []
    cache = BootstrapCache()  # the two refits share most cells: each is resampled once
    for hold in ("size", "budget"):
        summary, p = _one(runs, searched, table, curves, hold, seed, skip, bootstrap, n_jobs, cache)
        out[hold] = summary
        plots += p
    return out, plots


# ----------------------------------------------------------------------------- report


def _fmt(x, spec=".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, spec)


def _iv(interval, spec: str) -> str:
    return "" if not interval else f" [{_fmt(interval[0], spec)}, {_fmt(interval[1], spec)}]"


def markdown(result: dict[str, Any], command: str, seconds: float) -> str:
    lines = [
        "# Extrapolation backtest",
        "",
        f"Command: `{command}` ({seconds:.0f} s). Targets (issue 7): the loss at the predicted "
        f"hyperparameters within {TARGETS['gap_pct']}% of the held-out cell's best, the "
        f"final-loss prediction within {TARGETS['loss_error_pct']}%, the curve's mean relative "
        f"error within {TARGETS['curve_mean_rel_err_pct']}%.",
        "",
        "- *loss at pred.*: read off the cell's measured LR x batch grid at the predicted "
        "(lr, batch) by linear interpolation in log space (conservative between grid points; "
        "`*` = clamped to the grid's edge), against the cell's best run.",
        "- *gap % at opt*: the same reading at the cell's own fitted optimum, i.e. what a "
        "perfect prediction would score by this measure.",
        "- *loss error*: the loss law against the cell's best run. *[95%]*: the refit's "
        "intervals (the cell bootstrap's spread of the law; the loss's widened by the law's "
        "leave-one-out error, its miss on cells it was not fitted on). *loss opt*: the cell's "
        "own fitted optimal loss (what the full fit puts in the loss law).",
        "- *lr / batch ratio*: predicted over the cell's fitted optimum (*lr pred.*: the LR "
        "law's optimum, with no batch given).",
        "- *lr rec.*: the LR the laws recommend at the predicted batch (the LR-at-batch law, "
        "where the sweep varied the batch), which *loss at pred.* is read at.",
        "- The refits run the fit's cell bootstrap (`--bootstrap`, as in `python -m scaling "
        "fit`): it weights the cells of the LR and batch laws, so the refitted laws are the ones "
        "the fit would ship without the held-out cells.",
        "- *curve*: the trajectory law refitted on the held-in runs, predicting the curve of the "
        "cell's best run (mean relative error after the first quarter of the run), times its "
        "residual map (its own misfit on the most similar held-in runs of the nearest sizes).",
        "",
    ]
    for hold, title in (("size", "largest model size"), ("budget", "largest token budget")):
        s = result[hold]
        value = s["held_out_value"]
        lines += [
            f"## Held out: the {title} ({'N' if hold == 'size' else 'D'} = {value:.4g})",
            "",
            f"Refitted on {s['fitted_on_runs']} runs.",
            "",
            "| cell | best loss | loss at pred. | gap % | gap % at opt | loss pred. [95%] | loss "
            "opt | loss error % | lr pred. [95%] | lr opt | lr ratio | lr rec. | batch pred. "
            "[95%] | batch opt | batch ratio | curve mean % | curve max % |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- | --- | --- |",
        ]
        for r in s["cells"]:
            star = "*" if r.get("clamped") else ""
            lines.append(
                f"| {r['cell']} | {r['best_loss']:.4f} | {_fmt(r.get('loss_at_pred'), '.4f')}"
                f"{star} | {_fmt(r.get('gap_pct'), '+.2f')} | "
                f"{_fmt(r.get('gap_at_opt_pct'), '+.2f')} | {_fmt(r.get('loss_pred'), '.4f')}"
                f"{_iv(r.get('loss_interval'), '.4f')} | {_fmt(r.get('loss_opt'), '.4f')} "
                f"| {_fmt(r.get('loss_error_pct'), '+.2f')} | {_fmt(r['lr_pred'])}"
                f"{_iv(r.get('lr_interval'), '.3g')} | "
                f"{_fmt(r['lr_opt'])} | {_fmt(r['lr_ratio'], '.2f')} | "
                f"{_fmt(r.get('lr_rec'))} | "
                f"{_fmt(r['batch_pred'], '.0f')}{_iv(r.get('batch_interval'), '.0f')} | "
                f"{_fmt(r['batch_opt'], '.0f')} | "
                f"{_fmt(r['batch_ratio'], '.2f')} | "
                f"{_fmt(r.get('curve_mean_rel_err_pct'), '.2f')} | "
                f"{_fmt(r.get('curve_max_rel_err_pct'), '.2f')} |"
            )
        lines.append("")
        for key, label in (
            ("gap_pct", "loss at the predicted hyperparameters vs the cell's best"),
            ("loss_error_pct", "final-loss error"),
            ("curve_mean_rel_err_pct", "curve mean relative error"),
        ):
            if f"mean_abs_{key}" in s:
                verdict = "meets" if s[f"meets_{key}"] else "misses"
                lines.append(
                    f"- {label}: mean {s[f'mean_abs_{key}']:.2f}%, worst "
                    f"{s[f'max_abs_{key}']:.2f}% ({verdict} the {TARGETS[key]}% target)"
                )
        if "mean_curve_alone_mean_rel_err_pct" in s:
            lines.append(
                "- the same curves from the trajectory law alone, without its residual map: mean "
                f"{s['mean_curve_alone_mean_rel_err_pct']:.2f}%"
            )
        if "mean_gap_at_opt_pct" in s:
            lines.append(
                f"- the same reading at each cell's own fitted optimum (the floor of that "
                f"measure): mean {s['mean_gap_at_opt_pct']:.2f}%"
            )
        for key, label in (("lr_ratio", "LR ratio"), ("batch_ratio", "batch ratio")):
            if f"geomean_{key}" in s:
                lines.append(
                    f"- {label} predicted/optimum: geometric mean {s[f'geomean_{key}']:.2f}, "
                    f"worst {s[f'worst_{key}']:.2f}"
                )
        held = [
            f"{what} in {s[key][0]} of {s[key][1]} cells"
            for key, what in (
                ("loss_opt_in_interval", "loss"),
                ("lr_opt_in_interval", "LR"),
                ("batch_opt_in_interval", "batch"),
            )
            if key in s
        ]
        if held:
            lines.append(
                "- the refit's 95% intervals (*[95%]* columns) hold the held-out cell's own fitted "
                "optimum (*loss opt*, *lr opt*, *batch opt*): " + "; ".join(held)
            )
        bare = sum(bool(r.get("loss_off_reduced_range")) for r in s["cells"])
        if bare:
            lines.append(
                f"- no loss interval in {bare} of {len(s['cells'])} cells: the refit's reduced "
                "loss law was not fitted at their budget (size), so its loss there is no "
                "prediction (see the refit warning)"
            )
        if any(r.get("batch_from_best_run") for r in s["cells"]):
            lines.append("- no batch law after the refit: the best run's batch stands in")
        for w in s["refit_warnings"]:
            lines.append(f"- refit warning: {w}")
        lines.append("")
    return "\n".join(lines)


def figure(result: dict[str, Any], plots: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for col, hold in enumerate(("size", "budget")):
        s = result[hold]
        ax = axes[0, col]
        obs = [r["best_loss"] for r in s["cells"]]
        pred = [r.get("loss_pred", math.nan) for r in s["cells"]]
        at = [r.get("loss_at_pred", math.nan) for r in s["cells"]]
        x = np.arange(len(obs))
        ax.bar(x - 0.27, obs, 0.27, label="best measured")
        ax.bar(x, at, 0.27, label="measured grid at predicted lr, batch")
        ivs = [r.get("loss_interval") or [math.nan, math.nan] for r in s["cells"]]
        err = np.array([[p - iv[0], iv[1] - p] for p, iv in zip(pred, ivs, strict=True)]).T
        ax.bar(x + 0.27, pred, 0.27, yerr=err, capsize=3, label="loss law prediction (95%)")
        ax.set_xticks(x, [r["cell"] for r in s["cells"]], rotation=20, fontsize=8)
        lo = np.nanmin(obs + pred + at)
        top = np.nanmax(obs + pred + at + [iv[1] for iv in ivs])
        ax.set_ylim(lo * 0.95, top * 1.02)
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"held-out {hold}: final loss")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        for (_, cell, got), color in zip(
            [p for p in plots if p[0] == hold], plt.cm.viridis(np.linspace(0, 0.9, 8)), strict=False
        ):
            ax.plot(got["steps"], got["loss"], ".", ms=3, color=color, label=f"{cell} measured")
            steps = np.arange(1, got["pred_full"].size + 1)
            ax.plot(steps, got["pred_full"], "-", lw=1, color=color, label=f"{cell} predicted")
        measured = [got for h, _, got in plots if h == hold]
        if measured:  # the scored part of the runs (the law is not judged on the transient)
            lo = min(float(g["loss"].min()) for g in measured)
            hi = max(float(g["loss"].max()) for g in measured)
            ax.set_ylim(lo * 0.97, hi * 1.06)
            ax.set_xlim(min(int(g["steps"].min()) for g in measured) * 0.8, None)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        ax.set_title(f"held-out {hold}: curves of the best runs")
        if ax.lines:
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scaling.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", required=True, type=Path, help="runs table (CSV, contract 1)")
    p.add_argument("--curves", type=Path, default=None, help="curves table: adds curve errors")
    p.add_argument("--out", required=True, type=Path, help="markdown report; .json/.png beside")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="cell-bootstrap resamples, as in the fit being tested: they weight the cells of the "
        "LR and batch laws (default 1000, as `python -m scaling fit`)",
    )
    p.add_argument("--jobs", type=int, default=2, help="workers for the cell bootstrap")
    args = p.parse_args(argv)
    if args.bootstrap < 0:
        p.exit(2, f"error: --bootstrap must be >= 0, got {args.bootstrap}\n")
    if args.jobs < 1:
        p.exit(2, f"error: --jobs must be >= 1, got {args.jobs}\n")
    for path in (args.runs, args.curves):
        if path is not None and not path.exists():
            p.exit(2, f"error: file not found: {path}\n")
    started = time.perf_counter()
    try:  # a file that cannot be read, or curves lacking a column, is an error
        runs = read_csv_table(args.runs, "runs")
        curves = read_curves(args.curves) if args.curves is not None else None
    except ValueError as exc:
        p.exit(2, f"error: {exc}\n")
    try:
        result, plots = extrapolation_backtest(
            runs, curves, seed=args.seed, bootstrap=args.bootstrap, n_jobs=args.jobs
        )
    except ValueError as exc:
        p.exit(2, f"error: {exc}\n")
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m scaling.backtest --runs {} {}--out {} --bootstrap {} --seed {}".format(
        args.runs,
        f"--curves {args.curves} " if args.curves else "",
        args.out,
        args.bootstrap,
        args.seed,
    )
    args.out.write_text(markdown(result, command, seconds))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    figure(result, plots, args.out.with_suffix(".png"))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
