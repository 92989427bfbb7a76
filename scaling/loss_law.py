"""The final-loss law L(N, D), fitted the way Chinchilla's replications do.

Two full forms:

- additive, L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022): the gain from more data is
  the same at every size;
- coupled, L = E + (A/N^alpha + B/D)^gamma: Kaplan et al. 2020's eq. 1.5 with an irreducible
  term. A larger model gains more from more data (the D term matters more once the N term
  shrinks), which small proxies trained at few tokens per parameter show plainly.

Log-space fit (log L = LSE(a - alpha log N, b - beta log D, e) for the additive form, Besiroglu
et al. 2024) with a Huber objective, L-BFGS-B with an analytic gradient from the best points of a
grid of starts, and a seeded, parallel bootstrap warm-started at the point estimate. Unless a
form is forced, both full forms are fitted and the one with the smaller leave-one-out error is
kept (`selection_`).

The loss interval is the bootstrap's spread of the predicted loss widened, in quadrature in log
space, by that leave-one-out error: a bootstrap over a handful of cells can be far narrower than
the law's miss on a cell it never saw (`predict_interval`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, ndtri

from ._util import (
    as_positive_array,
    check_positive,
    check_positive_values,
    n_levels,
    percentile_interval,
    single_threaded_blas,
    widen_in_log,
)

__all__ = ["LossLaw", "FORMS"]

# Each form: the parameters of the log-sum-exp parametrization in order, and its expression.
FORMS: dict[str, dict[str, Any]] = {
    "E+A/N^alpha+B/D^beta": {"theta": ("e", "a", "alpha", "b", "beta")},
    "E+A/N^alpha": {"theta": ("e", "a", "alpha")},
    "E+B/D^beta": {"theta": ("e", "b", "beta")},
    "E+(A/N^alpha+B/D)^gamma": {"theta": ("e", "a", "alpha", "b", "gamma"), "fixed": {"beta": 1.0}},
}
_FULL, _N_ONLY, _D_ONLY, _COUPLED = tuple(FORMS)
_BOTH_TERMS = (_FULL, _COUPLED)
# A reduced form answers within this factor of the budget (size) it was fitted at: a budget's
# runs differ by a few whole steps between batch sizes.
_SAME_VALUE = 1.05


def _huber_value_and_slope(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Mean Huber loss of residuals r (scaled by 1/delta) and its derivative in each r."""
    n = r.size
    value = float(huber(delta, r).sum())
    return value / (n * delta), np.clip(r, -delta, delta) / (n * delta)


def _objective(
    theta: np.ndarray,
    form: str,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_l: np.ndarray,
    delta: float,
) -> tuple[float, np.ndarray]:
    """Mean Huber loss of the log-space residuals (scaled by 1/delta) and its gradient.

    Written out term by term (no stacking) because the bootstrap calls it ~10^5 times.
    """
    if form == _COUPLED:
        return _objective_coupled(theta, log_n, log_d, log_l, delta)
    if form == _FULL:
        e, a, alpha, b, beta = theta
        t0 = a - alpha * log_n
        t1 = b - beta * log_d
    elif form == _N_ONLY:
        e, a, alpha = theta
        t0 = a - alpha * log_n
        t1 = None
    else:
        e, b, beta = theta
        t0 = b - beta * log_d
        t1 = None
    m = np.maximum(t0, e) if t1 is None else np.maximum(np.maximum(t0, t1), e)
    w0 = np.exp(t0 - m)
    we = np.exp(e - m)
    s = w0 + we
    if t1 is not None:
        w1 = np.exp(t1 - m)
        s += w1
    r = m + np.log(s) - log_l
    n = r.size
    absr = np.abs(r)
    quad = absr <= delta
    value = float(np.where(quad, 0.5 * r * r, delta * (absr - 0.5 * delta)).sum()) / (n * delta)
    dr = np.clip(r, -delta, delta) / (n * delta * s)
    g0 = dr @ w0
    ge = dr @ we
    if form == _FULL:
        g1 = dr @ w1
        return value, np.array([ge, g0, -(dr * w0) @ log_n, g1, -(dr * w1) @ log_d])
    x = log_n if form == _N_ONLY else log_d
    return value, np.array([ge, g0, -(dr * w0) @ x])


def _coupled_log_pred(theta, log_n, log_d):
    """log L for L = E + S^gamma, S = A/N^alpha + B/D, with the pieces its gradient needs."""
    e, a, alpha, b, gamma = theta
    u0, u1 = a - alpha * log_n, b - log_d
    mu = np.maximum(u0, u1)
    log_s = mu + np.log(np.exp(u0 - mu) + np.exp(u1 - mu))
    t = gamma * log_s
    m = np.maximum(t, e)
    pred = m + np.log(np.exp(t - m) + np.exp(e - m))
    return pred, u0, u1, log_s, t


def _objective_coupled(theta, log_n, log_d, log_l, delta) -> tuple[float, np.ndarray]:
    e, a, alpha, b, gamma = theta
    pred, u0, u1, log_s, t = _coupled_log_pred(theta, log_n, log_d)
    value, dr = _huber_value_and_slope(pred - log_l, delta)
    sig_e = np.exp(e - pred)  # d pred / d e
    sig_t = np.exp(t - pred)  # d pred / d t, t = gamma log S
    p0 = dr * sig_t * gamma * np.exp(u0 - log_s)  # through log S to u0 = a - alpha log N
    p1 = dr * sig_t * gamma * np.exp(u1 - log_s)
    grad = np.array([dr @ sig_e, p0.sum(), -(p0 @ log_n), p1.sum(), (dr * sig_t) @ log_s])
    return value, grad


def _grid(form: str, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """Starting points scaled to the data: E a fraction of the best loss; each power-law term
    starts at a fraction of the loss at the data's centre for a range of exponents."""
    l_min = math.exp(float(log_l.min()))
    es = np.log(l_min * np.array([0.1, 0.35, 0.6, 0.8, 0.95]))
    exps = np.array([0.1, 0.25, 0.45, 0.7, 1.1])
    fracs = np.log(l_min * np.array([0.03, 0.15, 0.5, 1.5]))
    cn, cd = float(np.mean(log_n)), float(np.mean(log_d))
    if form == _COUPLED:
        # S^gamma starts at a fraction of the loss: log S = log(fraction) / gamma, shared by the
        # two inner terms in proportions 1:1 or 1:4 either way.
        gammas = np.array([0.2, 0.35, 0.5, 0.75, 1.0])
        inner = np.array([0.5, 0.8, 0.2])
        e, al, f, g, p = np.meshgrid(es, exps * 2.0, fracs, gammas, inner, indexing="ij")
        log_s = f / g
        return np.stack(
            [
                e.ravel(),
                (log_s + np.log(p) + al * cn).ravel(),
                al.ravel(),
                (log_s + np.log(1.0 - p) + cd).ravel(),
                g.ravel(),
            ],
            axis=1,
        )
    if form == _FULL:
        e, al, fa, be, fb = np.meshgrid(es, exps, fracs, exps, fracs, indexing="ij")
        return np.stack(
            [e.ravel(), (fa + al * cn).ravel(), al.ravel(), (fb + be * cd).ravel(), be.ravel()],
            axis=1,
        )
    centre = cn if form == _N_ONLY else cd
    e, ex, f = np.meshgrid(es, exps, fracs, indexing="ij")
    return np.stack([e.ravel(), (f + ex * centre).ravel(), ex.ravel()], axis=1)


def _grid_values(
    grid: np.ndarray, form: str, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta
) -> np.ndarray:
    """Objective at every grid point at once (no gradient), to pick where L-BFGS-B starts."""
    if form == _COUPLED:
        pred = _coupled_log_pred(
            tuple(grid[:, k, None] for k in range(5)), log_n[None, :], log_d[None, :]
        )[0]
        return huber(delta, pred - log_l[None, :]).mean(axis=1) / delta
    if form == _FULL:
        t = np.stack(
            [
                grid[:, None, 1] - grid[:, None, 2] * log_n[None, :],
                grid[:, None, 3] - grid[:, None, 4] * log_d[None, :],
                np.broadcast_to(grid[:, None, 0], (grid.shape[0], log_n.size)),
            ],
            axis=-1,
        )
    else:
        x = log_n if form == _N_ONLY else log_d
        t = np.stack(
            [
                grid[:, None, 1] - grid[:, None, 2] * x[None, :],
                np.broadcast_to(grid[:, None, 0], (grid.shape[0], x.size)),
            ],
            axis=-1,
        )
    m = t.max(axis=-1)
    pred = m + np.log(np.exp(t - m[..., None]).sum(axis=-1))
    return huber(delta, pred - log_l[None, :]).mean(axis=1) / delta


def _bounds(form: str, log_l: np.ndarray) -> list[tuple[float, float]]:
    e_hi = float(log_l.max()) + 1.0
    exp_b = (1e-4, 4.0)
    coef_b = (-30.0, 150.0)
    if form == _FULL:
        return [(-12.0, e_hi), coef_b, exp_b, coef_b, exp_b]
    if form == _COUPLED:
        return [(-12.0, e_hi), coef_b, (1e-4, 8.0), coef_b, (1e-3, 4.0)]
    return [(-12.0, e_hi), coef_b, exp_b]


def _solve(
    starts: np.ndarray,
    form: str,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_l: np.ndarray,
    delta: float,
    maxiter: int,
) -> tuple[np.ndarray, float, int, list[np.ndarray]]:
    """L-BFGS-B from each start; the best solution, its objective, failures, all solutions."""
    bounds = _bounds(form, log_l)
    best_x, best_f, failures, solutions = None, math.inf, 0, []
    for x0 in starts:
        res = minimize(
            _objective,
            x0,
            args=(form, log_n, log_d, log_l, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-10, "gtol": 1e-8},
        )
        if not np.all(np.isfinite(res.x)) or not math.isfinite(res.fun):
            failures += 1
            continue
        if not res.success and "ABNORMAL" not in str(res.message):
            failures += 1
        solutions.append((res.fun, res.x))
        if res.fun < best_f:
            best_x, best_f = res.x, float(res.fun)
    solutions.sort(key=lambda s: s[0])
    return best_x, best_f, failures, [x for _, x in solutions]


def _bootstrap_chunk(
    indices: np.ndarray,
    starts: np.ndarray,
    form: str,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_l: np.ndarray,
    delta: float,
    maxiter: int,
) -> tuple[np.ndarray, int]:
    out = np.full((indices.shape[0], starts.shape[1]), np.nan)
    failed = 0
    with single_threaded_blas():
        for k, idx in enumerate(indices):
            x, _, _, _ = _solve(starts, form, log_n[idx], log_d[idx], log_l[idx], delta, maxiter)
            if x is None:
                failed += 1
            else:
                out[k] = x
    return out, failed


def _theta_to_params(theta: np.ndarray, form: str) -> dict[str, float | None]:
    names = FORMS[form]["theta"]
    values = dict(zip(names, (float(v) for v in theta), strict=False))
    return {
        "E": math.exp(values["e"]),
        "A": math.exp(values["a"]) if "a" in values else None,
        "alpha": values.get("alpha"),
        "B": math.exp(values["b"]) if "b" in values else None,
        "beta": values.get("beta"),
        "gamma": values.get("gamma"),
        **FORMS[form].get("fixed", {}),
    }


def _params_to_theta(params: dict[str, Any], form: str) -> np.ndarray:
    full = {
        "e": math.log(params["E"]),
        "a": math.log(params["A"]) if params.get("A") else None,
        "alpha": params.get("alpha"),
        "b": math.log(params["B"]) if params.get("B") else None,
        "beta": params.get("beta"),
        "gamma": params.get("gamma"),
    }
    return np.array([full[k] for k in FORMS[form]["theta"]], dtype=float)


class LossLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta or E + (A/N^alpha + B/D)^gamma (N non-embedding
    parameters, D tokens, L in nats).

    Parameters
    ----------
    delta: Huber threshold on log-loss residuals (1e-3 as in Hoffmann et al.).
    n_starts: how many of the best grid points L-BFGS-B starts from in the point fit.
    bootstrap: number of bootstrap resamples for `params_ci_` (0 skips it).
    seed: seeds the bootstrap.
    n_jobs: joblib workers for the bootstrap.
    form: None picks the form the data identifies (and, where both terms are identified, the
        full form with the smaller leave-one-out error); or one of FORMS to force it.

    Fitted attributes: params_ (E, A, alpha, B, beta, gamma; None for what the form lacks;
    beta = 1 fixed in the coupled form), form_, selection_ (the leave-one-out errors of both
    full forms, or None), loo_rmse_log_ (the chosen form's leave-one-out rms of log L, with a
    bootstrap; it widens the loss intervals), params_ci_ (95% percentile intervals),
    bootstrap_samples_ (array, one row per resample, columns E, A, alpha, B, beta, gamma),
    residuals_ (log L - log L_pred per point), notes_ (why a reduced form was chosen),
    data_range_, n_points_.
    """

    def __init__(
        self,
        *,
        delta: float = 1e-3,
        n_starts: int = 12,
        bootstrap: int = 0,
        seed: int = 0,
        n_jobs: int = 2,
        form: str | None = None,
        maxiter: int = 500,
        progress: Any = None,
    ) -> None:
        self.delta = delta
        self.n_starts = n_starts
        self.bootstrap = bootstrap
        self.seed = seed
        self.n_jobs = n_jobs
        self.form = form
        self.maxiter = maxiter
        self.progress = progress

    # --- choosing what the data can identify -------------------------------------------------
    @staticmethod
    def identify(n_params: np.ndarray, tokens: np.ndarray) -> tuple[str, list[str]]:
        """The form the data identifies and, when reduced, why."""
        n_n, n_d = n_levels(n_params), n_levels(tokens)
        notes: list[str] = []
        if n_n == 1 and n_d == 1:
            raise ValueError(
                "the loss law needs runs at more than one n_params or tokens value; "
                f"all runs are at n_params={n_params[0]:g}, tokens={tokens[0]:g}"
            )
        if n_d == 1:
            notes.append(
                f"one token budget only (tokens={tokens[0]:.4g}): the D term is not identified; "
                "fitted the reduced form L = E + A/N^alpha, valid at that budget (E absorbs B/D^beta)"
            )
            return _N_ONLY, notes
        if n_n == 1:
            notes.append(
                f"one model size only (n_params={n_params[0]:.4g}): the N term is not identified; "
                "fitted the reduced form L = E + B/D^beta, valid at that size (E absorbs A/N^alpha)"
            )
            return _D_ONLY, notes
        ln, ld = np.log(n_params), np.log(tokens)
        corr = float(np.corrcoef(ln, ld)[0, 1])
        if abs(corr) > 0.995:
            slope = float(np.polyfit(ln, ld, 1)[0])
            notes.append(
                f"log tokens is collinear with log n_params (corr {corr:.4f}, tokens ~ N^{slope:.3g}):"
                " the N and D terms cannot be separated; fitted L = E + A/N^alpha along the "
                "sampled line, valid only for tokens on that line"
            )
            return _N_ONLY, notes
        for name, k in (("n_params", n_n), ("tokens", n_d)):
            if k == 2:
                notes.append(
                    f"only two distinct {name} values: that term's exponent is weakly identified; "
                    "see the intervals"
                )
        return _FULL, notes

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, n_params, tokens, loss) -> LossLaw:
        with single_threaded_blas():
            return self._fit(n_params, tokens, loss)

    def _fit(self, n_params, tokens, loss) -> LossLaw:
        n_params = as_positive_array("n_params", n_params)
        tokens = as_positive_array("tokens", tokens)
        loss = as_positive_array("loss", loss)
        if not (n_params.size == tokens.size == loss.size):
            raise ValueError(
                f"n_params, tokens and loss differ in length: {n_params.size}, {tokens.size}, "
                f"{loss.size}"
            )
        if self.form is None:
            form, notes = self.identify(n_params, tokens)
        else:
            if self.form not in FORMS:
                raise ValueError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
            form, notes = self.form, []
        k = len(FORMS[form]["theta"])
        if loss.size <= k:
            raise ValueError(
                f"the loss law {form} has {k} parameters and needs more than {k} points, "
                f"got {loss.size}"
            )
        log_n, log_d, log_l = np.log(n_params), np.log(tokens), np.log(loss)
        self.selection_, solved = None, None
        if self.form is None and form == _FULL and loss.size > k + 1:
            form, self.selection_, solved = self._select(log_n, log_d, log_l)
        theta, fun, failures, solutions, n_starts = solved or self._solve_form(
            form, log_n, log_d, log_l
        )
        if theta is None:
            raise RuntimeError("the loss-law fit failed from every starting point")
        if failures:
            warnings.warn(
                f"loss-law fit: L-BFGS-B did not converge from {failures} of {n_starts} starts",
                RuntimeWarning,
                stacklevel=2,
            )
        self.form_ = form
        self.notes_ = notes
        self.theta_ = theta
        self.objective_ = fun
        self.params_ = _theta_to_params(theta, form)
        self.loo_rmse_log_ = None  # measured with the bootstrap, below
        self.n_points_ = int(loss.size)
        self.data_ = {"n_params": n_params, "tokens": tokens, "loss": loss}
        self.data_range_ = {
            "n_params": [float(n_params.min()), float(n_params.max())],
            "tokens": [float(tokens.min()), float(tokens.max())],
            "loss": [float(loss.min()), float(loss.max())],
        }
        self.residuals_ = log_l - np.log(self.predict(n_params, tokens))
        self._near_best = [
            x
            for x in self._distinct(solutions, 2)
            if _objective(x, form, log_n, log_d, log_l, self.delta)[0] <= 1.2 * fun
        ]
        if self.bootstrap:
            self._fit_bootstrap(log_n, log_d, log_l)
            # The interval's out-of-sample part (`predict_interval`): the chosen form's
            # leave-one-out error, already measured where the form was chosen by it.
            if self.selection_ is not None:
                self.loo_rmse_log_ = self.selection_["loo_rmse_log"][form]
            elif solutions:
                # With k + 1 points each left-one-out fit is exactly determined: its miss on
                # the point it left out is still out of sample.
                self.loo_rmse_log_ = self._loo_rmse(form, solutions, log_n, log_d, log_l)
            if self.loo_rmse_log_ is not None and not math.isfinite(self.loo_rmse_log_):
                self.loo_rmse_log_ = None
        else:
            self.bootstrap_samples_ = None
            self.params_ci_ = {k: None for k in self.params_}
        return self

    def _solve_form(self, form, log_n, log_d, log_l, starts=None):
        """L-BFGS-B from the best points of the form's grid, or from `starts` when given."""
        if starts is None:
            grid = _grid(form, log_n, log_d, log_l)
            values = _grid_values(grid, form, log_n, log_d, log_l, self.delta)
            starts = grid[np.argsort(values)[: self.n_starts]]
        theta, fun, failures, solutions = _solve(
            starts, form, log_n, log_d, log_l, self.delta, self.maxiter
        )
        return theta, fun, failures, solutions, len(starts)

    def _select(self, log_n, log_d, log_l) -> tuple[str, dict[str, Any], tuple]:
        """The full form with the smaller leave-one-out error of log L (each point predicted by
        a fit without it), ties to the additive form. Each left-one-out fit starts from the
        all-points fit and the next distinct local optimum it found, as the bootstrap does.
        Returns the chosen form, the errors, and the chosen form's all-points solve."""
        rmse, solved = {}, {}
        for form in _BOTH_TERMS:
            solved[form] = self._solve_form(form, log_n, log_d, log_l)
            solutions = solved[form][3]
            if not solutions:
                rmse[form] = math.inf
                continue
            rmse[form] = self._loo_rmse(form, solutions, log_n, log_d, log_l)
        chosen = _COUPLED if rmse[_COUPLED] < rmse[_FULL] else _FULL
        selection = {"method": "leave-one-out", "chosen": chosen, "loo_rmse_log": rmse}
        return chosen, selection, solved[chosen]

    def _loo_rmse(self, form, solutions, log_n, log_d, log_l) -> float:
        """Leave-one-out error of `form`: the rms over the points of log L minus the prediction
        of a fit without that point. Each fit starts from the all-points fit and the next
        distinct local optimum it found (`solutions`), as the bootstrap does."""
        starts = np.array(self._distinct(solutions, 2))
        errors = []
        for i in range(log_l.size):
            keep = np.arange(log_l.size) != i
            theta = self._solve_form(form, log_n[keep], log_d[keep], log_l[keep], starts)[0]
            if theta is None:
                return math.inf
            pred = _theta_to_params(theta, form)
            errors.append(
                float(np.log(self._evaluate(pred, math.exp(log_n[i]), math.exp(log_d[i]))))
                - log_l[i]
            )
        return float(np.sqrt(np.mean(np.square(errors))))

    @staticmethod
    def _distinct(solutions: list[np.ndarray], count: int) -> list[np.ndarray]:
        kept: list[np.ndarray] = []
        for x in solutions:
            if all(np.max(np.abs(x - y)) > 1e-3 for y in kept):
                kept.append(x)
            if len(kept) == count:
                break
        return kept

    def _fit_bootstrap(self, log_n, log_d, log_l) -> None:
        from joblib import Parallel, delayed

        rng = np.random.default_rng(self.seed)
        n = log_l.size
        indices = rng.integers(0, n, size=(self.bootstrap, n))
        # Warm start at the point estimate, plus the next local optimum the point fit found when
        # it is nearly as good, so a resample that moves to the other basin can follow it.
        starts = np.array([self.theta_, *self._near_best[1:2]])
        lo, hi = np.array(_bounds(self.form_, log_l)).T
        starts = np.clip(starts, lo, hi)
        n_jobs = max(1, int(self.n_jobs))
        n_chunks = max(1, min(self.bootstrap, 8 * n_jobs))
        chunks = np.array_split(indices, n_chunks)
        args = (starts, self.form_, log_n, log_d, log_l, self.delta, self.maxiter)
        if n_jobs == 1:
            results = []
            for chunk in chunks:
                results.append(_bootstrap_chunk(chunk, *args))
                if self.progress is not None:
                    self.progress(len(chunk))
        else:
            results = []
            parallel = Parallel(n_jobs=n_jobs, return_as="generator")
            for res in parallel(delayed(_bootstrap_chunk)(chunk, *args) for chunk in chunks):
                results.append(res)
                if self.progress is not None:
                    self.progress(len(res[0]))
        thetas = np.concatenate([r[0] for r in results])
        failed = sum(r[1] for r in results)
        if failed:
            warnings.warn(
                f"loss-law bootstrap: {failed} of {self.bootstrap} resamples failed to fit",
                RuntimeWarning,
                stacklevel=3,
            )
        samples = np.full((thetas.shape[0], len(_PARAM_NAMES)), np.nan)
        for i, th in enumerate(thetas):
            if np.all(np.isfinite(th)):
                p = _theta_to_params(th, self.form_)
                samples[i] = [np.nan if p[k] is None else p[k] for k in _PARAM_NAMES]
        self.bootstrap_samples_ = samples
        fixed = FORMS[self.form_].get("fixed", {})
        self.params_ci_ = {}
        for j, k in enumerate(_PARAM_NAMES):
            if self.params_[k] is None or k in fixed:
                self.params_ci_[k] = None
            else:
                lo, hi = percentile_interval(samples[:, j], point=self.params_[k])
                self.params_ci_[k] = (float(lo), float(hi))

    # --- using the law ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("this LossLaw is not fitted yet: call fit() or from_dict() first")

    @staticmethod
    def _evaluate(params: dict[str, Any], n_params, tokens) -> np.ndarray:
        n = np.asarray(n_params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        out = np.zeros(np.broadcast(n, d).shape)
        if params.get("A") is not None:
            out = out + params["A"] / n ** params["alpha"]
        if params.get("B") is not None:
            out = out + params["B"] / d ** params["beta"]
        if params.get("gamma") is not None:
            out = out ** params["gamma"]
        return params["E"] + out

    def predict(self, n_params, tokens) -> np.ndarray | float:
        """Predicted final loss; a float for scalar inputs. n_params and tokens must be positive
        finite numbers (or arrays of them): ValueError naming the argument otherwise."""
        self._check_fitted()
        n_params = check_positive_values("n_params", n_params)
        tokens = check_positive_values("tokens", tokens)
        out = self._evaluate(self.params_, n_params, tokens)
        return float(out) if out.ndim == 0 else out

    def predict_interval(
        self, n_params, tokens, level: float = 0.95, *, misfit: bool = True
    ) -> tuple[float, float] | None:
        """Interval of the predicted loss: the percentile interval over the bootstrap fits (the
        spread of the law's parameters), widened by the law's own out-of-sample error, its
        leave-one-out rms of log L (`loo_rmse_log_`). Each side's log half-width h becomes
        sqrt(h^2 + (z s)^2), z the normal quantile of `level`, s that rms: a bootstrap over a
        handful of cells can be far narrower than the law's miss on a cell it never saw.
        `misfit=False` gives the parameter spread alone.

        None without a bootstrap, and for a reduced form (one budget, or one size) asked at a
        budget (size) more than 5% outside the one it was fitted at: its loss there is that
        budget's, with no basis for an interval. The interval always contains the point
        estimate `predict(n_params, tokens)`. Scalar inputs only."""
        self._check_fitted()
        n_params = check_positive_values("n_params", n_params)
        tokens = check_positive_values("tokens", tokens)
        level = check_positive("level", level, upper=1.0)
        samples = self.bootstrap_samples_
        if samples is None or len(samples) == 0 or self.off_reduced_range(n_params, tokens):
            return None
        s = samples[np.isfinite(samples[:, 0])]
        # All resamples at once (a service answers many queries): a missing term is NaN.
        n = np.asarray(n_params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        shape = (-1,) + (1,) * np.broadcast(n, d).ndim
        col = {k: s[:, i].reshape(shape) for i, k in enumerate(_PARAM_NAMES)}
        with np.errstate(invalid="ignore"):
            n_term = np.where(np.isfinite(col["A"]), col["A"] / n ** col["alpha"], 0.0)
            d_term = np.where(np.isfinite(col["B"]), col["B"] / d ** col["beta"], 0.0)
            inner = n_term + d_term
            preds = col["E"] + np.where(np.isfinite(col["gamma"]), inner ** col["gamma"], inner)
        point = self._evaluate(self.params_, n, d)
        lo, hi = percentile_interval(preds, level, point=point)
        if misfit:
            lo, hi = self._widen(point, lo, hi, level)
        return float(lo), float(hi)

    def _widen(self, point, lo, hi, level: float = 0.95):
        """A parameter-spread interval (lo, hi) around `point`, widened in quadrature, in log
        space, by the leave-one-out error (unchanged without one)."""
        s_loo = self.loo_rmse_log_
        if not s_loo:
            return lo, hi
        w = float(ndtri(0.5 + level / 2.0)) * s_loo
        return widen_in_log(point, np.log(point / lo), np.log(hi / point), w)

    def off_reduced_range(self, n_params, tokens) -> str | None:
        """For a reduced form, the variable it lacks ("tokens" or "n_params") when the query's
        value lies more than 5% outside the range the law was fitted on; else None."""
        self._check_fitted()
        missing = {_N_ONLY: "tokens", _D_ONLY: "n_params"}.get(self.form_)
        fitted = getattr(self, "data_range_", None)
        if missing is None or not fitted:
            return None
        lo, hi = fitted[missing]
        value = np.asarray(tokens if missing == "tokens" else n_params, dtype=float)
        outside = (value < lo / _SAME_VALUE) | (value > hi * _SAME_VALUE)
        return missing if bool(np.any(outside)) else None

    def _row(self, row: np.ndarray) -> dict[str, Any]:
        return {
            k: (None if not np.isfinite(v) else float(v))
            for k, v in zip(_PARAM_NAMES, row, strict=False)
        }

    @property
    def supports_compute_optimal(self) -> bool:
        return getattr(self, "form_", None) in _BOTH_TERMS

    @staticmethod
    def _allocate(params: dict[str, Any], flops: float) -> tuple[float, float]:
        # Minimizing A/N^alpha + B/D^beta under 6 N D = C; the coupled form raises that sum to
        # gamma > 0 (beta = 1), which moves the minimum's height, not its place.
        a, b = params["alpha"], params["beta"]
        g = (a * params["A"] / (b * params["B"])) ** (1.0 / (a + b))
        n_opt = g * (flops / 6.0) ** (b / (a + b))
        return n_opt, flops / (6.0 * n_opt)

    def compute_optimal(self, flops: float) -> dict[str, Any]:
        """N*(C), D*(C) minimizing L under C = 6 N D (closed form, both full forms), the loss
        there, and bootstrap intervals of all three (the loss's widened as `predict_interval`
        widens it)."""
        self._check_fitted()
        flops = check_positive("flops", flops)
        if not self.supports_compute_optimal:
            raise ValueError(
                f"compute-optimal allocation needs both the N and D terms; this law is {self.form_}"
            )
        n_opt, d_opt = self._allocate(self.params_, flops)
        out: dict[str, Any] = {
            "n_params": n_opt,
            "tokens": d_opt,
            "loss": float(self.predict(n_opt, d_opt)),
            "intervals": {"n_params": None, "tokens": None, "loss": None},
        }
        if self.bootstrap_samples_ is not None:
            rows = [self._row(r) for r in self.bootstrap_samples_ if np.isfinite(r[0])]
            alloc = np.array([self._allocate(p, flops) for p in rows])
            losses = np.array(
                [float(self._evaluate(p, n, d)) for p, (n, d) in zip(rows, alloc, strict=False)]
            )
            for key, col in (("n_params", alloc[:, 0]), ("tokens", alloc[:, 1]), ("loss", losses)):
                lo, hi = percentile_interval(col, point=out[key])
                if key == "loss":
                    lo, hi = self._widen(out[key], lo, hi)
                out["intervals"][key] = (float(lo), float(hi))
        return out

    # --- law file --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        ci = self.params_ci_
        d: dict[str, Any] = {
            "form": self.form_,
            "expression": f"L = {self.form_.replace('+', ' + ')}",
            "selection": self.selection_,
            "variables": {"N": "n_params", "D": "tokens"},
            "params": dict(self.params_),
            "intervals": {k: (list(v) if v is not None else None) for k, v in ci.items()},
            "fit": {
                "method": "huber-log-lbfgsb",
                "delta": self.delta,
                "objective": self.objective_,
            },
            "notes": list(self.notes_),
        }
        if self.loo_rmse_log_ is not None:
            d["loo_rmse_log"] = self.loo_rmse_log_
        if hasattr(self, "data_"):
            pred = self.predict(self.data_["n_params"], self.data_["tokens"])
            d["data_range"] = self.data_range_
            d["n_points"] = self.n_points_
            d["residuals"] = {
                "kind": "log(loss) - log(predicted)",
                "rmse": float(np.sqrt(np.mean(self.residuals_**2))),
                "max_abs": float(np.max(np.abs(self.residuals_))),
                "points": {
                    "n_params": self.data_["n_params"].tolist(),
                    "tokens": self.data_["tokens"].tolist(),
                    "loss": self.data_["loss"].tolist(),
                    "predicted": np.asarray(pred).tolist(),
                    "residual": self.residuals_.tolist(),
                },
            }
        if self.bootstrap_samples_ is not None:
            d["bootstrap"] = {
                "n": int(self.bootstrap_samples_.shape[0]),
                "seed": self.seed,
                "columns": list(_PARAM_NAMES),
                "samples": [
                    [None if not np.isfinite(v) else float(f"{v:.6g}") for v in row]
                    for row in self.bootstrap_samples_
                ],
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossLaw:
        law = cls()
        form = d["form"]
        if form not in FORMS:
            raise ValueError(f"unknown loss-law form {form!r}")
        law.form_ = form
        law.params_ = {k: d["params"].get(k) for k in _PARAM_NAMES}
        law.selection_ = d.get("selection")
        # Files written before the leave-one-out widening carry it only where it chose the form.
        law.loo_rmse_log_ = d.get("loo_rmse_log")
        if law.loo_rmse_log_ is None and law.selection_ and d.get("bootstrap"):
            law.loo_rmse_log_ = law.selection_.get("loo_rmse_log", {}).get(form)
        law.theta_ = _params_to_theta(law.params_, form)
        law.notes_ = list(d.get("notes", []))
        law.objective_ = d.get("fit", {}).get("objective")
        law.delta = d.get("fit", {}).get("delta", law.delta)
        intervals = d.get("intervals") or {}
        law.params_ci_ = {
            k: (tuple(intervals[k]) if intervals.get(k) is not None else None) for k in _PARAM_NAMES
        }
        boot = d.get("bootstrap")
        law.bootstrap_samples_ = None
        if boot:
            # Files written before the coupled form have five columns (no gamma).
            columns = list(boot.get("columns") or _PARAM_NAMES[: len(boot["samples"][0])])
            raw = np.array(
                [[np.nan if v is None else v for v in row] for row in boot["samples"]], dtype=float
            )
            law.bootstrap_samples_ = np.full((raw.shape[0], len(_PARAM_NAMES)), np.nan)
            for j, name in enumerate(columns):
                law.bootstrap_samples_[:, _PARAM_NAMES.index(name)] = raw[:, j]
        if "data_range" in d:
            law.data_range_ = d["data_range"]
            law.n_points_ = d.get("n_points")
        pts = d.get("residuals", {}).get("points")
        if pts:
            law.data_ = {k: np.asarray(pts[k], dtype=float) for k in ("n_params", "tokens", "loss")}
            law.residuals_ = np.asarray(pts["residual"], dtype=float)
        return law


_PARAM_NAMES = ("E", "A", "alpha", "B", "beta", "gamma")
