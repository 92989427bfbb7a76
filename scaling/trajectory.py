"""Loss-trajectory laws: the validation loss at every step under any learning-rate schedule.

`TrajectoryLaw` fits one model size (at one peak LR); `CrossSizeTrajectoryLaw` makes its
parameters power laws of the model size (and batch size), with terms in the peak LR, so that it
predicts the curve of a size never swept at any LR of the sweep's grid.

The form is the multi-power law of Luo et al. 2025 ("A Multi-Power Law for Loss Curve
Prediction Across Learning Rate Schedules"):

    L(t) = L0 + A * S1(t)^(-alpha) - LD(t)
    LD(t) = B * sum_k (lr[k-1] - lr[k]) * G(lr[k]^(-gamma) * S_k(t)),  G(x) = 1 - (C*x + 1)^(-beta)

with S1(t) the LR area of the first t steps (warmup included, so the paper's S_W is folded in)
and S_k(t) the LR area from step k to step t. The sum runs over the steps after the LR peak,
so warmup adds nothing to LD; loss points logged before the peak, or in the first `skip_frac`
of the run (the fast initial transient of short runs), are not fitted.

Fit: Huber loss on log(loss) residuals, minimized as robust nonlinear least squares
(trust-region reflective, analytic Jacobian) from several seeded starts, positive parameters in
log space; a residual bootstrap (block-preserving) gives the intervals. Runs of ~10^4 steps
stay cheap because the LR changes after the peak are merged into at most `max_segments` groups
(error < 1e-4 relative for smooth schedules).

Step convention: the loss "at step t" is the validation loss after t optimizer updates, which
used lr_schedule[0], ..., lr_schedule[t-1]; t runs from 1 to len(lr_schedule).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import huber, ndtri

from ._residual_map import ResidualMap
from ._residual_map import on_grid as residual_on_grid
from ._residual_map import profile as residual_profile
from ._util import check_batch_fits, contain_point, widen_in_log

__all__ = [
    "CrossSizeTrajectoryLaw",
    "PARAM_NAMES",
    "SKIP_FRAC",
    "TrajectoryFitWarning",
    "TrajectoryLaw",
    "fitted_steps",
    "lr_schedule_of_run",
]

PARAM_NAMES = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
FORM = "multi-power law (Luo et al. 2025)"
# 2: CrossSizeTrajectoryLaw gained the peak-LR terms; 3: the peak-LR x batch terms; 4: its
# residual map. Older files still load (the terms they lack are 0, and without a residual map
# the law predicts uncorrected: the law they were fitted as).
FORMAT_VERSION = 4
_N_LOCAL = len(PARAM_NAMES)
# LRs below this fraction of the peak are raised to it inside lr^(-gamma) only, so that a
# schedule that decays to exactly zero stays finite.
_LR_FLOOR_FRAC = 1e-6
_CHUNK = 2048
# The leading share of each run neither fitted nor scored. Short runs open with a fast
# transient (on the quick sweep: a plateau near the unigram loss, then a drop, over the first
# ~100 of 366 steps) that no power law in the LR area describes; fitted, those points pull
# L0, A and alpha off the rest of the curve. (0.1 kept steps 50 and 75 of 366 in the fit.)
SKIP_FRAC = 0.25


class TrajectoryFitWarning(RuntimeWarning):
    """The optimizer did not converge from any starting point."""


# --------------------------------------------------------------------------------------------
# input checks


def _as_schedule(lr_schedule: Any, field: str) -> np.ndarray:
    try:
        lrs = np.asarray(lr_schedule, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be an array of learning rates: {exc}") from None
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"{field} must be a non-empty 1-D array of LRs, got shape {lrs.shape}")
    bad = ~np.isfinite(lrs)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{field} must be finite, got {lrs[i]!r} at step {i}")
    if (lrs < 0).any():
        i = int(np.flatnonzero(lrs < 0)[0])
        raise ValueError(f"{field} must be non-negative, got {lrs[i]!r} at step {i}")
    if not (lrs > 0).any():
        raise ValueError(f"{field} must have at least one positive LR")
    return lrs


def _as_steps(steps: Any, n_total: int, field: str = "steps") -> np.ndarray:
    arr = np.asarray(steps)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{field} must be a non-empty 1-D array of step counts")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{field} must be finite integers, got {arr[:5]!r}")
    if np.any(arr != np.round(arr)):
        raise ValueError(f"{field} must be integers, got {arr[:5]!r}")
    arr = arr.astype(np.int64)
    if arr.min() < 1 or arr.max() > n_total:
        raise ValueError(
            f"{field} must lie in [1, {n_total}] (the length of the LR schedule), "
            f"got {int(arr.min())}..{int(arr.max())}: schedule length mismatch"
        )
    return arr


def _positive(value: Any, field: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{field} must be a positive finite number, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# the schedule's terms and the law


@dataclass
class _Terms:
    """What the law needs from one schedule at a set of steps (independent of the params)."""

    s1: np.ndarray  # (n,) LR area of the first t steps
    dist: np.ndarray  # (n, m) LR area from each LR change to t (0 before the change)
    delta: np.ndarray  # (m,) LR drop at each change, lr[k-1] - lr[k]
    log_lr: np.ndarray  # (m,) log LR right after each change


def _changes(
    lrs: np.ndarray, max_segments: int, exact: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps k after the peak where the LR changes, their drops and LRs, merged into at most
    max_segments groups (a group sits at the |drop|-weighted mean of its steps, rounded to a
    step; exact=True keeps that mean, a fractional k, and reads the LR there)."""
    peak = int(np.argmax(lrs))
    k = np.arange(peak + 1, lrs.size)
    delta = lrs[k - 1] - lrs[k]
    keep = delta != 0
    k, delta = k[keep], delta[keep]
    at = k
    if k.size > max_segments:
        starts = np.linspace(0, k.size, max_segments, endpoint=False).astype(np.int64)
        w = np.abs(delta)
        wsum = np.add.reduceat(w, starts)
        at = np.add.reduceat(w * k, starts) / wsum
        k = np.rint(at).astype(np.int64)
        delta = np.add.reduceat(delta, starts)
    floor = _LR_FLOOR_FRAC * lrs.max()
    if exact:
        return at, delta, np.log(np.maximum(np.interp(at, np.arange(lrs.size), lrs), floor))
    return k, delta, np.log(np.maximum(lrs[k], floor))


def _terms(
    lrs: np.ndarray, steps: np.ndarray, max_segments: int, weights: np.ndarray | None = None
) -> _Terms:
    """weights: the steps each entry of lrs stands for (a run in blocks, see _Blocks), in which
    case `steps` count blocks and a group of LR changes sits between blocks, where its mean
    falls; None: one step each."""
    if weights is None:
        area = np.concatenate(([0.0], np.cumsum(lrs)))
        k, delta, log_lr = _changes(lrs, max_segments)
        at_k = area[k]
    else:
        area = np.concatenate(([0.0], np.cumsum(lrs * weights)))
        k, delta, log_lr = _changes(lrs, max_segments, exact=True)
        at_k = np.interp(k, np.arange(area.size), area)
    s1 = area[steps]
    dist = np.clip(s1[:, None] - at_k[None, :], 0.0, None)
    return _Terms(s1=s1, dist=dist, delta=delta, log_lr=log_lr)


def _law(phi: np.ndarray, t: _Terms, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Loss at each step for log-params phi, and d loss / d phi (n, 7) when grad."""
    l0, a, alpha, b, c, beta, gamma = np.exp(phi)
    s1_pow = np.exp(-alpha * np.log(t.s1))
    x = t.dist * np.exp(-gamma * t.log_lr)[None, :]
    u = c * x + 1.0
    log_u = np.log(u)
    u_pow = np.exp(-beta * log_u)
    ld = b * ((1.0 - u_pow) @ t.delta)
    loss = l0 + a * s1_pow - ld
    if not grad:
        return loss, None
    common = beta * u_pow / u * x  # d G / d C
    jac = np.empty((loss.size, _N_LOCAL))
    jac[:, 0] = l0
    jac[:, 1] = a * s1_pow
    jac[:, 2] = -a * s1_pow * np.log(t.s1) * alpha
    jac[:, 3] = -ld
    jac[:, 4] = -b * c * (common @ t.delta)
    jac[:, 5] = -b * beta * ((u_pow * log_u) @ t.delta)
    jac[:, 6] = b * c * gamma * (common @ (t.delta * t.log_lr))
    return loss, jac


def _predict_phi(phi: np.ndarray, lrs: np.ndarray, steps: np.ndarray, max_segments: int):
    return _predict_phis(phi[None, :], lrs, steps, max_segments)[0]


def _predict_phis(
    phis: np.ndarray,
    lrs: np.ndarray,
    steps: np.ndarray,
    max_segments: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The loss at `steps` for each row of phis (m, 7): (m, steps). The schedule's terms are
    built once for all rows (a bootstrap ensemble shares them)."""
    out = np.empty((phis.shape[0], steps.size))
    with np.errstate(all="ignore"):  # extreme schedules give inf/nan losses, not warnings
        for i in range(0, steps.size, _CHUNK):
            part = steps[i : i + _CHUNK]
            terms = _terms(lrs, part, max_segments, weights)
            for j, phi in enumerate(phis):
                out[j, i : i + _CHUNK] = _law(phi, terms, grad=False)[0]
    return out


# The longest run a trajectory is drawn for: step indices stay exact in float64 (below 2^53)
# with room to spare; the cost no longer grows with the run (blocks, below).
MAX_TRAJECTORY_STEPS = 10**12

# A run longer than this many steps is drawn from blocks of steps (about _BLOCKS of them):
# each block's LR is the mean of its steps' (read at _BLOCK_SAMPLES points), and the law's LR
# areas sum the blocks. The law already merges the LR's changes into max_segments groups, far
# coarser than the blocks, so a curve of a billion steps costs what one of 2^18 does. Against
# the step-by-step sum, measured on results/reference/laws.json at 2M steps: within 2e-4 of
# the loss and 7e-4 of its interval for cosine, WSD and linear (as close to the law with no
# merging as the step-by-step sum is), exact for constant and step schedules (tested).
_FINE_MAX_STEPS = 2**18
_BLOCKS = 2**16
_BLOCK_SAMPLES = 8


@dataclass
class _Blocks:
    """A run's schedule as the law reads it: LR per block, steps per block."""

    lrs: np.ndarray
    weights: np.ndarray | None  # None: one step per entry
    n_steps: int
    peak: float

    @classmethod
    def per_step(cls, lrs: np.ndarray) -> _Blocks:
        """A schedule given as the LR of every step."""
        return cls(lrs, None, lrs.size, float(lrs.max()))

    @classmethod
    def of(cls, spec, peak_lr: float, n_steps: int) -> _Blocks:
        if n_steps <= _FINE_MAX_STEPS:
            return cls(spec.lrs(peak_lr, n_steps), None, n_steps, float(peak_lr))
        width = -(-n_steps // _BLOCKS)
        edges = np.minimum(np.arange(-(-n_steps // width) + 1) * width, n_steps)
        # A block edge at every break, so that an LR drop falls between blocks, not inside one;
        # and the first step a block of its own, so that the curve starts at step 1.
        edges = np.union1d(edges, [1, *spec.breaks(n_steps)])
        weights = np.diff(edges).astype(np.float64)
        # _BLOCK_SAMPLES points spread symmetrically between each block's first and last step
        # (never beyond them: outside a piece its formula does not hold); exact for a linear
        # stretch of LR.
        at = (np.arange(_BLOCK_SAMPLES) + 0.5) / _BLOCK_SAMPLES
        s = edges[:-1, None] + at[None, :] * (weights[:, None] - 1.0)
        lrs = spec.lr_at(peak_lr, n_steps, s).mean(axis=1)
        return cls(lrs, weights, n_steps, float(peak_lr))

    def edges(self) -> np.ndarray:
        """The step each entry ends at (1-based)."""
        if self.weights is None:
            return np.arange(1, self.n_steps + 1)
        return np.cumsum(self.weights).round().astype(np.int64)

    def at(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        """`points` entries spread over the run, first to last: (their indices for the law,
        1-based, and the steps they end at)."""
        idx = np.unique(np.linspace(1, self.lrs.size, min(points, self.lrs.size)).round())
        idx = idx.astype(np.int64)
        return idx, self.edges()[idx - 1]


# --------------------------------------------------------------------------------------------
# the fitting engine shared by both laws: theta (global params) -> phi (log params per curve)
# through a linear design matrix per curve, phi = design @ theta.


@dataclass
class _Curve:
    run_id: str
    steps: np.ndarray
    log_loss: np.ndarray
    terms: _Terms
    design: np.ndarray  # (7, n_theta)
    # The curve's share of the fit: 1, or 1/k for each of k replicates of one setting (seeds),
    # so that a setting weighs the same however many seeds it was run at.
    weight: float = 1.0


# A tie-breaker, not a belief: where the data leave (beta, gamma) flat (curves at one peak LR),
# prefer values near those Luo et al. fitted (about 0.5-0.6); it moves the objective by at most
# ~1e-4 per unit of log-distance squared, far below what any real misfit costs.
_PRIOR_LOG_MEAN = {5: math.log(0.6), 6: math.log(0.6)}  # local index -> log value
_PRIOR_WEIGHT = 1e-4


def _prior(theta: np.ndarray, curves: list[_Curve]) -> tuple[float, np.ndarray]:
    design = curves[0].design
    value, grad = 0.0, np.zeros_like(theta)
    for row, mean in _PRIOR_LOG_MEAN.items():
        gap = float(design[row] @ theta) - mean
        value += _PRIOR_WEIGHT * gap**2
        grad += 2.0 * _PRIOR_WEIGHT * gap * design[row]
    return value, grad


def _objective(theta: np.ndarray, curves: list[_Curve], delta: float, targets=None):
    total, grad = 0.0, np.zeros_like(theta)
    for i, cv in enumerate(curves):
        phi = cv.design @ theta
        loss, jac = _law(phi, cv.terms, grad=True)
        y = cv.log_loss if targets is None else targets[i]
        bad = ~(loss > 0)
        safe = np.where(bad, 1e-12, loss)
        r = np.log(safe) - y
        w = cv.weight / (loss.size * delta**2)
        total += w * float(np.sum(huber(delta, r))) + 1e6 * float(bad.sum())
        dr = np.clip(r, -delta, delta) / safe
        dr[bad] = 0.0
        grad += w * (cv.design.T @ (jac.T @ dr))
    if not math.isfinite(total):
        return 1e30, np.zeros_like(theta)
    prior, prior_grad = _prior(theta, curves)
    n = _total_weight(curves)
    return total / n + prior, grad / n + prior_grad


def _replicate_keys(run_ids, n_of, bt_of, schedules) -> dict[str, tuple]:
    """run_id -> its setting (size, batch, per-step LR schedule): the runs of one setting are
    replicates (seeds) of it."""
    return {rid: (n_of[rid], bt_of[rid], schedules[rid].tobytes()) for rid in run_ids}


def _total_weight(curves: list[_Curve]) -> float:
    """The number of curves, each replicate of a setting counted as 1/k of one."""
    return float(sum(cv.weight for cv in curves))


class _Fit:
    """What `_minimize` returns: the full theta, the objective (`_objective`'s value), whether
    the solver met its tolerance, and how many law evaluations it took."""

    def __init__(self, x, fun, success, nit, message):
        self.x, self.fun, self.success, self.nit, self.message = x, fun, success, nit, message


def _huber_rho(weights: np.ndarray, n_data: int, prior_weight: float):
    """least_squares' loss for residuals f = r / delta: weights[i] * rho(f^2) with rho the
    Huber function (rho(z) = z below 1, 2 sqrt(z) - 1 above), so that 0.5 * sum equals
    `_objective`'s data term; the prior's residuals (after the data) are plain squares."""

    def rho(z):
        out = np.empty((3, z.size))
        zd = z[:n_data]
        small = zd <= 1.0
        sq = np.sqrt(np.maximum(zd, 1e-300))
        out[0, :n_data] = weights * np.where(small, zd, 2.0 * sq - 1.0)
        out[1, :n_data] = weights * np.where(small, 1.0, 1.0 / sq)
        out[2, :n_data] = weights * np.where(small, 0.0, -0.5 / (sq * np.maximum(zd, 1e-300)))
        out[0, n_data:] = 2.0 * prior_weight * z[n_data:]
        out[1, n_data:] = 2.0 * prior_weight
        out[2, n_data:] = 0.0
        return out

    return rho


class _Problem:
    """`_objective` as robust least squares over the free terms of theta: residuals
    f = (log predicted - log measured) / delta per logged point, then the prior's two; with
    `rho`, 0.5 * sum(rho(f^2)) is `_objective`'s value wherever the law's losses are positive."""

    def __init__(self, theta0, curves, bounds, delta, targets=None):
        lo, hi = np.array(bounds, dtype=float).T
        self.lo, self.hi = lo, hi
        # Terms held fixed (equal bounds: a size exponent with one size, the peak-LR terms with
        # one LR) are left out of the search, so that they cannot change its path.
        self.free = lo < hi
        self.theta0 = np.clip(np.asarray(theta0, dtype=float), lo, hi)
        self.curves, self.delta = curves, delta
        self.ys = [cv.log_loss if targets is None else targets[i] for i, cv in enumerate(curves)]
        n_data = sum(y.size for y in self.ys)
        n = _total_weight(curves)
        weights = np.concatenate(
            [
                np.full(y.size, cv.weight / (y.size * n))
                for cv, y in zip(curves, self.ys, strict=True)
            ]
        )
        self.rho = _huber_rho(weights, n_data, _PRIOR_WEIGHT)
        self.prior_rows = np.array([curves[0].design[row] for row in _PRIOR_LOG_MEAN])
        self.prior_means = np.array(list(_PRIOR_LOG_MEAN.values()))
        self._last: tuple[np.ndarray, list] | None = None

    def full(self, x):
        theta = self.theta0.copy()
        theta[self.free] = x
        return theta

    def _evaluate(self, x) -> list[tuple[np.ndarray, np.ndarray]]:
        """The law and its derivatives on every curve at x. least_squares asks for the
        Jacobian at the point whose residuals it has just computed: both come from this one
        evaluation (the derivatives reuse the loss's intermediate terms)."""
        if self._last is None or not np.array_equal(self._last[0], x):
            theta = self.full(x)
            evals = [_law(cv.design @ theta, cv.terms, grad=True) for cv in self.curves]
            self._last = (np.array(x, copy=True), evals)
        return self._last[1]

    def residuals(self, x):
        out = []
        for (loss, _), y in zip(self._evaluate(x), self.ys, strict=True):
            ok = np.isfinite(loss) & (loss > 0)
            out.append((np.log(np.where(ok, loss, 1e-12)) - y) / self.delta)
        out.append(self.prior_rows @ self.full(x) - self.prior_means)
        return np.concatenate(out)

    def jacobian(self, x):
        rows = []
        for cv, (loss, jac) in zip(self.curves, self._evaluate(x), strict=True):
            ok = np.isfinite(loss) & (loss > 0)
            j = (jac / np.where(ok, loss, 1.0)[:, None]) @ cv.design[:, self.free] / self.delta
            j[~ok] = 0.0
            rows.append(np.nan_to_num(j, nan=0.0, posinf=0.0, neginf=0.0))
        rows.append(self.prior_rows[:, self.free])
        return np.vstack(rows)


def _minimize(theta0, curves, bounds, delta, targets=None, maxiter=1000, ftol=1e-8):
    """Minimize `_objective` over the free terms of theta: a robust (Huber) nonlinear least
    squares, solved by scipy's trust-region reflective method with the law's analytic Jacobian
    (Gauss-Newton steps: tens of evaluations where L-BFGS-B took thousands on the joint fit).
    maxiter bounds the law evaluations."""
    from scipy.optimize import least_squares

    problem = _Problem(theta0, curves, bounds, delta, targets)
    free, theta0 = problem.free, problem.theta0
    with np.errstate(all="ignore"):
        if not free.any():
            value = _objective(theta0, curves, delta, targets)[0]
            return _Fit(theta0, value, True, 0, "no free terms")
        res = least_squares(
            problem.residuals,
            theta0[free],
            jac=problem.jacobian,
            bounds=(problem.lo[free], problem.hi[free]),
            loss=problem.rho,
            method="trf",
            x_scale="jac",
            ftol=ftol,
            xtol=ftol,
            gtol=ftol,
            max_nfev=maxiter,
        )
        theta = problem.full(res.x)
        value = _objective(theta, curves, delta, targets)[0]
    # least_squares' ftol is relative to the cost, which an exact fit (noiseless curves) drives
    # to zero without meeting it; an objective below ftol itself counts as converged, as it did
    # for L-BFGS-B, whose ftol is absolute below 1.
    converged = res.status > 0 or value <= ftol
    return _Fit(theta, value, bool(converged), int(res.nfev), res.message)


def _fit_theta(starts, curves, bounds, delta):
    best, n_converged = None, 0
    for theta0 in starts:
        # Clips the start into the bounds; a start that has not converged in 300 evaluations
        # (most take 20-150) competes with its objective so far.
        res = _minimize(theta0, curves, bounds, delta, maxiter=300)
        n_converged += bool(res.success)
        if best is None or res.fun < best.fun:
            best = res
    # Polish the best one with tighter tolerances, since the flat directions (gamma, C) need it.
    polished = _minimize(best.x, curves, bounds, delta, maxiter=1000, ftol=1e-12)
    if polished.fun <= best.fun:
        n_converged += bool(polished.success)
        best = polished
    if n_converged == 0:
        warnings.warn(
            f"trajectory fit did not converge from any of {len(starts)} starts: {best.message}",
            TrajectoryFitWarning,
            stacklevel=3,
        )
    return best


# Below this largest C*x the annealing term's G(x) = 1 - (C*x + 1)^-beta is within ~5% of its
# linear limit C*beta*x at every fitted point: only the product B*C*beta is then fitted, and how
# fast the loss follows an LR drop (the saturation) is not (see `_annealing_saturation`).
_LINEAR_ANNEALING = 0.1


def _annealing_saturation(theta: np.ndarray, curves: list[_Curve]) -> float | None:
    """The largest C*x (x = LR^-gamma times the LR area since the drop) over the fitted
    curves' points and LR drops: how far into G's saturation the fit reaches. None when no
    fitted curve has an LR drop after its peak (the annealing term is then not fitted)."""
    best = None
    for cv in curves:
        drops = cv.terms.delta > 0
        if not drops.any():
            continue
        phi = cv.design @ theta
        c, gamma = math.exp(phi[4]), math.exp(phi[6])
        x = cv.terms.dist[:, drops] * np.exp(-gamma * cv.terms.log_lr[drops])
        best = max(best or 0.0, float(c * x.max()))
    return best


def _bootstrap(theta, curves, bounds, delta, n_boot, seed):
    """Residual bootstrap that keeps each curve's residuals in order (a random circular shift
    and sign flip per curve), because a curve's errors are correlated along its steps."""
    if n_boot <= 0:
        return np.empty((0, theta.size))
    rng = np.random.default_rng(seed)
    fitted = [
        np.log(np.maximum(_law(cv.design @ theta, cv.terms, False)[0], 1e-12)) for cv in curves
    ]
    resid = [cv.log_loss - f for cv, f in zip(curves, fitted, strict=True)]
    out, funs = [], []
    for _ in range(n_boot):
        targets = []
        for f, r in zip(fitted, resid, strict=True):
            shift = int(rng.integers(r.size))
            sign = 1.0 if rng.random() < 0.5 else -1.0
            targets.append(f + sign * np.roll(r, shift))
        # Restart each refit from a jittered optimum: along the flat directions of the law
        # (gamma, C, beta with few LR levels) the refits then spread as far as the data allows,
        # which is what the extrapolation to another schedule is uncertain about.
        lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
        start = np.clip(theta + rng.normal(0.0, 1.0, theta.size) * (hi > lo), lo, hi)
        res = _minimize(start, curves, bounds, delta, targets=targets, maxiter=300)
        out.append(res.x)
        funs.append(res.fun)
    # A refit stuck in a poor local minimum is the optimizer's failure, not data uncertainty.
    funs = np.array(funs)
    return np.array(out)[funs <= 2.0 * np.median(funs)]


def _residual_summary(theta, curves) -> dict[str, float]:
    rel = np.concatenate(
        [_law(cv.design @ theta, cv.terms, False)[0] / np.exp(cv.log_loss) - 1 for cv in curves]
    )
    return {
        "mean_abs_rel": float(np.mean(np.abs(rel))),
        "max_abs_rel": float(np.max(np.abs(rel))),
        "q95_abs_log": float(np.quantile(np.abs(np.log1p(rel)), 0.95)),
        "n_points": int(rel.size),
    }


def _heuristic_phi(curves_xy, rng: np.random.Generator | None = None) -> np.ndarray:
    """A starting point in log-params from the data: (steps' LR areas, losses, peak LRs, steps)."""
    s1 = np.concatenate([c[0] for c in curves_xy])
    loss = np.concatenate([c[1] for c in curves_xy])
    peak = float(np.mean([c[2] for c in curves_xy]))
    n_steps = float(np.mean([c[3] for c in curves_xy]))
    if rng is None:
        l0_frac, alpha, beta, gamma, c_mult, b_mult = 0.75, 0.5, 0.5, 0.5, 1.0, 1.0
    else:
        l0_frac = rng.uniform(0.3, 0.97)
        alpha = math.exp(rng.uniform(math.log(0.1), math.log(1.5)))
        beta = math.exp(rng.uniform(math.log(0.2), math.log(2.0)))
        gamma = rng.uniform(0.2, 0.9)
        c_mult = math.exp(rng.uniform(-4, 4))
        b_mult = math.exp(rng.uniform(-2, 2))
    l0 = l0_frac * float(loss.min())
    a = float(np.median(np.maximum(loss - l0, 1e-6) * s1**alpha))
    b = b_mult * 0.05 * float(loss.min()) / peak
    x0 = peak ** (1 - gamma) * 0.05 * n_steps
    c = c_mult / x0
    return np.log([l0, a, alpha, b, c, beta, gamma])


def _local_bounds(min_loss: float) -> list[tuple[float, float]]:
    return [
        # L0 is where the power law in the LR area tends at a constant LR; an LR decay takes
        # the loss below it (the LD term), so the lowest observed loss (a decayed run's end)
        # does not bound L0 from above: bounded at e times that loss.
        (math.log(1e-3 * min_loss), math.log(min_loss) + 1.0),
        (-60.0, 60.0),  # A
        (math.log(1e-3), math.log(5.0)),  # alpha
        (-60.0, 60.0),  # B
        (-60.0, 60.0),  # C
        (math.log(1e-3), math.log(10.0)),  # beta
        (math.log(1e-3), math.log(3.0)),  # gamma
    ]


def _loss_cap(curves, run_ids) -> float | None:
    """The highest finite loss logged by the fitted runs, warmup included: the law does not
    describe the first steps (A * S1^-alpha grows without bound as S1 -> 0), so predictions
    there are capped at it."""
    loss = curves.loc[curves["run_id"].astype(str).isin(set(run_ids)), "loss"]
    loss = loss.to_numpy(dtype=float)
    loss = loss[np.isfinite(loss)]
    return float(loss.max()) if loss.size else None


def _capped(cap: float | None, *arrays: np.ndarray):
    if cap is None:
        return arrays if len(arrays) > 1 else arrays[0]
    out = tuple(np.minimum(a, cap) for a in arrays)
    return out if len(out) > 1 else out[0]


def _not_fitted(obj) -> None:
    if getattr(obj, "theta_", None) is None:
        raise RuntimeError(
            f"this {type(obj).__name__} is not fitted yet: call fit(...) or from_dict(...) first"
        )


def _physical(preds_boot: np.ndarray) -> np.ndarray:
    """Which bootstrap refits give a finite, positive loss at every requested step.

    A refit can end on the annealing term's linear ridge (B without bound, C toward 0: the
    fitted runs fix only their product). Within the fitted runs it fits like the others; far
    beyond them its LD grows without bound and the loss goes negative. That is where the
    optimizer stopped on a ridge the data leave open, not a prediction, so such a refit is left
    out of the interval of this curve (and the caller says how many were)."""
    with np.errstate(invalid="ignore"):
        return np.all(np.isfinite(preds_boot) & (preds_boot > 0), axis=1)


def _interval(preds_boot: np.ndarray, pred: np.ndarray, resid_q: float, level: float):
    """Curve interval: bootstrap spread of the curve (params) combined in log space with the
    95% quantile of the fit's log residuals (what a single logged loss scatters by).

    Returns (low, high, left_out): left_out counts the refits with a non-positive loss
    somewhere on this curve, which the spread leaves out (see _physical)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    # The residual quantile is the 95% one; scale it to other levels as a normal quantile would.
    z = float(ndtri(0.5 + level / 2) / ndtri(0.975))
    keep = _physical(preds_boot)
    left_out = int(keep.size - keep.sum())
    preds_boot = preds_boot[keep]
    with np.errstate(all="ignore"):  # a non-positive prediction gives nan bounds, not warnings
        if preds_boot.shape[0] >= 2:
            tail = (1 - level) / 2
            log_boot = np.log(np.maximum(preds_boot, 1e-12))
            logp = np.log(pred)
            down = np.maximum(logp - np.quantile(log_boot, tail, axis=0), 0.0)
            up = np.maximum(np.quantile(log_boot, 1 - tail, axis=0) - logp, 0.0)
        else:
            down = up = np.zeros_like(pred)
        low, high = widen_in_log(pred, down, up, z * resid_q)
        return low, high, left_out


# --------------------------------------------------------------------------------------------
# one model size


class TrajectoryLaw:
    """Multi-power loss-curve law for one model size, fitted from logged losses and per-step LRs.

    fit(curves, lr_schedules): curves is a DataFrame (run_id, step, loss) of logged losses;
    lr_schedules maps each run_id to the LR of every optimizer step. predict(lr_schedule,
    steps=None) gives the loss after each step (default: every step 1..len(lr_schedule)).
    """

    def __init__(
        self,
        *,
        n_starts: int = 6,
        n_bootstrap: int = 20,
        huber_delta: float = 1e-2,
        max_segments: int = 200,
        skip_frac: float = SKIP_FRAC,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= skip_frac < 1.0:
            raise ValueError(f"skip_frac must be in [0, 1), got {skip_frac!r}")
        self.n_starts = n_starts
        self.skip_frac = skip_frac
        self.n_bootstrap = n_bootstrap
        self.huber_delta = huber_delta
        self.max_segments = max_segments
        self.seed = seed
        self._reset()

    def _fit_theta_and_bootstrap(self, starts, fits, bounds) -> None:
        """The fit shared by both laws: best start, then bootstrap refits and residuals."""
        res = _fit_theta(starts, fits, bounds, self.huber_delta)
        self.theta_ = np.asarray(res.x, dtype=np.float64)
        self.converged_ = bool(res.success)
        self.n_iter_ = int(res.nit)
        self.objective_ = float(res.fun)
        self.theta_boot_ = _bootstrap(
            self.theta_, fits, bounds, self.huber_delta, self.n_bootstrap, self.seed + 1
        )
        self.residuals_ = _residual_summary(self.theta_, fits)
        self.annealing_saturation_ = _annealing_saturation(self.theta_, fits)
        if (
            self.annealing_saturation_ is not None
            and self.annealing_saturation_ < _LINEAR_ANNEALING
        ):
            b, c = (float(np.exp(fits[0].design[i] @ self.theta_)) for i in (3, 4))
            warnings.warn(
                "trajectory fit: the annealing term ended in its linear limit (C*x at most "
                f"{self.annealing_saturation_:.2g} over the fitted LR drops; B = {b:.3g}, "
                f"C = {c:.3g}): the fitted schedules do not fix how fast the loss follows an "
                "LR drop, so predictions for schedules with sharp drops (WSD, step) are "
                "unreliable; fit a run with such a drop too",
                TrajectoryFitWarning,
                stacklevel=3,
            )

    def _reset(self) -> None:
        self.theta_: np.ndarray | None = None
        self.annealing_saturation_: float | None = None  # not stored in law files

    # fitted views
    @property
    def params_(self) -> dict[str, float]:
        _not_fitted(self)
        return dict(zip(PARAM_NAMES, np.exp(self.theta_).tolist(), strict=True))

    @property
    def params_ci_(self) -> dict[str, tuple[float, float]]:
        _not_fitted(self)
        if self.theta_boot_.shape[0] < 2:
            return {n: (v, v) for n, v in self.params_.items()}
        q = np.quantile(self.theta_boot_, [0.025, 0.975], axis=0)
        lo, hi = np.exp(contain_point(q, self.theta_))
        return {n: (float(a), float(b)) for n, a, b in zip(PARAM_NAMES, lo, hi, strict=True)}

    def fit(self, curves, lr_schedules: dict[Any, Any]) -> TrajectoryLaw:
        data = _collect(
            curves,
            lr_schedules,
            self.max_segments,
            design=lambda rid: np.eye(_N_LOCAL),
            skip_frac=self.skip_frac,
        )
        if not data:
            raise ValueError("curves: no logged loss after the LR warmup to fit")
        rng = np.random.default_rng(self.seed)
        xy = [(cv.terms.s1, np.exp(cv.log_loss), peak, n) for cv, peak, n in data]
        fits = [cv for cv, _, _ in data]
        starts = [_heuristic_phi(xy)] + [_heuristic_phi(xy, rng) for _ in range(self.n_starts - 1)]
        min_loss = float(min(np.exp(cv.log_loss).min() for cv in fits))
        bounds = _local_bounds(min_loss)
        self._fit_theta_and_bootstrap(starts, fits, bounds)
        self.loss_cap_ = _loss_cap(curves, [cv.run_id for cv in fits])
        self.n_runs_ = len(fits)
        return self

    def predict(
        self,
        lr_schedule: Any,
        steps: Any = None,
        *,
        return_interval: bool = False,
        level: float = 0.95,
    ):
        """Loss after each of `steps` optimizer updates (default: after every step).

        With return_interval=True, returns (loss, low, high); a bootstrap refit whose loss goes
        non-positive at one of these steps is left out of (low, high) (see _physical)."""
        _not_fitted(self)
        lrs = _as_schedule(lr_schedule, "lr_schedule")
        steps = np.arange(1, lrs.size + 1) if steps is None else _as_steps(steps, lrs.size)
        if not return_interval:
            return _capped(self.loss_cap_, _predict_phi(self.theta_, lrs, steps, self.max_segments))
        phis = np.array([self.theta_, *self.theta_boot_])
        preds = _predict_phis(phis, lrs, steps, self.max_segments)
        pred = preds[0]
        lo, hi, _ = _interval(
            preds[1:].reshape(-1, steps.size), pred, self.residuals_["q95_abs_log"], level
        )
        return _capped(self.loss_cap_, pred, lo, hi)

    def predict_interval(self, lr_schedule: Any, steps: Any = None, level: float = 0.95):
        """(loss, low, high) at each step; see predict."""
        return self.predict(lr_schedule, steps, return_interval=True, level=level)

    def to_dict(self) -> dict[str, Any]:
        _not_fitted(self)
        return {
            "kind": "TrajectoryLaw",
            "format_version": FORMAT_VERSION,
            "form": FORM,
            "params": self.params_,
            "params_ci": {k: list(v) for k, v in self.params_ci_.items()},
            "theta": self.theta_.tolist(),
            "theta_boot": self.theta_boot_.tolist(),
            "residuals": dict(self.residuals_),
            "loss_cap": self.loss_cap_,
            "n_runs": self.n_runs_,
            "settings": _settings(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrajectoryLaw:
        _check_dict(d, "TrajectoryLaw", ("theta", "theta_boot", "residuals", "settings"))
        law = cls(**_settings_from(d))
        law.theta_ = _vector(d, "theta", _N_LOCAL)
        law.theta_boot_ = _matrix(d, "theta_boot", _N_LOCAL)
        law.residuals_ = dict(d["residuals"])
        cap = d.get("loss_cap")
        law.loss_cap_ = None if cap is None else _positive(cap, "loss_cap")
        law.n_runs_ = int(d.get("n_runs", 0))
        return law


# --------------------------------------------------------------------------------------------
# across sizes


class CrossSizeTrajectoryLaw:
    """The multi-power law with size-dependent parameters, fitted jointly over a sweep's sizes:

        L0 = l0 * (N/N_ref)^q_L0 * exp(s_L0 * u + s2_L0 * u^2 + t_L0 * u * v),
        A  = a * (N/N_ref)^p_A * (Bt/Bt_ref)^r_A * exp(s_A * u),
        B  = b * (N/N_ref)^p_B * exp(s_B * u + t_B * u * v),   alpha, C, beta, gamma shared,

    with u = log(peak LR / LR_ref) and v = log(Bt / Bt_ref). The peak-LR terms are there
    because the multi-power law's own LR dependence (through the LR area S1 and the LR drops)
    holds at one peak LR but not across a sweep's LR grid: above the optimal LR a run's loss
    is higher at every step, which no power law in S1 gives (more LR area always means a lower
    loss). Without them a fit on runs at LRs 27x apart is a compromise that fits none of them.
    The u*v terms let the LR dependence move with the batch size: the optimal LR grows with
    the batch (about as B^0.5 in the reference sweep), so a high LR that hurts at a small
    batch helps at a large one.

    The batch exponent r_A is fitted only when the runs use more than one batch size, the
    peak-LR terms only when they use more than one peak LR (the u*v terms only when both vary);
    with one size only, the size exponents are held at 0 (the curve then does not change with
    N).
    """

    THETA_NAMES = (
        "l0",
        "q_L0",
        "a",
        "p_A",
        "r_A",
        "b",
        "p_B",
        "alpha",
        "C",
        "beta",
        "gamma",
        "s_L0",
        "s2_L0",
        "s_A",
        "s_B",
        "t_L0",
        "t_B",
    )
    # How many theta an older file has, by format_version (the newer terms are 0 there).
    _N_THETA_OLD = {1: 11, 2: 15}

    __init__ = TrajectoryLaw.__init__  # the same settings
    _fit_theta_and_bootstrap = TrajectoryLaw._fit_theta_and_bootstrap

    def _reset(self) -> None:
        self.theta_: np.ndarray | None = None
        self.lr_ref_: float | None = None
        self.residual_map_: ResidualMap | None = None
        self.annealing_saturation_: float | None = None  # not stored in law files

    def _design(
        self, n_params: float, batch_tokens: float, peak_lr: float | None = None
    ) -> np.ndarray:
        z = math.log(n_params / self.n_ref_)
        zb = math.log(batch_tokens / self.batch_ref_) if self.batch_ref_ else 0.0
        lr_ref = getattr(self, "lr_ref_", None)
        u = math.log(peak_lr / lr_ref) if lr_ref and peak_lr else 0.0
        m = np.zeros((_N_LOCAL, len(self.THETA_NAMES)))
        m[0, 0], m[0, 1], m[0, 11], m[0, 12], m[0, 15] = 1.0, z, u, u * u, u * zb  # log L0
        m[1, 2], m[1, 3], m[1, 4], m[1, 13] = 1.0, z, zb, u  # log A
        m[2, 7] = 1.0  # log alpha
        m[3, 5], m[3, 6], m[3, 14], m[3, 16] = 1.0, z, u, u * zb  # log B
        m[4, 8], m[5, 9], m[6, 10] = 1.0, 1.0, 1.0  # log C, beta, gamma
        return m

    @property
    def params_(self) -> dict[str, float]:
        _not_fitted(self)
        th = dict(zip(self.THETA_NAMES, self.theta_.tolist(), strict=True))
        for k in ("l0", "a", "b", "alpha", "C", "beta", "gamma"):
            th[k] = math.exp(th[k])
        th["lr_ref"] = getattr(self, "lr_ref_", None)
        return th

    @property
    def params_ci_(self) -> dict[str, tuple[float, float]]:
        _not_fitted(self)
        boot = self.theta_boot_ if self.theta_boot_.shape[0] >= 2 else self.theta_[None, :]
        lo, hi = contain_point(np.quantile(boot, [0.025, 0.975], axis=0), self.theta_)
        out = {}
        for i, k in enumerate(self.THETA_NAMES):
            f = math.exp if k in ("l0", "a", "b", "alpha", "C", "beta", "gamma") else float
            out[k] = (f(float(lo[i])), f(float(hi[i])))
        return out

    def params_at(
        self, n_params: float, batch_tokens: float | None = None, peak_lr: float | None = None
    ) -> dict[str, float]:
        """The single-size parameters (L0, A, alpha, B, C, beta, gamma) at this size (and peak
        LR; default the reference LR, the geometric mean of the fitted runs')."""
        _not_fitted(self)
        n = _positive(n_params, "n_params")
        bt = self._batch(batch_tokens)
        lr = None if peak_lr is None else _positive(peak_lr, "peak_lr")
        return dict(
            zip(PARAM_NAMES, np.exp(self._design(n, bt, lr) @ self.theta_).tolist(), strict=True)
        )

    def _batch(self, batch_tokens) -> float:
        if batch_tokens is None:
            return self.batch_ref_ or 1.0
        return _positive(batch_tokens, "batch_tokens")

    def fit(self, runs, curves) -> CrossSizeTrajectoryLaw:
        """Fit from the runs table (contract 1) and the curves table (run_id, step, loss).

        Diverged, pruned and failed runs, and runs without logged losses, are skipped; how
        many is in `excluded_`."""
        runs_ok, self.excluded_ = _usable_runs(runs)
        schedules = {rid: lr_schedule_of_run(row) for rid, row in runs_ok.iterrows()}
        n_of = runs_ok["n_params"].astype(float).to_dict()
        bt_of = runs_ok["batch_tokens"].astype(float).to_dict()
        sizes = np.unique(list(n_of.values()))
        batches = np.unique(list(bt_of.values()))
        self.n_ref_ = float(np.exp(np.mean(np.log(sizes)))) if sizes.size else 1.0
        self.batch_ref_ = float(np.exp(np.mean(np.log(batches)))) if batches.size > 1 else None
        self.fit_batch_ = batches.size > 1
        self.single_size_ = sizes.size < 2
        peak_of = {rid: float(lrs.max()) for rid, lrs in schedules.items()}
        peaks = np.array(sorted(peak_of.values()))
        # Peak LRs within 5% of each other count as one (rounded grid values).
        self.fit_lr_ = peaks.size > 1 and peaks[-1] / peaks[0] > 1.05
        self.lr_ref_ = float(np.exp(np.mean(np.log(peaks)))) if self.fit_lr_ else None
        curves = _as_frame(curves)
        keep = curves["run_id"].astype(str).isin(set(schedules))
        no_curve = set(schedules) - set(curves.loc[keep, "run_id"].astype(str))
        self.excluded_["no_curve"] = len(no_curve)
        schedules = {k: v for k, v in schedules.items() if k not in no_curve}
        if no_curve and not schedules:
            ids = sorted(set(curves["run_id"].astype(str)))
            raise ValueError(
                f"runs/curves: no run_id of the curves table is a finished run of the runs "
                f"table ({len(runs_ok)} finished runs, e.g. {str(runs_ok.index[0])!r}; the "
                f"curves name {len(ids)} run(s), e.g. {ids[0] if ids else None!r}): are they "
                "from the same sweep?"
            )
        data = _collect(
            curves[keep],
            schedules,
            self.max_segments,
            design=lambda rid: self._design(n_of[rid], bt_of[rid], peak_of[rid]),
            skip_frac=self.skip_frac,
        )
        if not data:
            raise ValueError("runs/curves: no finished run with logged losses after warmup")
        # Replicates (runs of one size, batch and per-step LR schedule at several seeds) share
        # their setting's weight: a setting counts once however many seeds it was run at, so a
        # sweep part-way through adding seeds is not pulled toward the settings done first.
        setting = _replicate_keys([cv.run_id for cv, _, _ in data], n_of, bt_of, schedules)
        k = Counter(setting.values())
        data = [(replace(cv, weight=1.0 / k[setting[cv.run_id]]), peak, n) for cv, peak, n in data]
        fits = [cv for cv, _, _ in data]
        self.run_ids_ = [cv.run_id for cv in fits]
        bounds = self._bounds(fits)
        starts = self._starts(data, bounds)
        self._fit_theta_and_bootstrap(starts, fits, bounds)
        self.residual_map_ = self._residual_map(fits, schedules, n_of, bt_of, setting)
        self.loss_cap_ = _loss_cap(curves, self.run_ids_)
        used = runs_ok.loc[self.run_ids_]
        steps_used = [int(s) for s in used["steps"]] if "steps" in used else [0]
        self.fitted_range_ = {
            "n_params": [float(used["n_params"].min()), float(used["n_params"].max())],
            "batch_tokens": [float(used["batch_tokens"].min()), float(used["batch_tokens"].max())],
            "lr": [float(used["lr"].min()), float(used["lr"].max())],
            "steps": [min(steps_used), max(steps_used)],
            "schedules": sorted({str(s) for s in used.get("schedule", [])}),
        }
        self.n_runs_ = len(fits)
        return self

    def _residual_map(self, fits, schedules, n_of, bt_of, setting) -> ResidualMap | None:
        """Each fitted setting's log residual along its progress (see scaling._residual_map).
        Replicates (one size, batch and per-step LR schedule at several seeds) make one entry,
        the mean of their residuals: a setting counts once in the map's kernel average, as it
        does in the fit, however many seeds ran it (setting: run_id -> its setting's key)."""
        coords, profiles, resid, where = [], [], [], {}
        for cv in fits:
            lrs = schedules[cv.run_id]
            pred = _predict_phi(cv.design @ self.theta_, lrs, cv.steps, self.max_segments)
            with np.errstate(all="ignore"):
                r = cv.log_loss - np.log(pred)
            if not np.all(np.isfinite(r)):
                continue  # the law gives no positive loss here: nothing to correct against
            bt = bt_of[cv.run_id]
            on_grid = residual_on_grid(cv.steps, lrs.size, r)
            key = setting[cv.run_id]
            if key in where:
                resid[where[key]].append(on_grid)
                continue
            where[key] = len(coords)
            coords.append(
                [
                    math.log(n_of[cv.run_id]),
                    math.log(lrs.max()),
                    math.log(bt),
                    math.log(lrs.size * bt),
                ]
            )
            profiles.append(residual_profile(lrs))
            resid.append([on_grid])
        resid = [np.mean(rs, axis=0) for rs in resid]
        return ResidualMap(coords, profiles, resid) if coords else None

    def _bounds(self, fits: list[_Curve]) -> list[tuple[float, float]]:
        min_loss = float(min(np.exp(cv.log_loss).min() for cv in fits))
        lb = _local_bounds(min_loss)
        free = (-3.0, 3.0)
        zero = (0.0, 0.0)
        size_exp = zero if self.single_size_ else free
        return [
            lb[0],
            size_exp,
            lb[1],
            size_exp,
            free if self.fit_batch_ else zero,
            lb[3],
            size_exp,
            lb[2],
            lb[4],
            lb[5],
            lb[6],
            (-1.0, 1.0) if self.fit_lr_ else zero,  # s_L0
            (-1.0, 1.0) if self.fit_lr_ else zero,  # s2_L0
            free if self.fit_lr_ else zero,  # s_A
            free if self.fit_lr_ else zero,  # s_B
            (-1.0, 1.0) if self.fit_lr_ and self.fit_batch_ else zero,  # t_L0
            free if self.fit_lr_ and self.fit_batch_ else zero,  # t_B
        ]

    def _starts(self, data, bounds) -> list[np.ndarray]:
        """Per-size fits of the single-size law, regressed on log N; the same with the annealing
        term restarted from the heuristic; then perturbations of both."""
        rng = np.random.default_rng(self.seed)
        by_size: dict[float, list] = {}
        for cv, peak, n in data:
            z = cv.design[0, 1]
            by_size.setdefault(z, []).append((cv, peak, n))
        zs, phis = [], []
        for z, group in sorted(by_size.items()):
            xy = [(cv.terms.s1, np.exp(cv.log_loss), peak, n) for cv, peak, n in group]
            local = [
                _Curve(cv.run_id, cv.steps, cv.log_loss, cv.terms, np.eye(_N_LOCAL))
                for cv, _, _ in group
            ]
            min_loss = float(min(np.exp(cv.log_loss).min() for cv in local))
            st = [_heuristic_phi(xy)] + [
                _heuristic_phi(xy, rng) for _ in range(max(1, self.n_starts // 2))
            ]
            res = _fit_theta(st, local, _local_bounds(min_loss), self.huber_delta)
            zs.append(z)
            phis.append(res.x)
        zs, phis = np.array(zs), np.array(phis)

        def line(col):
            if zs.size < 2:
                return float(phis[0, col]), 0.0
            slope, icpt = np.polyfit(zs, phis[:, col], 1)
            return float(icpt), float(slope)

        l0, q = line(0)
        a, p = line(1)
        b, pb = line(3)
        shared = phis[:, [2, 4, 5, 6]].mean(axis=0)
        base = np.array([l0, q, a, p, 0.0, b, pb, *shared, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        # The peak-LR terms of L0 move every loss; jitter them less than the rest.
        scale = np.array([0.3] * 11 + [0.02, 0.01, 0.3, 0.3, 0.01, 0.3])
        starts = [base]
        # Per-size fits over mixed peak LRs often leave the annealing term at zero (B -> 0: the
        # LR area S1 absorbs the decay), and a line through such values starts the joint fit
        # where it cannot recover. A second family starts the annealing term where the
        # heuristic puts it for all runs together, scaling like the A term with N.
        xy = [(cv.terms.s1, np.exp(cv.log_loss), peak, n) for cv, peak, n in data]
        h = _heuristic_phi(xy)
        alt = base.copy()
        alt[5], alt[6], alt[8], alt[9], alt[10] = h[3], p, h[4], h[5], h[6]
        starts.append(alt)
        for k in range(self.n_starts - 2):
            centre = base if k % 2 else alt
            starts.append(centre + rng.normal(0.0, 1.0, size=base.size) * scale)
        return starts

    def predict(
        self,
        n_params: float,
        lr_schedule: Any,
        batch_tokens: float | None = None,
        steps: Any = None,
        *,
        return_interval: bool = False,
        level: float = 0.95,
        corrected: bool = True,
    ):
        """Loss after each of `steps` updates (default every step) for a model of n_params
        trained with this per-step LR (and batch size). With return_interval=True, returns
        (loss, low, high); a bootstrap refit whose loss goes non-positive at one of these steps
        is left out of (low, high), as in `trajectory` (whose attrs say how many were).

        corrected: multiply by the law's own misfit on the fitted runs nearest this query (the
        residual map; see scaling._residual_map). False gives the smooth law alone."""
        _not_fitted(self)
        n = _positive(n_params, "n_params")
        bt = self._batch(batch_tokens)
        lrs = _as_schedule(lr_schedule, "lr_schedule")
        steps = np.arange(1, lrs.size + 1) if steps is None else _as_steps(steps, lrs.size)
        sched = _Blocks.per_step(lrs)
        reading = self._reading(n, sched, bt, corrected)
        pred, factor, bounds = self._predict_parts(
            n, sched, bt, steps, return_interval, level, reading
        )
        if not return_interval:
            return _capped(self.loss_cap_, pred * factor)
        lo, hi, _ = bounds
        return _capped(self.loss_cap_, pred * factor, lo * factor, hi * factor)

    def _reading(self, n: float, sched: _Blocks, bt: float, corrected: bool):
        """The residual map's reading of this query (ResidualMap.read), or None: no map, or the
        law alone asked for."""
        if not corrected or self.residual_map_ is None:
            return None
        return self.residual_map_.read(n, sched.lrs, bt, n_steps=sched.n_steps, peak=sched.peak)

    def _predict_parts(self, n, sched: _Blocks, bt, idx, interval: bool, level: float, reading):
        """(the smooth law, the residual map's factor, (low, high, refits left out) of the law
        or None; see _interval), uncapped, for checked inputs, at entries idx (1-based) of the
        schedule; reading: _reading's."""
        design = self._design(n, bt, sched.peak)
        thetas = [self.theta_, *(self.theta_boot_ if interval else [])]
        phis = np.array([design @ th for th in thetas])
        preds = _predict_phis(phis, sched.lrs, idx, self.max_segments, sched.weights)
        pred = preds[0]
        factor = 1.0 if reading is None else np.exp(reading.log_correction(idx))
        if not interval:
            return pred, factor, None
        bounds = _interval(
            preds[1:].reshape(-1, idx.size), pred, self.residuals_["q95_abs_log"], level
        )
        return pred, factor, bounds

    def predict_interval(
        self, n_params, lr_schedule, batch_tokens=None, steps=None, level=0.95, corrected=True
    ):
        return self.predict(
            n_params,
            lr_schedule,
            batch_tokens,
            steps,
            return_interval=True,
            level=level,
            corrected=corrected,
        )

    def trajectory(
        self,
        n_params: float,
        tokens: float,
        *,
        lr: float | None = None,
        batch_tokens: float | None = None,
        schedule: Any = "cosine",
        warmup: float | None = None,
        points: int = 200,
        level: float = 0.95,
        corrected: bool = True,
    ):
        """The curve of a run of n_params on `tokens` tokens, as a DataFrame with columns step,
        tokens, lr, loss, loss_low, loss_high at `points` steps spread over the run.

        schedule: a ScheduleSpec or a schedule name; warmup: steps (int >= 1) or a fraction of
        the run (0 <= float < 1), overriding the spec's. lr and batch_tokens default to the
        geometric means of the fitted runs' (pass the recommended ones). corrected: see
        predict."""
        import pandas as pd

        from .schedules import ScheduleSpec

        _not_fitted(self)
        n = _positive(n_params, "n_params")
        d = _positive(tokens, "tokens")
        lr = self._default("lr") if lr is None else _positive(lr, "lr")
        bt = self._default("batch_tokens") if batch_tokens is None else batch_tokens
        bt = _positive(bt, "batch_tokens")
        check_batch_fits(bt, d)
        if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
            raise ValueError(f"points must be an integer >= 2, got {points!r}")
        spec = schedule if isinstance(schedule, ScheduleSpec) else ScheduleSpec(name=str(schedule))
        if warmup is not None:
            w = float(warmup)
            if not math.isfinite(w) or w < 0:
                raise ValueError(
                    f"warmup must be a step count or a fraction in [0, 1), got {warmup!r}"
                )
            spec_d = spec.to_dict()
            if w < 1:
                spec_d.update(warmup_steps=None, warmup_frac=w)
            else:
                spec_d.update(warmup_steps=int(round(w)))
            spec = ScheduleSpec.from_dict(spec_d)
        n_steps = max(1, round(d / bt))
        if warmup is not None and float(warmup) >= 1 and int(round(float(warmup))) >= n_steps:
            raise ValueError(
                f"warmup must be shorter than the run: {warmup!r} steps, the run is {n_steps} "
                f"steps ({d:g} tokens at {bt:g} per step)"
            )
        sched = _Blocks.of(spec, lr, n_steps)
        idx, steps = sched.at(points)
        reading = self._reading(n, sched, bt, corrected)
        pred, factor, (lo, hi, left_out) = self._predict_parts(
            n, sched, bt, idx, True, level, reading
        )
        loss, lo, hi, alone = _capped(self.loss_cap_, pred * factor, lo * factor, hi * factor, pred)
        frame = pd.DataFrame(
            {
                "step": steps,
                "tokens": steps * bt,
                "lr": spec.lr_at(lr, n_steps, steps - 1),
                "loss": loss,
                "loss_low": lo,
                "loss_high": hi,
                "loss_law_alone": alone,
            }
        )
        frame.attrs["residual_correction"] = self._support(reading, corrected)
        # The bootstrap refits behind loss_low / loss_high, and how many of them the interval
        # leaves out because their loss goes non-positive on this run (see _physical).
        frame.attrs["interval"] = {
            "level": float(level),
            "refits": len(self.theta_boot_),
            "left_out": left_out,
        }
        return frame

    def correction_support(
        self, n_params: float, lr_schedule: Any, batch_tokens: float | None = None, corrected=True
    ) -> dict[str, Any]:
        """What the residual map does to this query: `applied` (whether a correction was
        asked for and the law has a map), `support` (0: the law alone, 1: the misfit of like
        fitted runs in full; see ResidualMap.support), the sizes it was read at and how many
        fitted runs carry it."""
        _not_fitted(self)
        n = _positive(n_params, "n_params")
        lrs = _as_schedule(lr_schedule, "lr_schedule")
        sched = _Blocks.per_step(lrs)
        bt = self._batch(batch_tokens)
        return self._support(self._reading(n, sched, bt, corrected), corrected)

    @staticmethod
    def _support(reading, corrected: bool) -> dict[str, Any]:
        if reading is None:
            why = "no residual map in this law" if corrected else "corrected=False"
            return {
                "applied": False,
                "support": 0.0,
                "material": False,
                "n_params": [],
                "runs": 0,
                "reason": why,
            }
        return {"applied": True, **reading.support(), "reason": None}

    def _default(self, key: str) -> float:
        lo, hi = self.fitted_range_.get(key, [None, None])
        if lo is None:
            raise ValueError(f"{key} must be given: the law does not record the fitted {key}")
        return math.sqrt(float(lo) * float(hi))

    def to_dict(self) -> dict[str, Any]:
        _not_fitted(self)
        return {
            "kind": "CrossSizeTrajectoryLaw",
            "format_version": FORMAT_VERSION,
            "form": FORM + " with parameters as power laws of n_params (and batch_tokens)",
            "theta_names": list(self.THETA_NAMES),
            "params": self.params_,
            "params_ci": {k: list(v) for k, v in self.params_ci_.items()},
            "theta": self.theta_.tolist(),
            "theta_boot": self.theta_boot_.tolist(),
            "n_ref": self.n_ref_,
            "batch_ref": self.batch_ref_,
            "lr_ref": self.lr_ref_,
            "residuals": dict(self.residuals_),
            "residual_map": None if self.residual_map_ is None else self.residual_map_.to_dict(),
            "loss_cap": self.loss_cap_,
            "fitted_range": self.fitted_range_,
            "excluded": dict(self.excluded_),
            "n_runs": self.n_runs_,
            "settings": _settings(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrossSizeTrajectoryLaw:
        _check_dict(
            d, "CrossSizeTrajectoryLaw", ("theta", "theta_boot", "n_ref", "residuals", "settings")
        )
        law = cls(**_settings_from(d))
        k = len(cls.THETA_NAMES)
        # An older file lacks the newer terms: they are 0 (the law it was fitted as).
        n_old = cls._N_THETA_OLD.get(d.get("format_version", FORMAT_VERSION))
        if n_old is not None and len(d.get("theta") or []) == n_old:
            law.theta_ = np.pad(_vector(d, "theta", n_old), (0, k - n_old))
            boot = _matrix(d, "theta_boot", n_old)
            law.theta_boot_ = np.pad(boot, ((0, 0), (0, k - n_old)))
        else:
            law.theta_ = _vector(d, "theta", k)
            law.theta_boot_ = _matrix(d, "theta_boot", k)
        law.lr_ref_ = None if d.get("lr_ref") is None else _positive(d["lr_ref"], "lr_ref")
        law.n_ref_ = _positive(d["n_ref"], "n_ref")
        law.batch_ref_ = (
            None if d.get("batch_ref") is None else _positive(d["batch_ref"], "batch_ref")
        )
        law.residuals_ = dict(d["residuals"])
        rmap = d.get("residual_map")
        law.residual_map_ = None if rmap is None else ResidualMap.from_dict(rmap)
        cap = d.get("loss_cap")
        law.loss_cap_ = None if cap is None else _positive(cap, "loss_cap")
        law.fitted_range_ = dict(d.get("fitted_range", {}))
        law.excluded_ = dict(d.get("excluded", {}))
        law.n_runs_ = int(d.get("n_runs", 0))
        return law


# --------------------------------------------------------------------------------------------
# tables


def _as_frame(curves):
    import pandas as pd

    if not isinstance(curves, pd.DataFrame):
        raise ValueError(f"curves must be a pandas DataFrame, got {type(curves).__name__}")
    missing = {"run_id", "step", "loss"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves is missing column(s): {', '.join(sorted(missing))}")
    return curves


def fitted_steps(steps: np.ndarray, lrs: np.ndarray, skip_frac: float) -> np.ndarray:
    """Which logged steps a fit uses: after the LR peak (warmup done) and past the first
    skip_frac of the run, where short runs still show the fast initial transient that no
    power law in the LR area describes."""
    steps = np.asarray(steps)
    return (steps > int(np.argmax(lrs))) & (steps >= skip_frac * lrs.size) & (steps <= lrs.size)


def _collect(curves, lr_schedules, max_segments, design, skip_frac):
    """One _Curve per run with logged finite losses after the LR peak; returns (curve, peak LR,
    n_steps) triples."""
    curves = _as_frame(curves)
    if not isinstance(lr_schedules, dict):
        raise ValueError("lr_schedules must be a dict {run_id: per-step LR array}")
    schedules = {str(k): v for k, v in lr_schedules.items()}
    out = []
    for rid, grp in curves.groupby(curves["run_id"].astype(str), sort=True):
        if rid not in schedules:
            raise ValueError(f"lr_schedules has no entry for run_id {rid!r} (curves has it)")
        lrs = _as_schedule(schedules[rid], f"lr_schedules[{rid!r}]")
        grp = grp[np.isfinite(grp["loss"].to_numpy(dtype=float))]
        grp = grp[grp["loss"].to_numpy(dtype=float) > 0].sort_values("step")
        if grp.empty:
            continue
        steps = _as_steps(grp["step"].to_numpy(), lrs.size, f"curves.step of run {rid!r}")
        after = fitted_steps(steps, lrs, skip_frac)
        if not after.any():
            continue
        steps = steps[after]
        loss = grp["loss"].to_numpy(dtype=float)[after]
        terms = _terms(lrs, steps, max_segments)
        out.append(
            (
                _Curve(rid, steps, np.log(loss), terms, design(rid)),
                float(lrs.max()),
                float(lrs.size),
            )
        )
    # Order by content, not by run_id: a sweep run again numbers its trials differently, and
    # the seeded starts and bootstrap must not depend on the names (same runs, same fit).
    out.sort(
        key=lambda item: (
            item[0].design.tobytes(),
            item[1],
            item[2],
            item[0].steps.tobytes(),
            item[0].log_loss.tobytes(),
        )
    )
    return out


def lr_schedule_of_run(row) -> np.ndarray:
    """The LR at every optimizer step of one runs-table row (contract 1)."""
    from .schedules import ScheduleSpec

    steps = int(row["steps"])
    sj = row.get("schedule_json") if hasattr(row, "get") else None
    if isinstance(sj, str) and sj.strip():
        spec = ScheduleSpec.from_json(sj)
    else:
        name = row.get("schedule", "cosine") if hasattr(row, "get") else "cosine"
        warm = row.get("warmup_steps") if hasattr(row, "get") else None
        warm = None if warm is None or not np.isfinite(warm) else int(warm)
        spec = ScheduleSpec(name=str(name), warmup_steps=warm)
    return spec.lrs(float(row["lr"]), steps)


def _usable_runs(runs):
    import pandas as pd

    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    need = {"run_id", "n_params", "lr", "batch_tokens", "steps"}
    missing = need - set(runs.columns)
    if missing:
        raise ValueError(f"runs is missing column(s): {', '.join(sorted(missing))}")
    if "schedule_json" not in runs.columns and "schedule" not in runs.columns:
        raise ValueError("runs needs a schedule_json (or schedule) column to rebuild per-step LRs")
    runs = runs.copy()
    runs["run_id"] = runs["run_id"].astype(str)
    n = len(runs)

    def flag(col):
        if col not in runs.columns:
            return pd.Series(False, index=runs.index)
        return runs[col].map(lambda v: str(v).strip().lower() in {"true", "1", "1.0"}).astype(bool)

    diverged = flag("diverged")
    pruned = flag("pruned") & ~diverged
    if "state" in runs.columns:
        state = runs["state"].astype(str)
        diverged |= state.eq("diverged")
        pruned |= state.eq("pruned") & ~diverged
        failed = ~state.isin(["complete", "diverged", "pruned"]) & ~diverged & ~pruned
    else:
        failed = pd.Series(False, index=runs.index)
    ok = ~(diverged | pruned | failed)
    excluded = {
        "diverged": int(diverged.sum()),
        "pruned": int(pruned.sum()),
        "failed": int(failed.sum()),
        "total_rows": n,
    }
    return runs[ok].set_index("run_id"), excluded


# --------------------------------------------------------------------------------------------
# serialization helpers


def _settings(obj) -> dict[str, Any]:
    return {
        "n_starts": obj.n_starts,
        "n_bootstrap": obj.n_bootstrap,
        "huber_delta": obj.huber_delta,
        "max_segments": obj.max_segments,
        "skip_frac": obj.skip_frac,
        "seed": obj.seed,
    }


def _settings_from(d) -> dict[str, Any]:
    s = d["settings"]
    if not isinstance(s, dict):
        raise ValueError("trajectory law field 'settings' must be an object")
    allowed = {"n_starts", "n_bootstrap", "huber_delta", "max_segments", "skip_frac", "seed"}
    unknown = set(s) - allowed
    if unknown:
        raise ValueError(f"trajectory law field 'settings' has unknown key(s): {sorted(unknown)}")
    return dict(s)


def _check_dict(d, kind: str, required) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"a {kind} must be loaded from a dict, got {type(d).__name__}")
    if d.get("kind", kind) != kind:
        raise ValueError(f"trajectory law field 'kind' is {d.get('kind')!r}, expected {kind!r}")
    version = d.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"trajectory law field 'format_version' is {version!r}; this code reads <= {FORMAT_VERSION}"
        )
    for key in required:
        if key not in d:
            raise ValueError(f"trajectory law is missing field {key!r}")


def _vector(d, key, n) -> np.ndarray:
    try:
        v = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"trajectory law field {key!r} must be a list of numbers") from None
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        raise ValueError(f"trajectory law field {key!r} must be {n} finite numbers")
    return v


def _matrix(d, key, n) -> np.ndarray:
    try:
        v = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"trajectory law field {key!r} must be a list of lists of numbers"
        ) from None
    if v.size == 0:
        return np.empty((0, n))
    if v.ndim != 2 or v.shape[1] != n or not np.all(np.isfinite(v)):
        raise ValueError(f"trajectory law field {key!r} must be rows of {n} finite numbers")
    return v
