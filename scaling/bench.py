"""Benchmark of the fits: `python -m scaling.bench` writes results/bench/fit.md and fit.json.

Times the loss-law point fit and a full fit (cell optima, loss law, LR and batch laws, 1000
bootstrap resamples, backtest) on a seeded synthetic sweep of 5 sizes x 3 budgets x 20 runs.
Targets: point fit < 5 s, full fit < 60 s on 2 cores.

Also times the cross-size trajectory law alone, with the settings `fit` uses, on the real loss
curves of a committed sweep (`--curves-from`, default results/quick): no target, a record of
what the curves add to a fit. And the trajectory queries users make of the shipped reference
law, from a proxy's run to a 7B target's 75M optimizer steps (target: < 1 s each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

__all__ = ["run_bench"]

TARGETS = {"loss_law_point_fit_s": 5.0, "full_fit_s": 60.0}


_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_CURVES = _ROOT / "results" / "quick"


def _check_sweep_dir(sweep_dir: str | os.PathLike) -> Path:
    sweep_dir = Path(sweep_dir)
    for name in ("runs.csv", "curves.csv"):
        if not (sweep_dir / name).is_file():
            raise FileNotFoundError(f"--curves-from: {sweep_dir / name} not found")
    return sweep_dir


def time_trajectory_fit(sweep_dir: str | os.PathLike, seed: int = 0) -> dict:
    """Fit the cross-size trajectory law on `sweep_dir`'s runs.csv and curves.csv, with the
    settings `scaling.fit` uses, and time it."""
    from .runs import read_curves, read_runs
    from .trajectory import CrossSizeTrajectoryLaw

    sweep_dir = _check_sweep_dir(sweep_dir)
    runs, curves = read_runs(sweep_dir / "runs.csv"), read_curves(sweep_dir / "curves.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        law = CrossSizeTrajectoryLaw(seed=seed).fit(runs, curves)
        seconds = time.perf_counter() - t0
    return {
        "sweep_dir": _shown(str(sweep_dir)),
        "runs": int(law.n_runs_),
        "bootstrap_refits": int(law.n_bootstrap),
        "bootstrap_refits_kept": int(law.theta_boot_.shape[0]),
        "seconds": round(seconds, 2),
    }


# Curves users ask for: a proxy of the reference sweep, then targets whose runs are millions of
# optimizer steps at the law's recommended batch.
_QUERIES = ((535_968, 1.2e7), (1e9, 2e10), (7e9, 2e12))
_DEFAULT_QUERY_LAW = _ROOT / "results" / "reference" / "laws.json"
QUERY_TARGET_S = 1.0


def time_trajectory_queries(laws_path: str | os.PathLike = _DEFAULT_QUERY_LAW) -> dict:
    """Time `ScalingLaws.trajectory` (200 points with their interval, at the recommended LR and
    batch) for a few targets, and check the blocks a long run is drawn from against the
    step-by-step sum at 2M steps."""
    import numpy as np

    from .laws import load
    from .schedules import ScheduleSpec

    laws = load(laws_path)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n_params, tokens in _QUERIES:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                frame = laws.trajectory(n_params, tokens)
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "n_params": n_params,
                    "tokens": tokens,
                    "steps": int(frame["step"].iloc[-1]),
                    "median_s": round(float(np.median(times)), 4),
                }
            )
        law = laws._trajectory
        agreement = {}
        for name in ("cosine", "wsd", "step"):
            spec, n_steps, batch = ScheduleSpec(name=name), 2_000_000, 4096
            frame = law.trajectory(1e8, n_steps * batch, lr=0.01, batch_tokens=batch, schedule=spec)
            steps = frame["step"].to_numpy()
            exact = law.predict(1e8, spec.lrs(0.01, n_steps), batch, steps=steps)
            agreement[name] = float(np.max(np.abs(frame["loss"].to_numpy() / exact - 1)))
    return {"laws": _shown(str(laws_path)), "queries": rows, "blocks_vs_steps_2m": agreement}


def run_bench(
    out_dir: str | os.PathLike = "results/bench",
    bootstrap: int = 1000,
    n_jobs: int = 2,
    curves_from: str | os.PathLike | None = _DEFAULT_CURVES,
    queries_law: str | os.PathLike | None = _DEFAULT_QUERY_LAW,
) -> dict:
    from .laws import fit
    from .loss_law import LossLaw
    from .optimum import cell_optima
    from .synthetic import make_sweep

    if curves_from:
        _check_sweep_dir(curves_from)  # before the minutes of the other fits
    if queries_law and not Path(queries_law).is_file():
        raise FileNotFoundError(f"--queries-law: {queries_law} not found")
    runs, truth = make_sweep(seed=0, n_runs=20, missing=0.03, pruned=0.03)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = cell_optima(runs, bootstrap=0)
        t0 = time.perf_counter()
        law = LossLaw().fit(table["n_params"], table["tokens"], table["loss_opt"])
        point = time.perf_counter() - t0
        t0 = time.perf_counter()
        laws = fit(runs, bootstrap=bootstrap, seed=0, n_jobs=n_jobs)
        full = time.perf_counter() - t0
    trajectory = time_trajectory_fit(curves_from) if curves_from else None
    queries = time_trajectory_queries(queries_law) if queries_law else None
    doc = laws.to_dict()
    result = {
        "sweep": {
            "sizes": 5,
            "budgets": 3,
            "runs_per_cell": 20,
            "rows": int(len(runs)),
            "cells": int(len(table)),
        },
        "bootstrap": bootstrap,
        "n_jobs": n_jobs,
        "loss_law_point_fit_s": round(point, 3),
        "full_fit_s": round(full, 2),
        "trajectory_fit": trajectory,
        "trajectory_queries": queries,
        "targets": TARGETS,
        "meets_targets": point < TARGETS["loss_law_point_fit_s"] and full < TARGETS["full_fit_s"],
        "loss_law_params": law.params_,
        "true_loss_params": truth.loss,
        "lr_law_params": doc["laws"].get("lr", {}).get("params"),
        "true_lr_params": truth.lr,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Fit benchmark (`python -m scaling.bench`)",
        "",
        f"Synthetic sweep: {result['sweep']['rows']} runs in {result['sweep']['cells']} cells "
        "(5 sizes x 3 budgets x 20 runs, seeded).",
        "",
        "| step | seconds | target |",
        "| --- | --- | --- |",
        f"| loss-law point fit | {point:.3f} | < {TARGETS['loss_law_point_fit_s']:g} |",
        f"| full fit ({bootstrap} bootstrap resamples, n_jobs={n_jobs}) | {full:.2f} | "
        f"< {TARGETS['full_fit_s']:g} |",
    ]
    if trajectory:
        md.append(
            f"| cross-size trajectory law, {trajectory['runs']} real curves of "
            f"`{trajectory['sweep_dir']}`, {trajectory['bootstrap_refits']} bootstrap "
            f"refits as in `fit` ({trajectory['bootstrap_refits_kept']} kept) | "
            f"{trajectory['seconds']:.2f} | none |"
        )
    if queries:
        md += [
            "",
            f"Trajectory queries (`{queries['laws']}`, 200 points with their interval, at the "
            "recommended LR and batch; median of 5):",
            "",
            "| n_params | tokens | optimizer steps | seconds | target |",
            "| --- | --- | --- | --- | --- |",
        ]
        md += [
            f"| {q['n_params']:.3g} | {q['tokens']:.3g} | {q['steps']:,} | {q['median_s']:.3f} | "
            f"< {QUERY_TARGET_S:g} |"
            for q in queries["queries"]
        ]
        worst = ", ".join(f"{k} {v:.1e}" for k, v in queries["blocks_vs_steps_2m"].items())
        md += [
            "",
            "A run of more than 2^18 steps is drawn from 2^16 blocks of steps. Against the "
            f"step-by-step sum at 2M steps (N = 1e8, peak LR 0.01), largest relative gap: {worst}.",
        ]
    md += [
        "",
        f"Machine: {os.cpu_count()} CPUs, 1-minute load average {result['machine']['load_average_1m_at_end']}"
        " at the end (other work on the machine inflates the times).",
        "",
    ]
    (out / "fit.md").write_text("\n".join(md))
    return result


def _shown(path: str) -> str:
    """A path inside the repository relative to its root, others as given."""
    try:
        return str(Path(path).resolve().relative_to(_ROOT))
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scaling.bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument(
        "--curves-from",
        default=str(_DEFAULT_CURVES),
        help="a sweep folder with runs.csv and curves.csv whose trajectory fit is timed "
        "('' to skip)",
    )
    p.add_argument(
        "--queries-law",
        default=str(_DEFAULT_QUERY_LAW),
        help="a law file whose trajectory queries are timed ('' to skip)",
    )
    args = p.parse_args(argv)
    try:
        result = run_bench(
            args.out,
            args.bootstrap,
            args.n_jobs,
            args.curves_from or None,
            args.queries_law or None,
        )
    except FileNotFoundError as exc:
        p.error(str(exc))
    keys = ("loss_law_point_fit_s", "full_fit_s", "trajectory_fit", "trajectory_queries")
    keys += ("meets_targets",)
    print(json.dumps({k: result[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
