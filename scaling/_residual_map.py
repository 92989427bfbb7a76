"""The cross-size trajectory law's own misfit, kept per fitted run and carried to new queries.

The law misses a sweep's curves mostly where it misfits the same grid point (peak LR, batch,
tokens, schedule) at every size: its smooth forms in N and LR cannot follow every bend of the
data. So the log residual of each fitted run, log(measured) - log(law), along the run's
progress (step / total steps), is kept; a prediction is multiplied by exp(r), r interpolated
from the fitted runs of the one or two sizes nearest the query in log N among those whose runs
come closest to it (in schedule shape, peak LR, batch and tokens).

How many sizes are read is chosen from the map's own rows (`choose_sizes_read`): each fitted size
beyond the two smallest is predicted from the smaller sizes' rows, reading the nearest one or the
nearest two, and the count whose transfer misses those sizes' residuals less is kept. Where the
law's misfit drifts with N (a sweep whose seed gives each width its own luck), the nearest size
alone carries it best; where the misfit at each grid point is much the same at every size and
noisy, the mean of two sizes does.

Between the grid's points r is a Gaussian-kernel average (Nadaraya-Watson) in log peak LR, log
batch, log tokens and the schedule's shape (LR / peak LR at 16 points of the run), with each
bandwidth a share of the grid's typical step in that coordinate (below). A query at a grid
point gets that point's residual, half-way between two points their mean, and the correction
fades to 0 (the law alone) where no fitted run is near: a schedule of another shape, an LR or
batch more than about three quarters of a grid step off the grid, a budget more than about 1.5
steps beyond it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# progress points (step / total steps) at which each run's residual is kept
GRID = np.linspace(0.0, 1.0, 41)
# where a schedule's shape is read: LR / peak LR at the middle of 16 equal parts of the run
_PROFILE_AT = (np.arange(16) + 0.5) / 16
# the shape distance (RMS of LR / peak) that counts as one grid step
_PROFILE_STEP = 0.1
# Each bandwidth is a share of the grid's step in its coordinate. In peak LR and batch, a sixth:
# a query reads the grid points within about half a step (between two points, their mean) and
# never a point a whole step away (weight 1.5e-8), where the sweep's landscape has moved on.
# In tokens and the schedule's shape, a third: a neighbour one step away weighs 1.1%, and a
# budget twice the longest fitted one still reads it (the prior below is 100x smaller).
_LR_BATCH_SHARE = 1 / 6
_BANDWIDTH_OF_STEP = 1 / 3
# the law alone enters the average as a pseudo-run at 4.5 bandwidths (1.5 grid steps in
# tokens and shape, 0.75 in LR and batch): past that the correction fades out
_PRIOR_WEIGHT = math.exp(-0.5 * 4.5**2)
# how many of the fitted sizes, nearest the query in log N, may be averaged (choose_sizes_read
# picks from these; the last is kept where the map has too few sizes to tell, as before)
SIZES_READ = (1, 2)
# the progress (step / total steps) from which choose_sizes_read compares residuals: the part of
# a run the fit and the backtests judge (the first quarter is the initial transient)
_JUDGED_FROM = 0.25
# The support from which a correction counts as moving the curve (below it the curve is the
# law alone to within 1% of the like runs' misfit): what the CLI and the web page show.
MATERIAL_SUPPORT = 0.01
# a size takes part when its run closest to the query weighs at least this share of the
# closest run at any size (a run one grid step further off in tokens weighs 1.1% as much)
_LIKE_SHARE = 0.5
_COORDS = ("log_n", "log_lr", "log_batch", "log_tokens")
_DECIMALS = 6
# log-coordinates closer than this are the same grid value
_SAME = math.log(1.05)


def profile(lrs: np.ndarray, peak: float | None = None) -> np.ndarray:
    """The schedule's shape: LR / peak LR at 16 points spread over the run (lrs per step, or
    per block of equal steps)."""
    idx = np.minimum((_PROFILE_AT * lrs.size).astype(np.int64), lrs.size - 1)
    return lrs[idx] / (lrs.max() if peak is None else peak)


def on_grid(steps: np.ndarray, n_steps: int, log_resid: np.ndarray) -> np.ndarray:
    """A run's log residuals at its logged steps, read at the GRID points of its progress
    (held constant before the first and after the last logged step)."""
    return np.interp(GRID, np.asarray(steps, dtype=float) / n_steps, log_resid)


def _step(values: np.ndarray) -> float:
    """The typical step between a coordinate's distinct values (log 2 when it has one value).
    Values within 5% count as one: a budget's token count varies a little with the batch (whole
    steps of whole sequences), and those slivers are not grid steps."""
    gaps = np.diff(np.sort(values))
    gaps = gaps[gaps > _SAME]
    return float(np.median(gaps)) if gaps.size else math.log(2.0)


class ResidualMap:
    """Per-run log residuals of a fitted law on a progress grid, with the runs' coordinates."""

    def __init__(self, coords: np.ndarray, profiles: np.ndarray, resid: np.ndarray) -> None:
        # Rounded as the law file keeps them, so a law predicts the same before and after a
        # round trip through its file.
        self.coords = np.round(np.asarray(coords, dtype=np.float64), _DECIMALS)
        self.coords = self.coords.reshape(-1, len(_COORDS))
        self.profiles = np.round(np.asarray(profiles, dtype=np.float64), _DECIMALS)
        self.profiles = self.profiles.reshape(-1, _PROFILE_AT.size)
        self.resid = np.round(np.asarray(resid, dtype=np.float64), _DECIMALS)
        self.resid = self.resid.reshape(-1, GRID.size)
        n = self.coords.shape[0]
        if n == 0 or self.profiles.shape[0] != n or self.resid.shape[0] != n:
            raise ValueError(
                "trajectory law field 'residual_map' must have the same number (>= 1) of "
                f"coords, profiles and residual rows, got {n}, {self.profiles.shape[0]}, "
                f"{self.resid.shape[0]}"
            )
        for name, arr in (
            ("coords", self.coords),
            ("profiles", self.profiles),
            ("resid", self.resid),
        ):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"trajectory law field 'residual_map.{name}' must be finite")
        self.bandwidth = np.array(
            [
                _step(self.coords[:, 1]) * _LR_BATCH_SHARE,
                _step(self.coords[:, 2]) * _LR_BATCH_SHARE,
                _step(self.coords[:, 3]) * _BANDWIDTH_OF_STEP,
            ]
        )
        self.profile_bandwidth = _PROFILE_STEP * _BANDWIDTH_OF_STEP
        self.n_sizes, self.transfer_error = choose_sizes_read(self)

    def _rows(self, keep: np.ndarray) -> ResidualMap:
        """The map of the rows `keep` selects, read with this map's bandwidths."""
        sub = ResidualMap.__new__(ResidualMap)
        sub.coords, sub.profiles, sub.resid = (
            self.coords[keep],
            self.profiles[keep],
            self.resid[keep],
        )
        sub.bandwidth, sub.profile_bandwidth = self.bandwidth, self.profile_bandwidth
        sub.n_sizes, sub.transfer_error = SIZES_READ[-1], {}
        return sub

    def read(
        self,
        n_params: float,
        lrs: np.ndarray,
        batch_tokens: float,
        *,
        n_steps: int | None = None,
        peak: float | None = None,
    ) -> Reading:
        """What the map says of one query, read once for its correction and its support. lrs:
        the LR of each step, or of each block of equal steps when n_steps (the run's steps) and
        peak (its peak LR) are given."""
        return Reading(self._per_size(n_params, lrs, batch_tokens, n_steps, peak), lrs.size)

    def log_correction(
        self, n_params: float, lrs: np.ndarray, batch_tokens: float, steps: np.ndarray
    ) -> np.ndarray:
        """log(correction factor) at each of `steps` of this query (see Reading)."""
        return self.read(n_params, lrs, batch_tokens).log_correction(steps)

    def _per_size(
        self,
        n_params: float,
        lrs: np.ndarray,
        batch_tokens: float,
        n_steps: int | None,
        peak: float | None,
    ) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """(log N, the runs' kernel weights, the weighted residual on GRID) for each size read."""
        z = math.log(n_params)
        n_steps = lrs.size if n_steps is None else n_steps
        peak = float(lrs.max()) if peak is None else peak
        x = np.array([math.log(peak), math.log(batch_tokens), math.log(n_steps * batch_tokens)])
        prof = profile(lrs, peak)
        d2 = (((self.coords[:, 1:] - x) / self.bandwidth) ** 2).sum(axis=1)
        shape = np.sqrt(np.mean((self.profiles - prof) ** 2, axis=1)) / self.profile_bandwidth
        w = np.exp(-0.5 * (d2 + shape**2))
        sizes = np.unique(self.coords[:, 0])
        closest = np.array([w[self.coords[:, 0] == s].max() for s in sizes])
        if closest.max() == 0.0:
            return []
        # The sizes whose closest run is about as close as the closest of all (its weight at
        # least half of that run's), nearest in log N first.
        like = sizes[closest >= _LIKE_SHARE * closest.max()]
        per_size = []
        for s in like[np.argsort(np.abs(like - z), kind="stable")][: self.n_sizes]:
            at = self.coords[:, 0] == s
            resid = w[at] @ self.resid[at] / (w[at].sum() + _PRIOR_WEIGHT)
            per_size.append((float(s), w[at], resid))
        return per_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "coords": list(_COORDS),
            "grid_points": int(GRID.size),
            "rows": [
                [float(v) for v in (*c, *p, *r)]
                for c, p, r in zip(self.coords, self.profiles, self.resid, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, d: Any) -> ResidualMap:
        if not isinstance(d, dict) or "rows" not in d:
            raise ValueError("trajectory law field 'residual_map' must be an object with 'rows'")
        if d.get("grid_points", GRID.size) != GRID.size or list(d.get("coords", _COORDS)) != list(
            _COORDS
        ):
            raise ValueError(
                f"trajectory law field 'residual_map' has grid_points {d.get('grid_points')!r} "
                f"and coords {d.get('coords')!r}; this code reads {GRID.size} and {list(_COORDS)}"
            )
        width = len(_COORDS) + _PROFILE_AT.size + GRID.size
        try:
            rows = np.asarray(d["rows"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                "trajectory law field 'residual_map.rows' must be a list of lists of numbers"
            ) from None
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(
                f"trajectory law field 'residual_map.rows' must be rows of {width} numbers, got "
                f"shape {rows.shape}"
            )
        k = len(_COORDS)
        return cls(rows[:, :k], rows[:, k : k + _PROFILE_AT.size], rows[:, k + _PROFILE_AT.size :])


def choose_sizes_read(m: ResidualMap) -> tuple[int, dict[int, float]]:
    """How many nearest sizes `m` reads (one of SIZES_READ), and the transfer error of each:
    every row of a size beyond the two smallest is read, as a query, from the map of the
    smaller sizes' rows, and the error is the mean |exp(r - r_read) - 1| over its progress from
    _JUDGED_FROM (the relative error of a prediction corrected by the reading, if the law's
    misfit there were the row's). The count with the lower error is kept, the larger one on a
    tie; with fewer than three sizes there is nothing to compare: SIZES_READ[-1], and {}."""
    sizes = np.unique(m.coords[:, 0])
    if sizes.size < 3:
        return SIZES_READ[-1], {}
    late = GRID >= _JUDGED_FROM
    errors: dict[int, list[float]] = {k: [] for k in SIZES_READ}
    for target in sizes[2:]:
        sub = m._rows(m.coords[:, 0] < target)
        for i in np.flatnonzero(m.coords[:, 0] == target):
            z, log_lr, log_batch, log_tokens = m.coords[i]
            peak, batch = math.exp(log_lr), math.exp(log_batch)
            # the row's schedule, as 16 blocks whose LRs are its shape (see profile)
            n_steps = max(1, round(math.exp(log_tokens) / batch))
            for k in SIZES_READ:
                sub.n_sizes = k
                per_size = sub._per_size(math.exp(z), m.profiles[i] * peak, batch, n_steps, peak)
                read = np.mean([r for _, _, r in per_size], axis=0) if per_size else 0.0
                errors[k].append(float(np.mean(np.abs(np.expm1(m.resid[i] - read)[late]))))
    mean = {k: float(np.mean(v)) for k, v in errors.items()}
    best = min(mean.values())
    return max(k for k in SIZES_READ if mean[k] <= best), mean


class Reading:
    """The map's reading of one query: for each size read, its log N, its runs' kernel
    weights and their weighted residual on GRID (none where no fitted run is near)."""

    def __init__(self, per_size: list[tuple[float, np.ndarray, np.ndarray]], entries: int):
        self.per_size = per_size
        self.entries = entries  # the query's steps (or blocks of steps)

    def log_correction(self, steps: np.ndarray) -> np.ndarray:
        """log(correction factor) at each of `steps` (1-based entries of the query's lrs)."""
        if not self.per_size:  # no fitted run is anywhere near this query
            return np.zeros(np.shape(steps))
        r = np.mean([resid for _, _, resid in self.per_size], axis=0)
        return np.interp(np.asarray(steps, dtype=float) / self.entries, GRID, r)

    def support(self) -> dict[str, Any]:
        """How much of the correction the fitted runs carry: `support` is the runs' share of
        the kernel average against the law alone's prior (1: the residual of like runs in full;
        0: the law alone), averaged over the sizes read, whose N are `n_params`; `runs` counts
        the runs that weigh at least 1% of their size's total; `material`: support of at least
        MATERIAL_SUPPORT, a correction worth showing."""
        if not self.per_size:
            return {"support": 0.0, "material": False, "n_params": [], "runs": 0}
        shares, runs = [], 0
        for _, w, _ in self.per_size:
            shares.append(float(w.sum() / (w.sum() + _PRIOR_WEIGHT)))
            runs += int(np.count_nonzero(w >= 0.01 * w.sum()))
        support = float(np.mean(shares))
        return {
            "support": support,
            "material": support >= MATERIAL_SUPPORT,
            "n_params": [float(round(math.exp(s))) for s, _, _ in self.per_size],
            "runs": runs,
        }
