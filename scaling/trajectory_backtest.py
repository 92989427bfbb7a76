"""Backtest of the loss-trajectory law: predict curves the fit never saw, and measure the error.

python -m scaling.trajectory_backtest --runs R --curves C --out results/<name>/trajectory_backtest.md
writes the markdown report, a CSV of the same table and a PNG figure next to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .trajectory import (
    SKIP_FRAC,
    CrossSizeTrajectoryLaw,
    TrajectoryLaw,
    _usable_runs,
    fitted_steps,
    lr_schedule_of_run,
)

__all__ = ["backtest", "main"]

SCHEDULE_TARGET = 0.003  # mean relative error on a held-out schedule (issue 6)
SIZE_TARGET = 0.01  # mean relative error on the held-out largest size
LR_TOL = 0.05  # peak LRs within 5% count as the same LR
EXPERIMENTS = ("schedule", "size")
# The schedule sets fitted in the held-out-schedule test, each a test of its own: constant and
# cosine alone (Luo et al.'s protocol: WSD and step are extrapolated), and with one sharp LR drop
# (a step run) fitted too, which pins how fast the loss follows a drop (WSD held out).
FIT_SCHEDULES = (("constant", "cosine"), ("constant", "cosine", "step"))


def _check_experiments(experiments: tuple[str, ...], field: str, given) -> None:
    if not experiments or any(e not in EXPERIMENTS for e in experiments):
        raise ValueError(
            f"{field} must be one or more of {', '.join(EXPERIMENTS)} (comma-separated), "
            f"got {given!r}"
        )


def _errors(pred: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    rel = np.abs(pred / loss - 1.0)
    return float(rel.mean()), float(rel.max())


def _scatter_floor(loss: np.ndarray) -> float:
    """The mean |error| that even the curve's true expectation would score against these points:
    their scatter about a smooth curve, model-free. The scatter's sigma comes from fourth
    differences of log loss (blind to a curve's bend up to a cubic; var = 70 sigma^2 for
    independent noise), by the median absolute deviation, so that the few jumps at a step
    schedule's LR drops do not count; times sqrt(2/pi), the mean |x| of a normal of unit sigma.
    NaN below 7 points. Points whose scatter is correlated (an iterate's slow drift) read low."""
    y = np.log(np.asarray(loss, dtype=float))
    if y.size < 7:
        return float("nan")
    d4 = y[:-4] - 4.0 * y[1:-3] + 6.0 * y[2:-2] - 4.0 * y[3:-1] + y[4:]
    sigma = 1.4826 * float(np.median(np.abs(d4 - np.median(d4)))) / np.sqrt(70.0)
    return sigma * float(np.sqrt(2.0 / np.pi))


def _observed(curves, run_id: str, lrs: np.ndarray, skip_frac: float):
    """Logged finite losses on the steps a fit would use (after warmup and the first skip_frac
    of the run): the points the law is judged on."""
    c = curves[curves["run_id"].astype(str) == run_id]
    c = c[np.isfinite(c["loss"].to_numpy(dtype=float))].sort_values("step")
    steps = c["step"].to_numpy(dtype=np.int64)
    keep = fitted_steps(steps, lrs, skip_frac)
    return steps[keep], c["loss"].to_numpy(dtype=float)[keep]


def _predicted(predict, banded: bool, *args, **kwargs):
    """(the prediction, its (low, high) or None): one call either way."""
    if not banded:
        return predict(*args, **kwargs), None
    pred, low, high = predict(*args, **kwargs, return_interval=True)
    return pred, (low, high)


def _coverage(interval, loss: np.ndarray) -> float:
    """The share of the measured points inside the prediction's interval (low, high); NaN
    without one (a law fitted without bootstrap refits)."""
    if interval is None:
        return float("nan")
    low, high = interval
    return float(np.mean((loss >= low) & (loss <= high)))


def _fit_sets(fit_schedules) -> list[tuple[str, ...]]:
    if isinstance(fit_schedules, str):  # "constant,cosine": one set, as on the command line
        fit_schedules = tuple(s.strip() for s in fit_schedules.split(",") if s.strip())
    sets = [fit_schedules] if all(isinstance(s, str) for s in fit_schedules) else fit_schedules
    sets = [tuple(s) for s in sets]
    if not sets or any(not s or not all(isinstance(n, str) and n for n in s) for s in sets):
        raise ValueError(
            "fit_schedules must be a set of schedule names or several such sets, got "
            f"{fit_schedules!r}"
        )
    return sets


def _by_lr(test_all, lrs_of, peak, batch) -> dict[tuple[float, int, float], list[str]]:
    """The held-out runs grouped by (peak LR within LR_TOL, length, batch)."""
    by_lr: dict[tuple[float, int, float], list[str]] = {}
    for rid in test_all:
        n_steps = lrs_of[rid].size
        key = next(
            (
                k
                for k in by_lr
                if k[1] == n_steps and k[2] == batch[rid] and abs(peak[rid] / k[0] - 1) <= LR_TOL
            ),
            (peak[rid], n_steps, batch[rid]),
        )
        by_lr.setdefault(key, []).append(rid)
    return by_lr


def _schedule_test(train, test, group, curves, lrs_of, n_bootstrap, skip_frac, seed):
    """The single-size law fitted on `train`, scored on `test`; and, for the floor, the same law
    with the held-out curves fitted too."""
    law = TrajectoryLaw(n_bootstrap=n_bootstrap, skip_frac=skip_frac, seed=seed).fit(
        curves[curves["run_id"].isin(train)], {rid: lrs_of[rid] for rid in train}
    )
    fitted_on = "+".join(sorted(group.loc[train, "schedule"]))
    n_params = int(group["n_params"].iloc[0])
    both = train + test
    ref = TrajectoryLaw(n_bootstrap=0, skip_frac=skip_frac, seed=seed).fit(
        curves[curves["run_id"].isin(both)], {rid: lrs_of[rid] for rid in both}
    )
    laws = (law, ref)
    rows, plots = _score_schedules(
        laws, test, group, curves, lrs_of, skip_frac, n_params, fitted_on
    )
    rows += _seed_means(laws, test, group, curves, lrs_of, skip_frac, n_params, fitted_on)
    return rows, plots


def _seed_means(laws, test, group, curves, lrs_of, skip_frac, n_params, fitted_on):
    """Where a held-out schedule was run at several seeds (replicates: `seeds` of a sweep's
    [[variants]]), its mean curve scored too: exp(mean log loss) over the seeds at the steps
    every one of them logged. The law predicts the expected curve, which the mean approaches;
    one seed's curve also carries its own run-to-run scatter."""
    rows = []
    if "seed" not in group.columns:
        return rows
    seeds = group["seed"]
    for schedule, rids in group.loc[test].groupby("schedule").groups.items():
        rids = list(rids)
        if seeds.loc[rids].nunique() < 2 or any(
            lrs_of[r].size != lrs_of[rids[0]].size for r in rids
        ):
            continue
        steps, loss = _mean_curve(curves, rids, lrs_of, skip_frac)
        if not steps.size:
            continue
        lrs = lrs_of[rids[0]]
        names = _seed_names(seeds.loc[rids])
        row = _schedule_row(
            laws,
            lrs,
            steps,
            loss,
            experiment="held-out schedule, mean of seeds",
            run_id=f"{schedule}: mean of {len(rids)} runs (seeds {names})",
            schedule=schedule,
            lr=float(group.loc[rids[0], "lr"]),
            n_params=n_params,
            fitted_on=fitted_on,
        )
        rows.append(row)
    return rows


def _mean_curve(curves, rids, lrs_of, skip_frac) -> tuple[np.ndarray, np.ndarray]:
    """The mean curve of replicates (runs of one schedule, peak LR, batch and length at several
    seeds): exp(mean log loss) at the scored steps every one of them logged."""
    observed = [_observed(curves, r, lrs_of[r], skip_frac) for r in rids]
    steps = observed[0][0]
    for st, _ in observed[1:]:
        steps = np.intersect1d(steps, st)
    logs = [np.log(lo[np.isin(st, steps)]) for st, lo in observed]
    return steps, np.exp(np.mean(logs, axis=0)) if steps.size else np.array([])


def _seed_names(seeds) -> str:
    return ", ".join(str(int(x)) for x in sorted(seeds.unique()))


def _row(pred, loss, target, *, experiment, run_id, n_params, schedule, lr, fitted_on):
    """The columns every row of the table has: what was scored, and the prediction's error."""
    mean, worst = _errors(pred, loss)
    return {
        "experiment": experiment,
        "run_id": run_id,
        "n_params": n_params,
        "schedule": schedule,
        "lr": lr,
        "fitted_on": fitted_on,
        "n_points": int(loss.size),
        "mean_rel_err": mean,
        "max_rel_err": worst,
        "target": target,
    }


def _schedule_row(laws, lrs, steps, loss, *, fitted_on, **labels):
    """One row of the held-out-schedule table: the law's prediction of `loss` at `steps`; laws is
    (the law, the same law with the held-out curves fitted too); labels: _row's."""
    law, ref = laws
    pred, band = _predicted(law.predict, law.n_bootstrap > 0, lrs, steps)
    fitted_on = f"{fitted_on} (same size, peak LR, length, batch)"
    return _row(pred, loss, SCHEDULE_TARGET, fitted_on=fitted_on, **labels) | {
        "scatter_floor": _scatter_floor(loss),
        "interval_coverage": _coverage(band, loss),
        "fitted_mean_rel_err": _errors(ref.predict(lrs, steps), loss)[0],
    }


def _size_row(laws, banded, lrs, batch_tokens, steps, loss, **labels):
    """One row of the held-out-size table: the cross-size law's prediction of `loss` at
    `steps`; laws is (the law fitted without the largest size, the same law fitted on every
    size: the floor of the smooth law, whose residual map would give a fitted curve back);
    labels: _row's."""
    law, ref = laws
    n_params = labels["n_params"]
    pred, band = _predicted(law.predict, banded, n_params, lrs, batch_tokens, steps=steps)
    alone = law.predict(n_params, lrs, batch_tokens, steps=steps, corrected=False)
    ref_pred = ref.predict(n_params, lrs, batch_tokens, steps=steps, corrected=False)
    return _row(pred, loss, SIZE_TARGET, **labels) | {
        "law_alone_mean_rel_err": _errors(alone, loss)[0],
        "fitted_mean_rel_err": _errors(ref_pred, loss)[0],
        "scatter_floor": _scatter_floor(loss),
        "interval_coverage": _coverage(band, loss),
    }


def _score_schedules(laws, test, group, curves, lrs_of, skip_frac, n_params, fitted_on):
    rows, plots = [], []
    for rid in test:
        steps, loss = _observed(curves, rid, lrs_of[rid], skip_frac)
        if not steps.size:
            continue
        lr = float(group.loc[rid, "lr"])
        rows.append(
            _schedule_row(
                laws,
                lrs_of[rid],
                steps,
                loss,
                experiment="held-out schedule",
                run_id=rid,
                schedule=group.loc[rid, "schedule"],
                lr=lr,
                n_params=n_params,
                fitted_on=fitted_on,
            )
        )
        full = laws[0].predict(lrs_of[rid], np.arange(1, lrs_of[rid].size + 1))
        label = f"{group.loc[rid, 'schedule']}, LR {lr:.3g}, from {fitted_on}"
        plots.append(("held-out schedule", rid, n_params, steps, loss, full, label, lr))
    return rows, plots


def backtest(
    runs,
    curves,
    *,
    fit_schedules=FIT_SCHEDULES,
    n_bootstrap: int = 0,
    skip_frac: float = SKIP_FRAC,
    seed: int = 0,
    experiments: tuple[str, ...] = EXPERIMENTS,
):
    """Rows of the backtest table (a DataFrame) and the curves to plot. experiments: which of
    "schedule" (held-out schedules, single-size fits: seconds) and "size" (held-out size,
    cross-size fits: the long part) to run. fit_schedules: the schedules fitted in the
    held-out-schedule test, one set (a tuple of names) or several (a tuple of such tuples),
    each scored on the schedules it leaves out; a set that comes out the same as an earlier
    one at some size and peak LR (its extra schedule was not run there) is not repeated."""
    import pandas as pd

    _check_experiments(experiments, "experiments", experiments)
    fit_sets = _fit_sets(fit_schedules)

    ok, excluded = _usable_runs(runs)
    curves = curves.copy()
    curves["run_id"] = curves["run_id"].astype(str)
    ok = ok[ok.index.isin(set(curves["run_id"]))]
    lrs_of = {rid: lr_schedule_of_run(row) for rid, row in ok.iterrows()}
    rows, plots = [], []

    # 1. Held-out schedules, one size, peak LR and run length at a time (the protocol of Luo
    # et al.): the single-size law is the multi-power law at one peak LR (its LR dependence
    # does not carry across a wide LR grid), so each held-out run is predicted from the fitted
    # schedules' runs of its own size, peak LR, length and batch.
    by_size = ok.groupby("n_params") if "schedule" in experiments else ()
    for _, group in by_size:
        peak = {rid: float(lrs_of[rid].max()) for rid in group.index}
        # Runs of one length at one peak LR may still differ in batch size (and so in
        # budget): the single-size law knows neither, so the batch must match too.
        batch = {rid: float(group.loc[rid, "batch_tokens"]) for rid in group.index}
        done: set = set()
        for fit_set in fit_sets:
            fit_ids = [rid for rid in group.index if group.loc[rid, "schedule"] in fit_set]
            test_all = [rid for rid in group.index if rid not in fit_ids]
            for key, test in _by_lr(test_all, lrs_of, peak, batch).items():
                lr, n_steps, bt = key
                train = [
                    rid
                    for rid in fit_ids
                    if abs(peak[rid] / lr - 1) <= LR_TOL
                    and lrs_of[rid].size == n_steps
                    and batch[rid] == bt
                ]
                fitted_on = "+".join(sorted(group.loc[train, "schedule"]))
                if not train or (key, fitted_on) in done:
                    continue
                done.add((key, fitted_on))
                r_, p_ = _schedule_test(
                    train, test, group, curves, lrs_of, n_bootstrap, skip_frac, seed
                )
                rows += r_
                plots += p_

    # 2. Held-out size: fit every schedule of the smaller sizes, predict the largest.
    sizes = np.sort(ok["n_params"].unique())
    if sizes.size >= 2 and "size" in experiments:
        largest = sizes[-1]
        train_runs = runs[runs["run_id"].astype(str).isin(ok.index[ok["n_params"] < largest])]
        law = CrossSizeTrajectoryLaw(n_bootstrap=n_bootstrap, skip_frac=skip_frac, seed=seed).fit(
            train_runs, curves
        )
        # Reference: the same law fitted on every size, the largest included (the noise floor:
        # run-to-run scatter that no smooth law in N and LR follows).
        ref = CrossSizeTrajectoryLaw(n_bootstrap=0, skip_frac=skip_frac, seed=seed).fit(
            runs[runs["run_id"].astype(str).isin(ok.index)], curves
        )
        fitted_sizes = ", ".join(f"{int(n):,}" for n in sizes[:-1])
        laws = (law, ref)
        labels = {
            "n_params": int(largest),
            "fitted_on": f"all runs (schedules, LRs) at n_params {fitted_sizes}",
        }
        big = ok[ok["n_params"] == largest]
        for rid in big.index:
            row = big.loc[rid]
            steps, loss = _observed(curves, rid, lrs_of[rid], skip_frac)
            out = _size_row(
                laws,
                n_bootstrap > 0,
                lrs_of[rid],
                row["batch_tokens"],
                steps,
                loss,
                experiment="held-out size",
                run_id=rid,
                schedule=row["schedule"],
                lr=float(row["lr"]),
                **labels,
            )
            rows.append(out)
            full = law.predict(largest, lrs_of[rid], row["batch_tokens"])
            label = f"{row['schedule']}, LR {float(row['lr']):.3g}"
            lr = float(row["lr"])
            plots.append(("held-out size", rid, int(largest), steps, loss, full, label, lr))
        # Replicates (a grid point or a variant run at several seeds: search.seeds, the
        # variants' seeds): their mean curve scored too, as for held-out schedules.
        if "seed" in big.columns:
            peak = {rid: float(lrs_of[rid].max()) for rid in big.index}
            batch = {rid: float(big.loc[rid, "batch_tokens"]) for rid in big.index}
            for schedule, grp in big.groupby("schedule", sort=False):
                for (_, n_steps, bt), rids in _by_lr(list(grp.index), lrs_of, peak, batch).items():
                    if big.loc[rids, "seed"].nunique() < 2:
                        continue
                    steps, loss = _mean_curve(curves, rids, lrs_of, skip_frac)
                    if not steps.size:
                        continue
                    rows.append(
                        _size_row(
                            laws,
                            n_bootstrap > 0,
                            lrs_of[rids[0]],
                            bt,
                            steps,
                            loss,
                            experiment="held-out size, mean of seeds",
                            run_id=(
                                f"{schedule}, {n_steps * bt:,.0f} tokens, batch {bt:,.0f}: mean "
                                f"of {len(rids)} runs (seeds {_seed_names(big.loc[rids, 'seed'])})"
                            ),
                            schedule=schedule,
                            lr=float(big.loc[rids[0], "lr"]),
                            **labels,
                        )
                    )

    table = pd.DataFrame(rows)
    if not table.empty:
        table["meets_target"] = table["mean_rel_err"] <= table["target"]
    return table, plots, excluded


def _figure(plots, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["held-out schedule", "held-out size"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind in zip(axes, kinds, strict=True):
        chosen = [p for p in plots if p[0] == kind]
        if kind == "held-out schedule" and chosen:  # the largest size only, to stay readable
            top = max(p[2] for p in chosen)
            chosen = [p for p in chosen if p[2] == top]
        if kind == "held-out size" and len(chosen) > 6:
            # The longest runs only, and where there are schedule variants, at their LR.
            longest = max(p[5].size for p in chosen)
            chosen = [p for p in chosen if p[5].size == longest]
            variants = [p for p in chosen if not p[6].startswith("cosine")]
            if variants:
                lr = variants[0][7]
                chosen = [p for p in chosen if abs(p[7] / lr - 1) <= LR_TOL]
        for i, (_, _rid, _n, steps, loss, full, label, _lr) in enumerate(chosen):
            color = f"C{i}"
            ax.plot(steps, loss, "o", ms=2.5, color=color, alpha=0.6, label=f"{label} (measured)")
            x = np.arange(1, full.size + 1)
            start = max(int(steps.min()) - 1, 0) if steps.size else 0
            ax.plot(x[start:], full[start:], "-", color=color, lw=1.2, label=f"{label} (predicted)")
        ax.set_title(kind)
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss (nats/token)")
        if chosen:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3%}"


def _share(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.0%}"


def _markdown(table, excluded, command: str, seconds: float, skip_frac: float) -> str:
    lines = [
        "# Trajectory-law backtest",
        "",
        "Multi-power law (Luo et al. 2025) fitted on some curves and asked for others. Error =",
        "|predicted / measured - 1| over the logged validation losses after the LR warmup and",
        f"after the first {skip_frac:.0%} of each run (neither fitted nor scored: the initial",
        "transient of short runs, which no power law in the LR area describes).",
        f"Targets (issue 6): mean <= {SCHEDULE_TARGET:.1%} on a held-out schedule, "
        f"<= {SIZE_TARGET:.0%} on the held-out largest size.",
        "",
        "Held-out schedule: the single-size law fitted on the fitted schedules' runs of the same",
        "size, peak LR, length and batch (the protocol of Luo et al.; the law's LR dependence holds at",
        "one peak LR), asked for the other schedules' runs. Held-out size: the cross-size law",
        "(parameters as power laws of N, with peak-LR terms) fitted on every run of the smaller",
        "sizes, at every LR and schedule, asked for every run of the largest size, its",
        "prediction multiplied by the law's own misfit on the most similar fitted runs of the",
        "nearest sizes (the law's residual map, `scaling._residual_map`); the column *law",
        "alone* gives the prediction without that correction.",
        "",
        f"Command: `{command}` ({seconds:.0f} s).",
        f"Runs skipped: {excluded.get('diverged', 0)} diverged, {excluded.get('pruned', 0)} pruned, "
        f"{excluded.get('failed', 0)} failed (of {excluded.get('total_rows', 0)} rows).",
        "",
    ]
    if table.empty:
        lines.append(
            "No experiment possible: need several schedules at one size, or several sizes."
        )
        return "\n".join(lines) + "\n"
    if "law_alone_mean_rel_err" not in table:
        table = table.assign(law_alone_mean_rel_err=np.nan)
    if "interval_coverage" not in table:
        table = table.assign(interval_coverage=np.nan)
    banded = bool(np.isfinite(table["interval_coverage"]).any())
    lines += [
        "| experiment | run | n_params | schedule | peak LR | fitted on | points | mean rel. err | worst rel. err | target met | mean rel. err, law alone | mean rel. err, curve fitted too | scatter floor |"
        + (" in 95% band |" if banded else ""),
        "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        + (" ---: |" if banded else ""),
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.experiment} | {r.run_id} | {r.n_params:,} | {r.schedule} | {r.lr:.3g} | "
            f"{r.fitted_on} | "
            f"{r.n_points} | {r.mean_rel_err:.3%} | {r.max_rel_err:.3%} | "
            f"{'yes' if r.meets_target else 'no'} | {_pct(r.law_alone_mean_rel_err)} | "
            f"{r.fitted_mean_rel_err:.3%} | {_pct(r.scatter_floor)} |"
            + (f" {_share(r.interval_coverage)} |" if banded else "")
        )
    lines.append("")
    # One summary line per experiment, and per fitted set of schedules for held-out schedules.
    fit_set = table["fitted_on"].str.split(" ").str[0]
    summary = table["experiment"].where(
        ~table["experiment"].str.startswith("held-out schedule"),
        table["experiment"] + ", fitted on " + fit_set,
    )
    for kind, grp in table.groupby(summary, sort=False):
        alone = grp["law_alone_mean_rel_err"].mean()
        held = ""
        cov = grp["interval_coverage"].to_numpy(dtype=float)
        if np.isfinite(cov).any():
            ok = np.isfinite(cov)
            points = grp["n_points"].to_numpy(dtype=float)[ok]
            held = (
                f"; the 95% band holds {np.sum(cov[ok] * points) / points.sum():.0%} of the "
                f"scored points ({_share(float(np.min(cov[ok])))} on the worst curve)"
            )
        lines.append(
            f"- {kind}: mean of the per-curve mean errors {grp['mean_rel_err'].mean():.3%}"
            + (f" (law alone: {alone:.3%})" if np.isfinite(alone) else "")
            + f", worst point {grp['max_rel_err'].max():.3%}, "
            f"{int(grp['meets_target'].sum())}/{len(grp)} curves within target; "
            f"with the curves fitted too: {grp['fitted_mean_rel_err'].mean():.3%}; "
            f"scatter floor {_pct(grp['scatter_floor'].mean())}{held}."
        )
    lines += [
        "",
        "*Curve fitted too*: the error of the same law (alone, without its residual map) when the",
        "scored curve is also fitted: the floor that evaluation noise and run-to-run scatter (e.g. across the LR grid, where",
        "the final loss is not smooth in the LR) put under any prediction of these curves.",
        "*Scatter floor*: the same floor without any law, from the measured points alone: the",
        "mean |error| that the curve's own expectation would score against them, from their",
        "point-to-point scatter (fourth differences of log loss, median absolute deviation).",
        "A target below it cannot be met on these curves by any prediction.",
    ]
    if table["experiment"].str.endswith("mean of seeds").any():
        lines += [
            "*Mean of seeds*: a held-out run made at several seeds (`seeds` of the sweep's",
            "[search] grid or [[variants]]), scored as the mean of its runs' log losses at the",
            "steps they all logged: the law predicts the expected curve, and the mean's",
            "run-to-run scatter is smaller.",
        ]
    if banded:
        lines += [
            "*In 95% band*: the share of the scored points inside the held-out prediction's 95%",
            "interval (`predict(..., return_interval=True)`: the spread of the fit's bootstrap",
            "refits, `--bootstrap` of them, with the quantile of its own log residuals). A",
            "calibrated interval holds about 95% of them.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from .runs import CURVES_COLUMNS, read_csv_table

    parser = argparse.ArgumentParser(
        prog="python -m scaling.trajectory_backtest", description=__doc__
    )
    parser.add_argument("--runs", required=True, help="runs table (CSV, contract 1)")
    parser.add_argument("--curves", required=True, help="curves table (CSV: run_id, step, loss)")
    parser.add_argument("--out", required=True, help="markdown report; .csv and .png go beside it")
    parser.add_argument(
        "--fit-schedules",
        action="append",
        help="schedules fitted in the held-out-schedule test, comma-separated; repeat the option "
        "for several sets, each scored on the schedules it leaves out (default: "
        + " and ".join(",".join(s) for s in FIT_SCHEDULES)
        + ")",
    )
    parser.add_argument(
        "--experiments",
        default=",".join(EXPERIMENTS),
        help="which to run, comma-separated: schedule (held-out schedules; seconds), size "
        "(held-out size; the long part). Default: both",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="residual-bootstrap refits of each held-out fit, for its intervals: with them the "
        "report gives the share of each held-out curve inside its prediction's 95%% band; the "
        "errors do not depend on them (default 0)",
    )
    parser.add_argument(
        "--skip-frac",
        type=float,
        default=SKIP_FRAC,
        help="leading share of each run neither fitted nor scored (the initial transient)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (args.runs, args.curves):
        if not Path(path).is_file():
            parser.exit(2, f"error: file not found: {path}\n")
    if args.bootstrap < 0:
        parser.exit(2, f"error: --bootstrap must be >= 0, got {args.bootstrap}\n")
    experiments = tuple(e.strip() for e in args.experiments.split(",") if e.strip())
    try:
        _check_experiments(experiments, "--experiments", args.experiments)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    fit_sets = FIT_SCHEDULES
    if args.fit_schedules:
        fit_sets = tuple(
            tuple(s.strip() for s in given.split(",") if s.strip()) for given in args.fit_schedules
        )
        for given, names in zip(args.fit_schedules, fit_sets, strict=True):
            if not names:
                parser.exit(2, f"error: --fit-schedules must name a schedule, got {given!r}\n")
    started = time.perf_counter()
    try:  # a file that cannot be read or parsed is an error, as a missing one is
        runs, curves = read_csv_table(args.runs, "runs"), read_csv_table(args.curves, "curves")
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    for name, path, table_, needed in (
        ("--runs", args.runs, runs, ("run_id", "n_params", "lr", "batch_tokens")),
        ("--curves", args.curves, curves, CURVES_COLUMNS),
    ):
        missing = [c for c in needed if c not in table_.columns]
        if missing:
            parser.exit(2, f"error: {name}: missing column(s) {', '.join(missing)} in {path}\n")
    try:
        table, plots, excluded = backtest(
            runs,
            curves,
            fit_schedules=fit_sets,
            n_bootstrap=args.bootstrap,
            skip_frac=args.skip_frac,
            seed=args.seed,
            experiments=experiments,
        )
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    _figure(plots, out.with_suffix(".png"))
    command = "python -m scaling.trajectory_backtest " + " ".join(argv or sys.argv[1:])
    out.write_text(
        _markdown(table, excluded, command, time.perf_counter() - started, args.skip_frac)
    )
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
