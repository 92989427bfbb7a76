"""Power laws for the optimal hyperparameters: eta*(N, D) = c N^a D^b, B*(N, D) = d N^e D^f, and
the same in compute C, fitted log-linearly to the cell optima with weights and a bootstrap.

The bootstrap resamples runs within each cell (so intervals carry the optimum's uncertainty) and,
with enough cells, the cells themselves (so they carry the law's lack of fit too).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._util import n_levels, percentile_interval

__all__ = ["PowerLaw", "fit_lr_at_batch", "fit_power_law"]

_VAR_NAMES = {"N": "n_params", "D": "tokens", "C": "flops", "B": "batch_tokens"}
_MIN_CELLS_FOR_CELL_RESAMPLING = 8
_VAR_FLOOR = 0.05**2  # (log units)^2: no cell gets more than ~400x the weight of a noisy one


class PowerLaw:
    """y = coef * prod(X_v ^ exp_v) over variables v in ("N", "D") or ("C",) or a subset, and
    "B" (batch_tokens) for the LR at a given batch size.

    params_: {"coef": ..., "exp_N": ..., "exp_D": ...} (only the exponents of its variables);
    params_ci_: 95% intervals; samples_: bootstrap rows (log coef, exponents...) or None.
    """

    def __init__(self, target: str, variables: tuple[str, ...], params: dict[str, float]) -> None:
        if not variables or any(v not in _VAR_NAMES for v in variables):
            raise ValueError(f"variables must be drawn from N, D, C, B, got {variables!r}")
        self.target = target
        self.variables = tuple(variables)
        self.params_ = {"coef": float(params["coef"])}
        for v in self.variables:
            self.params_[f"exp_{v}"] = float(params[f"exp_{v}"])
        self.params_ci_: dict[str, tuple[float, float] | None] = {k: None for k in self.params_}
        self.samples_: np.ndarray | None = None
        self.notes_: list[str] = []
        self.data_range_: dict[str, list[float]] | None = None
        self.residuals_: np.ndarray | None = None
        self.points_: dict[str, list] | None = None
        self.weights_: np.ndarray | None = None

    @property
    def expression(self) -> str:
        return f"{self.target} = coef * " + " * ".join(f"{v}^exp_{v}" for v in self.variables)

    def _beta(self) -> np.ndarray:
        return np.array(
            [math.log(self.params_["coef"])] + [self.params_[f"exp_{v}"] for v in self.variables]
        )

    def _design(self, n_params, tokens, flops, batch_tokens=None) -> np.ndarray:
        cols = {"N": n_params, "D": tokens, "C": flops, "B": batch_tokens}
        for v in self.variables:
            if cols[v] is None:
                raise ValueError(f"this {self.target} law needs {_VAR_NAMES[v]}")
        shape = np.broadcast(*[np.asarray(cols[v], dtype=float) for v in self.variables]).shape
        out = [np.ones(shape)]
        for v in self.variables:
            x = cols[v]
            out.append(np.log(np.broadcast_to(np.asarray(x, dtype=float), shape)))
        return np.stack(out, axis=-1)

    def predict(self, n_params=None, tokens=None, flops=None, batch_tokens=None):
        out = np.exp(self._design(n_params, tokens, flops, batch_tokens) @ self._beta())
        return float(out) if np.ndim(out) == 0 else out

    def predict_interval(
        self, n_params=None, tokens=None, flops=None, level: float = 0.95, batch_tokens=None
    ):
        preds = self.sample_predictions(n_params, tokens, flops, batch_tokens)
        if preds is None:
            return None
        # Widened to contain the point estimate (inputs paired per sample have no single one).
        point = self.predict(n_params, tokens, flops, batch_tokens)
        lo, hi = percentile_interval(preds, level, point=point if np.ndim(point) == 0 else None)
        return float(lo), float(hi)

    def sample_predictions(self, n_params=None, tokens=None, flops=None, batch_tokens=None):
        """The law's value under each bootstrap sample (None without samples). An input may
        also be an array with one value per sample, paired with the samples in order (the
        shorter of the two sets the count)."""
        if self.samples_ is None or len(self.samples_) == 0:
            return None
        x = self._design(n_params, tokens, flops, batch_tokens)
        if x.ndim == 1:
            return np.exp(self.samples_ @ x)
        m = min(len(x), len(self.samples_))
        return np.exp(np.sum(self.samples_[:m] * x[:m], axis=1))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "form": "power",
            "target": self.target,
            "variables": list(self.variables),
            "expression": self.expression,
            "params": dict(self.params_),
            "intervals": {k: (list(v) if v else None) for k, v in self.params_ci_.items()},
            "notes": list(self.notes_),
        }
        if self.data_range_ is not None:
            d["data_range"] = self.data_range_
        if self.residuals_ is not None:
            d["residuals"] = {
                "kind": f"log({self.target}_opt) - log(predicted)",
                "rmse": float(np.sqrt(np.mean(self.residuals_**2))),
                "max_abs": float(np.max(np.abs(self.residuals_))),
                "points": self.points_,
            }
        if self.samples_ is not None:
            d["bootstrap"] = {
                "n": int(self.samples_.shape[0]),
                "columns": ["log_coef", *[f"exp_{v}" for v in self.variables]],
                "samples": [[float(f"{v:.6g}") for v in row] for row in self.samples_],
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLaw:
        law = cls(d["target"], tuple(d["variables"]), d["params"])
        law.params_ci_ = {
            k: (tuple(v) if v else None) for k, v in d.get("intervals", {}).items()
        } or {k: None for k in law.params_}
        law.notes_ = list(d.get("notes", []))
        law.data_range_ = d.get("data_range")
        res = d.get("residuals")
        if res and res.get("points"):
            law.points_ = res["points"]
            law.residuals_ = np.asarray(res["points"]["residual"], dtype=float)
        boot = d.get("bootstrap")
        if boot:
            law.samples_ = np.asarray(boot["samples"], dtype=float)
        return law


def choose_variables(
    n_params: np.ndarray, tokens: np.ndarray, compute: bool = False
) -> tuple[tuple[str, ...], list[str]]:
    """The variables the cells identify, and notes on any reduction."""
    if compute:
        return ("C",), []
    n_n, n_d = n_levels(n_params), n_levels(tokens)
    if n_n == 1 and n_d == 1:
        raise ValueError("a hyperparameter law needs cells at more than one n_params or tokens")
    if n_d == 1:
        return ("N",), [
            f"tokens has one value ({tokens[0]:.4g}): fitted the reduced form in N only, "
            "valid at that budget"
        ]
    if n_n == 1:
        return ("D",), [
            f"n_params has one value ({n_params[0]:.4g}): fitted the reduced form in D only, "
            "valid at that size"
        ]
    corr = float(np.corrcoef(np.log(n_params), np.log(tokens))[0, 1])
    if abs(corr) > 0.995 or n_levels(n_params) + n_levels(tokens) < 4:
        return ("N",), [
            f"log tokens is collinear with log n_params across cells (corr {corr:.3f}): N and D "
            "effects cannot be separated; fitted the reduced form in N along the sampled line"
        ]
    return ("N", "D"), []


def _leave_out_edges(ok, edge, needed: int, n_coef: int, what: str, names=None):
    """Rows on the edge of the swept range leave the fit when `needed` others remain, and are
    kept otherwise; returns the rows to fit and a note saying which was done."""
    edge = ok & np.asarray(edge, bool)
    if not edge.any():
        return ok, []
    keep = ok & ~edge
    if keep.sum() >= needed:
        listed = [names[i] for i in np.flatnonzero(edge)] if names is not None else []
        return keep, [
            f"left out {edge.sum()} {what}" + (f" ({', '.join(listed)})" if listed else "")
        ]
    return ok, [
        f"kept {edge.sum()} {what}: without them {keep.sum()} would be left, fewer than the "
        f"{needed} needed for {n_coef} parameters; the law is biased toward the swept range "
        "there"
    ]


def _store_fit(law: PowerLaw, beta: np.ndarray, samples=None, level: float = 0.95) -> None:
    """Parameters from a log-linear solution (log coef, exponents), and their percentile
    intervals from bootstrap solutions."""
    law.params_ = {"coef": float(math.exp(beta[0]))}
    for j, v in enumerate(law.variables):
        law.params_[f"exp_{v}"] = float(beta[1 + j])
    if samples is None:
        return
    law.samples_ = np.array(samples)
    lo, hi = percentile_interval(law.samples_, level, point=beta)
    law.params_ci_ = {"coef": (float(math.exp(lo[0])), float(math.exp(hi[0])))}
    for j, v in enumerate(law.variables):
        law.params_ci_[f"exp_{v}"] = (float(lo[1 + j]), float(hi[1 + j]))


def _optimum_variance(boot_log: np.ndarray | None, n_cells: int) -> np.ndarray:
    """Each cell's variance of its log optimum over the bootstrap rows (zeros without a
    bootstrap: equal weights); a cell with no finite resample gets the largest variance."""
    if boot_log is None:
        return np.zeros(n_cells)
    var = np.nanvar(boot_log, axis=0)
    return np.where(np.isfinite(var), var, np.nanmax(var) if np.isfinite(var).any() else 1.0)


def fit_power_law(
    target: str,
    n_params: np.ndarray,
    tokens: np.ndarray,
    values: np.ndarray,
    boot_values: np.ndarray | None = None,
    *,
    exclude: np.ndarray | None = None,
    compute: bool = False,
    seed: int = 0,
    cell_names: list[str] | None = None,
) -> PowerLaw:
    """Weighted log-linear fit of a cell optimum (lr or batch_tokens) on N and D (or C).

    boot_values: (n_boot, n_cells) optima from resampling runs within cells; its per-cell
    variance sets the weights and its rows drive the bootstrap. exclude: cells to leave out of
    the fit (e.g. optimum on the sweep's edge) when enough others remain.
    """
    n_params = np.asarray(n_params, float)
    tokens = np.asarray(tokens, float)
    values = np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0)
    notes: list[str] = []
    if exclude is not None:
        n_vars = len(choose_variables(n_params[ok], tokens[ok], compute)[0]) if ok.sum() else 1
        ok, notes = _leave_out_edges(
            ok,
            exclude,
            n_vars + 2,
            n_vars + 1,
            "cell(s) whose optimum is on the edge of the swept range",
            cell_names or None,
        )
    idx = np.flatnonzero(ok)
    flops = 6.0 * n_params * tokens
    variables, more = choose_variables(n_params[idx], tokens[idx], compute)
    notes += more
    k = 1 + len(variables)
    if idx.size < k:
        raise ValueError(
            f"the {target} law in {', '.join(variables)} needs at least {k} cells with an "
            f"optimum, got {idx.size}"
        )
    if idx.size == k:
        notes.append(f"as many cells as parameters ({k}): an exact fit, intervals from runs only")
    law = PowerLaw(target, variables, {"coef": 1.0, **{f"exp_{v}": 0.0 for v in variables}})
    x = law._design(n_params[idx], tokens[idx], flops[idx])
    y = np.log(values[idx])
    var = _optimum_variance(None if boot_values is None else np.log(boot_values[:, idx]), idx.size)
    w = 1.0 / (var + _VAR_FLOOR)

    def solve(xx, yy, ww):
        sw = np.sqrt(ww)
        beta, *_ = np.linalg.lstsq(xx * sw[:, None], yy * sw, rcond=None)
        return beta

    beta = solve(x, y, w)
    _store_fit(law, beta)
    law.residuals_ = y - x @ beta
    law.weights_ = w
    law.notes_ = notes
    law.data_range_ = {
        "n_params": [float(n_params[idx].min()), float(n_params[idx].max())],
        "tokens": [float(tokens[idx].min()), float(tokens[idx].max())],
        "flops": [float(flops[idx].min()), float(flops[idx].max())],
        target: [float(values[idx].min()), float(values[idx].max())],
    }
    law.points_ = {
        "cell": [cell_names[i] for i in idx] if cell_names else None,
        "n_params": n_params[idx].tolist(),
        "tokens": tokens[idx].tolist(),
        target: values[idx].tolist(),
        "predicted": np.exp(x @ beta).tolist(),
        "residual": law.residuals_.tolist(),
        "weight": w.tolist(),
    }
    if boot_values is not None and boot_values.shape[0] > 0:
        rng = np.random.default_rng(seed)
        resample_cells = idx.size >= _MIN_CELLS_FOR_CELL_RESAMPLING
        samples = []
        for row in np.log(boot_values[:, idx]):
            yy = np.where(np.isfinite(row), row, y)
            sel = np.arange(idx.size)
            if resample_cells:
                for _ in range(20):
                    sel = rng.integers(0, idx.size, idx.size)
                    if np.linalg.matrix_rank(x[sel]) == k:
                        break
                else:
                    sel = np.arange(idx.size)
            samples.append(solve(x[sel], yy[sel], w[sel]))
        _store_fit(law, beta, samples)
    # The (N, D) law and the compute law can treat the same edge cells differently: say which.
    label = f"{target} law in {', '.join(variables)}"
    for note in notes:
        warnings.warn(f"{label}: {note}", UserWarning, stacklevel=2)
    return law


def fit_lr_at_batch(table, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95) -> PowerLaw:
    """The optimal LR at a given batch size, lr*(N, D, B) = coef N^a D^b B^s, fitted
    log-linearly to `optimum.conditional_lr_optima` rows (one per cell and batch size).

    Rows whose optimum sits on the edge of the swept LRs are left out when enough others
    remain. The bootstrap resamples whole cells (a cell's rows share its noise)."""
    n = table["n_params"].to_numpy(dtype=float)
    d = table["tokens"].to_numpy(dtype=float)
    b = table["batch_tokens"].to_numpy(dtype=float)
    lr = table["lr_opt"].to_numpy(dtype=float)
    cells = table["cell"].astype(str).to_numpy()
    ok = np.isfinite(lr) & (lr > 0)
    if n_levels(b[ok]) < 2:
        raise ValueError("the lr-at-batch law needs optima at two or more batch sizes")
    variables, notes = choose_variables(n[ok], d[ok])
    variables = (*variables, "B")
    k = 1 + len(variables)
    ok, edge_notes = _leave_out_edges(
        ok,
        table["edge"].to_numpy(dtype=bool),
        k + 2,
        k,
        "(cell, batch) optima on the edge of the swept LRs",
    )
    notes += edge_notes
    idx = np.flatnonzero(ok)
    if idx.size < k + 1:
        raise ValueError(f"the lr-at-batch law needs at least {k + 1} optima, got {idx.size}")
    law = PowerLaw("lr", variables, {"coef": 1.0, **{f"exp_{v}": 0.0 for v in variables}})
    x = law._design(n[idx], d[idx], 6.0 * n[idx] * d[idx], b[idx])
    y = np.log(lr[idx])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    _store_fit(law, beta)
    law.residuals_ = y - x @ beta
    law.notes_ = notes
    law.data_range_ = {
        "n_params": [float(n[idx].min()), float(n[idx].max())],
        "tokens": [float(d[idx].min()), float(d[idx].max())],
        "batch_tokens": [float(b[idx].min()), float(b[idx].max())],
        "lr": [float(lr[idx].min()), float(lr[idx].max())],
    }
    law.points_ = {
        "cell": cells[idx].tolist(),
        "n_params": n[idx].tolist(),
        "tokens": d[idx].tolist(),
        "batch_tokens": b[idx].tolist(),
        "lr": lr[idx].tolist(),
        "predicted": np.exp(x @ beta).tolist(),
        "residual": law.residuals_.tolist(),
    }
    if bootstrap:
        rng = np.random.default_rng(seed)
        names = np.unique(cells[idx])
        rows_of = {c: np.flatnonzero(cells[idx] == c) for c in names}
        samples = []
        for _ in range(bootstrap):
            for _ in range(20):
                sel = np.concatenate([rows_of[c] for c in rng.choice(names, names.size)])
                if np.linalg.matrix_rank(x[sel]) == k:
                    break
            else:
                sel = np.arange(idx.size)
            samples.append(np.linalg.lstsq(x[sel], y[sel], rcond=None)[0])
        _store_fit(law, beta, samples, level)
    for note in notes:
        warnings.warn(
            f"lr law at a given batch, in {', '.join(variables)}: {note}", UserWarning, stacklevel=2
        )
    return law
