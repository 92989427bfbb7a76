"""Optimal learning rate and batch size in each (N, D) cell of a sweep, robust to grid noise.

Not the single argmin: a weighted quadratic in log lr (and log batch_tokens when both vary)
through the near-optimal runs, bounded by the runs that diverged, with an edge flag when the
optimum sits at the end of the swept range, and a bootstrap over the cell's runs.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._util import n_levels, percentile_interval, single_threaded_blas
from .runs import validate_runs

__all__ = [
    "BootstrapCache",
    "CellRuns",
    "cell_bootstrap",
    "cell_optima",
    "conditional_lr_optima",
    "estimate_optimum",
]

_TOL = 1e-6


@dataclass
class CellRuns:
    """The runs of one (N, D) cell as arrays in log space (natural logs)."""

    cell: str
    n_params: float
    tokens: float
    log_lr: np.ndarray  # all non-pruned runs, finished or diverged
    log_batch: np.ndarray
    loss: np.ndarray  # NaN for diverged
    diverged: np.ndarray
    n_pruned: int
    vary_batch: bool

    @property
    def finished(self) -> np.ndarray:
        return ~self.diverged


@dataclass
class Optimum:
    log_lr: float
    log_batch: float
    loss: float
    edge_lr_low: bool
    edge_lr_high: bool
    edge_batch_low: bool
    edge_batch_high: bool
    method: str


def _distinct(x: np.ndarray) -> int:
    """Distinct values of a log-space array (to 1e-6), fast for the small arrays of a cell."""
    if x.size < 2:
        return int(x.size)
    return int(1 + np.count_nonzero(np.diff(np.sort(x)) > 1e-6))


def _weighted_lstsq(design: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    sw = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)
    return coef


def _edge_and_clip(
    value: float,
    best: float,
    finished: np.ndarray,
    diverged: np.ndarray,
) -> tuple[float, bool, bool]:
    """Clip an optimum to the finished runs' range; flag a side where nothing bounds it.

    A diverged run beyond the finished range on a side brackets the optimum on that side (it is
    evidence that going further is bad), so that side is not an edge.
    """
    lo, hi = float(finished.min()), float(finished.max())
    beyond_hi = diverged[diverged > hi + _TOL]
    beyond_lo = diverged[diverged < lo - _TOL]
    # Divergence at or below the estimate (but above the best run) caps it.
    cap = diverged[(diverged > best + _TOL)]
    if cap.size:
        hi = min(hi, float(cap.min()))
    edge_hi = (value > hi + _TOL or best >= hi - _TOL) and beyond_hi.size == 0
    edge_lo = (value < lo - _TOL or best <= lo + _TOL) and beyond_lo.size == 0
    if lo == hi:
        return lo, True, True
    return float(np.clip(value, lo, hi)), edge_lo, edge_hi


def _fit_1d(x: np.ndarray, loss: np.ndarray, band_rel: float, min_points: int):
    """Vertex of a weighted quadratic through the near-best points, or a fallback."""
    i_best = int(np.argmin(loss))
    best = float(loss[i_best])
    band = band_rel * best
    order = np.argsort(loss)
    keep = loss <= best + band
    if keep.sum() < min_points:
        keep = np.zeros_like(keep)
        keep[order[:min_points]] = True
    xs, ls = x[keep], loss[keep]
    scale = max(band, float(ls.max() - best), 1e-12)
    w = np.exp(-(ls - best) / scale)
    if _distinct(xs) >= 3:
        dx = xs - x[i_best]
        coef = _weighted_lstsq(np.stack([np.ones_like(dx), dx, dx * dx], 1), ls, w)
        if coef[2] > 0:
            v = -coef[1] / (2 * coef[2])
            # A vertex far outside the points used is an extrapolation, not an estimate.
            span = 0.5 * float(xs.max() - xs.min())
            v = float(np.clip(v, dx.min() - span, dx.max() + span))
            return x[i_best] + v, coef, "quadratic", best
    # Too few distinct values or no curvature: a loss-weighted mean of the near-best runs.
    w = np.exp(-(ls - best) / max(band, 1e-12))
    return float(np.sum(w * xs) / np.sum(w)), None, "weighted-mean", best


def _lr_optimum_1d(x: np.ndarray, loss: np.ndarray, x_diverged: np.ndarray, band_rel: float):
    """The optimal log LR along one line of finished runs (one batch size), clipped to their
    range: (log lr, edge low, edge high, quadratic coef or None, method, best loss, best run's
    log lr)."""
    xv, coef, method, best = _fit_1d(x, loss, band_rel, 4)
    x_best = float(x[np.argmin(loss)])
    lr_opt, e_lo, e_hi = _edge_and_clip(xv, x_best, x, x_diverged)
    return lr_opt, e_lo, e_hi, coef, method, best, x_best


def estimate_optimum(
    cell: CellRuns, *, band_rel: float = 0.03, min_points_2d: int = 8, cross_min: int = 12
) -> Optimum:
    """The optimum of one cell. See the module docstring for the method."""
    fin = cell.finished
    if not fin.any():
        return Optimum(math.nan, math.nan, math.nan, False, False, False, False, "all-diverged")
    x, y, loss = cell.log_lr[fin], cell.log_batch[fin], cell.loss[fin]
    dx_div, dy_div = cell.log_lr[~fin], cell.log_batch[~fin]
    i_best = int(np.argmin(loss))
    best = float(loss[i_best])
    if cell.vary_batch and fin.sum() >= min_points_2d:
        band = band_rel * best
        keep = loss <= best + band
        if keep.sum() < min_points_2d:
            keep = np.zeros_like(keep)
            keep[np.argsort(loss)[:min_points_2d]] = True
        xs, ys, ls = x[keep], y[keep], loss[keep]
        scale = max(band, float(ls.max() - best), 1e-12)
        w = np.exp(-(ls - best) / scale)
        dx, dy = xs - x[i_best], ys - y[i_best]
        vertex = None
        if _distinct(xs) >= 3 and _distinct(ys) >= 3:
            # Few points: no cross term (5 coefficients), which keeps resampled fits stable.
            cross = dx * dy if xs.size >= cross_min else np.zeros_like(dx)
            design = np.stack([np.ones_like(dx), dx, dy, dx * dx, cross, dy * dy], 1)
            c = _weighted_lstsq(design, ls, w)
            h11, h12, h22 = 2 * c[3], c[4], 2 * c[5]
            det = h11 * h22 - h12 * h12
            if h11 > 0 and det > 0:
                v = np.array([(-h22 * c[1] + h12 * c[2]) / det, (h12 * c[1] - h11 * c[2]) / det])
                span = 0.5 * np.array([np.ptp(xs), np.ptp(ys)])
                v = np.clip(v, np.array([dx.min(), dy.min()]) - span, [dx.max(), dy.max()] + span)
                vertex, coef, method = v, c, "quadratic-2d"
        if vertex is None:
            ww = np.exp(-(ls - best) / max(band, 1e-12))
            vertex = np.array([np.sum(ww * dx), np.sum(ww * dy)]) / np.sum(ww)
            coef, method = None, "weighted-mean-2d"
        vx, vy = x[i_best] + vertex[0], y[i_best] + vertex[1]
        # Divergence bounds the LR only among runs at batch sizes like the near-best ones.
        near = (dy_div >= ys.min() - _TOL) & (dy_div <= ys.max() + _TOL)
        lr_opt, e_lo, e_hi = _edge_and_clip(vx, x[i_best], x, dx_div[near])
        b_opt, eb_lo, eb_hi = _edge_and_clip(vy, y[i_best], y, np.array([]))
        if coef is not None:
            ex, ey = lr_opt - x[i_best], b_opt - y[i_best]
            fitted = float(coef @ [1, ex, ey, ex * ex, ex * ey, ey * ey])
        else:
            fitted = best
        loss_opt = float(np.clip(fitted, best - band, best))
        return Optimum(lr_opt, b_opt, loss_opt, e_lo, e_hi, eb_lo, eb_hi, method)
    # LR only: at the batch size of the best run when batch varies too little for a 2-D fit.
    b_levels = np.unique(np.round(y, 6))
    if b_levels.size > 1:
        per_level = []
        for level in b_levels:
            sel = np.abs(y - level) < 1e-6
            per_level.append((float(loss[sel].min()), level))
        b_best = min(per_level)[1]
        at = np.abs(y - b_best) < 1e-6
        at_div = np.abs(dy_div - b_best) < 1e-6
        eb_lo, eb_hi = b_best <= y.min() + _TOL, b_best >= y.max() - _TOL
    else:
        b_best = float(y[0])
        at = np.ones_like(y, dtype=bool)
        at_div = np.ones_like(dy_div, dtype=bool)
        eb_lo = eb_hi = False  # batch not swept here: nothing to flag
    lr_opt, e_lo, e_hi, coef, method, best_at, x_best = _lr_optimum_1d(
        x[at], loss[at], dx_div[at_div], band_rel
    )
    if coef is not None:
        d = lr_opt - x_best
        fitted = float(coef[0] + coef[1] * d + coef[2] * d * d)
    else:
        fitted = best_at
    loss_opt = float(np.clip(fitted, best_at - band_rel * best_at, best_at))
    return Optimum(lr_opt, float(b_best), loss_opt, e_lo, e_hi, eb_lo, eb_hi, method)


def _cell_key(runs: pd.DataFrame) -> pd.Series:
    if "cell" in runs.columns and runs["cell"].notna().all():
        return runs["cell"].astype(str)
    # Runs under different schedules have different optima: never pool them into one cell.
    schedule = runs["schedule"].astype(str) if "schedule" in runs.columns else None
    return runs.apply(
        lambda r: (
            f"N{r['n_params']:.4g}-D{r['tokens']:.4g}"
            + (f"-{schedule[r.name]}" if schedule is not None else "")
        ),
        axis=1,
    )


def searched_cells(runs: pd.DataFrame, min_settings: int = 3) -> pd.Series:
    """Which rows belong to cells that searched the hyperparameters: at least `min_settings`
    distinct (lr, batch_tokens) settings among their unpruned runs. A cell run at one setting
    (a schedule variant at a fixed LR, say) says nothing about where the optimum lies."""
    keys = _cell_key(runs)
    kept = runs[~runs["pruned"].to_numpy()] if "pruned" in runs.columns else runs
    if kept.empty:  # every run pruned: no cell searched anything
        return pd.Series(False, index=runs.index)
    settings = kept.groupby(keys[kept.index])[["lr", "batch_tokens"]].apply(
        lambda df: len(df.drop_duplicates())
    )
    return keys.map(settings).fillna(0).ge(min_settings)


def split_cells(runs: pd.DataFrame) -> list[CellRuns]:
    """The sweep's runs grouped into (N, D) cells (by `cell` when given, else by N and D)."""
    runs = validate_runs(runs) if "finished" not in runs.columns else runs
    keys = _cell_key(runs)
    vary_batch_sweep = n_levels(runs["batch_tokens"].to_numpy()) >= 3
    cells = []
    for key, df in runs.groupby(keys, sort=False):
        # One canonical row order (the runs' settings and results, then their ids), so that
        # the bootstrap's resamples, and the optima's weights in the laws, do not depend on the
        # order the runs were finished or exported in.
        order = [c for c in ("lr", "batch_tokens", "loss", "run_id") if c in df.columns]
        df = df.sort_values(order, kind="mergesort", na_position="last")
        kept = df[~df["pruned"].to_numpy()]
        loss = np.where(kept["finished"], kept["loss"], np.nan)
        diverged = ~kept["finished"].to_numpy()
        bt = kept["batch_tokens"].to_numpy()
        cells.append(
            CellRuns(
                cell=str(key),
                n_params=float(df["n_params"].median()),
                tokens=float(df["tokens"].median()),
                log_lr=np.log(kept["lr"].to_numpy()),
                log_batch=np.log(bt),
                loss=loss.astype(float),
                diverged=diverged,
                n_pruned=int(df["pruned"].sum()),
                vary_batch=vary_batch_sweep and n_levels(bt[~diverged]) >= 3 if len(bt) else False,
            )
        )
    cells.sort(key=lambda c: (c.n_params, c.tokens, c.cell))
    return cells


def conditional_lr_optima(cells: list[CellRuns], band_rel: float = 0.03) -> pd.DataFrame:
    """The optimal LR at each batch size a cell swept: one row per (cell, batch) with at
    least 3 finished LRs, in cells that swept at least 2 batch sizes.

    Under Adam the best LR grows with the batch (about as its square root; Malladi et al.
    2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"), so an LR law
    that ignores the batch recommends a pair off the valley of the (LR, batch) landscape
    whenever the batch law misses. `edge` marks an optimum that no run bounds on one side.
    """
    rows = []
    for cell in cells:
        fin = cell.finished
        levels = np.unique(np.round(cell.log_batch[fin], 6))
        if levels.size < 2:
            continue
        for level in levels:
            at = fin & (np.abs(cell.log_batch - level) < 1e-6)
            at_div = ~fin & (np.abs(cell.log_batch - level) < 1e-6)
            if _distinct(cell.log_lr[at]) < 3:
                continue
            lr_opt, e_lo, e_hi, _, method, best, _ = _lr_optimum_1d(
                cell.log_lr[at], cell.loss[at], cell.log_lr[at_div], band_rel
            )
            rows.append(
                {
                    "cell": cell.cell,
                    "n_params": cell.n_params,
                    "tokens": cell.tokens,
                    "batch_tokens": float(np.exp(level)),
                    "lr_opt": float(np.exp(lr_opt)),
                    "loss_best": best,
                    "edge": bool(e_lo or e_hi),
                    "method": method,
                }
            )
    columns = ["cell", "n_params", "tokens", "batch_tokens", "lr_opt", "loss_best", "edge"]
    return pd.DataFrame(rows, columns=[*columns, "method"])


def _bootstrap_one_cell(cell: CellRuns, n_boot: int, seed, band_rel: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.full((n_boot, 3), np.nan)
    with single_threaded_blas():
        _fill_bootstrap(cell, n_boot, rng, band_rel, out)
    return out


def _fill_bootstrap(cell: CellRuns, n_boot: int, rng, band_rel: float, out: np.ndarray) -> None:
    n = cell.log_lr.size
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        sub = CellRuns(
            cell.cell,
            cell.n_params,
            cell.tokens,
            cell.log_lr[idx],
            cell.log_batch[idx],
            cell.loss[idx],
            cell.diverged[idx],
            cell.n_pruned,
            cell.vary_batch,
        )
        opt = estimate_optimum(sub, band_rel=band_rel)
        out[b] = (opt.log_lr, opt.log_batch, opt.loss)


class BootstrapCache:
    """Per-cell bootstrap optima kept for reuse by later fits that share cells (a backtest's
    refits share most of theirs with the full fit). A cell's resamples depend only on its own
    runs, the seed, the number of resamples and band_rel, so the key is all of those: a cell
    whose runs differ in any value is resampled afresh."""

    def __init__(self) -> None:
        self._store: dict[tuple, np.ndarray] = {}
        self.hits = 0

    @staticmethod
    def key(cell: CellRuns, n_boot: int, seed: int, band_rel: float) -> tuple:
        digest = zlib.crc32(
            b"".join(
                np.ascontiguousarray(a, dtype=float).tobytes()
                for a in (cell.log_lr, cell.log_batch, cell.loss, cell.diverged)
            )
        )
        return (
            str(cell.cell),
            cell.n_params,
            cell.tokens,
            cell.log_lr.size,
            cell.n_pruned,
            bool(cell.vary_batch),
            digest,
            int(n_boot),
            int(seed),
            float(band_rel),
        )

    def get(self, key: tuple) -> np.ndarray | None:
        got = self._store.get(key)
        if got is not None:
            self.hits += 1
        return got

    def put(self, key: tuple, value: np.ndarray) -> None:
        self._store[key] = value

    def __len__(self) -> int:
        return len(self._store)


def cell_bootstrap(
    cells: list[CellRuns],
    n_boot: int,
    seed: int = 0,
    *,
    band_rel: float = 0.03,
    n_jobs: int = 1,
    progress=None,
    cache: BootstrapCache | None = None,
) -> np.ndarray:
    """Optima under resampling of each cell's runs: shape (n_boot, n_cells, 3) with log lr,
    log batch, loss. Diverged runs are resampled along with the finished ones. Each cell's seed
    stream comes from the seed and the cell's name, so a cell's resamples depend neither on
    n_jobs nor on which other cells are fitted with it (a backtest that holds some cells out
    weights the others as the full fit does). With a cache, cells already resampled there are
    taken from it and the new ones are added to it."""
    keys = [BootstrapCache.key(c, n_boot, seed, band_rel) for c in cells]
    results: list[np.ndarray | None] = [cache.get(k) if cache is not None else None for k in keys]
    todo = [j for j, r in enumerate(results) if r is None]
    if progress is not None and len(todo) < len(cells):
        progress(len(cells) - len(todo))
    seeds = {
        j: np.random.SeedSequence([seed, zlib.crc32(str(cells[j].cell).encode())]) for j in todo
    }
    if n_jobs > 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator")
        fresh = parallel(
            delayed(_bootstrap_one_cell)(cells[j], n_boot, seeds[j], band_rel) for j in todo
        )
    else:
        fresh = (_bootstrap_one_cell(cells[j], n_boot, seeds[j], band_rel) for j in todo)
    for j, res in zip(todo, fresh, strict=True):
        results[j] = res
        if cache is not None:
            cache.put(keys[j], res)
        if progress is not None:
            progress(1)
    return np.stack(results, axis=1) if results else np.full((n_boot, 0, 3), np.nan)


def cell_optima(
    runs: pd.DataFrame,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    band_rel: float = 0.03,
    n_jobs: int = 1,
    progress=None,
    return_bootstrap: bool = False,
    cache: BootstrapCache | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray, list[CellRuns]]:
    """One row per cell: cell, n_params, tokens, lr_opt, batch_opt, loss_opt, lr_low/high,
    batch_low/high (95% bootstrap), n_runs, n_finished, n_diverged, n_pruned, the four edge
    flags, edge (any of them) and method. Warns once for cells whose optimum is on an edge."""
    cells = split_cells(runs)
    rows = []
    boot = (
        cell_bootstrap(
            cells,
            bootstrap,
            seed,
            band_rel=band_rel,
            n_jobs=n_jobs,
            progress=progress,
            cache=cache,
        )
        if bootstrap
        else None
    )
    for j, cell in enumerate(cells):
        opt = estimate_optimum(cell, band_rel=band_rel)
        row = {
            "cell": cell.cell,
            "n_params": cell.n_params,
            "tokens": cell.tokens,
            "lr_opt": math.exp(opt.log_lr),
            "batch_opt": math.exp(opt.log_batch),
            "loss_opt": opt.loss,
            "lr_low": math.nan,
            "lr_high": math.nan,
            "batch_low": math.nan,
            "batch_high": math.nan,
            "n_runs": int(cell.log_lr.size + cell.n_pruned),
            "n_finished": int(cell.finished.sum()),
            "n_diverged": int(cell.diverged.sum()),
            "n_pruned": cell.n_pruned,
            "edge_lr_low": opt.edge_lr_low,
            "edge_lr_high": opt.edge_lr_high,
            "edge_batch_low": opt.edge_batch_low,
            "edge_batch_high": opt.edge_batch_high,
            "method": opt.method,
        }
        if boot is not None:
            lo, hi = percentile_interval(boot[:, j, :2], point=[opt.log_lr, opt.log_batch])
            row.update(
                lr_low=math.exp(lo[0]),
                lr_high=math.exp(hi[0]),
                batch_low=math.exp(lo[1]),
                batch_high=math.exp(hi[1]),
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    table["edge"] = table[["edge_lr_low", "edge_lr_high", "edge_batch_low", "edge_batch_high"]].any(
        axis=1
    )
    table["edge_lr"] = table["edge_lr_low"] | table["edge_lr_high"]
    table["edge_batch"] = table["edge_batch_low"] | table["edge_batch_high"]
    on_edge = table.loc[table["edge"], "cell"].tolist()
    if on_edge:
        warnings.warn(
            f"optimum on the edge of the swept range in {len(on_edge)} cell(s): "
            f"{', '.join(on_edge)}; widen the sweep there",
            UserWarning,
            stacklevel=2,
        )
    dead = table.loc[table["n_finished"] == 0, "cell"].tolist()
    if dead:
        warnings.warn(
            f"no finished run in cell(s) {', '.join(dead)} (all diverged or pruned)",
            UserWarning,
            stacklevel=2,
        )
    if return_bootstrap:
        return table, boot, cells
    return table
