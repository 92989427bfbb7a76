"""The bundle of laws fitted from one sweep (or published as a preset), and its predictions.

`fit()` turns a runs table into a `ScalingLaws`: the loss law, the optimal-LR and -batch laws
(in N, D and in compute), a backtest, optionally the trajectory law; `save()`/`load()` go
through the JSON law file (contract 2); `predict()` answers with intervals and warnings.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._errors import UnsupportedQuery
from ._lawfile import FORMAT_VERSION, LOSS_FORMS, jsonable, read_law_file, validate_law_dict
from ._util import (
    check_batch_fits,
    check_positive,
    percentile_interval,
    range_factor,
    single_threaded_blas,
)
from .hparam_laws import PowerLaw, fit_lr_at_batch, fit_power_law
from .loss_law import LossLaw
from .optimum import BootstrapCache, cell_optima, conditional_lr_optima, searched_cells
from .runs import read_curves, read_runs, runs_sha256, validate_runs
from .schedules import ScheduleSpec
from .trajectory import CrossSizeTrajectoryLaw

__all__ = ["OptimumLaws", "Prediction", "ScalingLaws", "fit", "fit_optimum_laws", "load"]

SUPPORTS = ("lr", "batch_tokens", "loss", "trajectory", "compute_optimal")
_FAR = 10.0  # extrapolation factor beyond which a prediction gets a strong warning


@dataclass
class Prediction:
    """The answer for one (n_params, tokens) query; None where the law does not define it."""

    law: str
    n_params: float
    tokens: float
    flops: float
    lr: float | None
    batch_tokens: float | None
    batch_size: float | None
    loss: float | None
    intervals: dict[str, tuple[float, float] | None]
    extrapolation: dict[str, float]
    warnings: list[str]
    lr_kind: str
    lr_groups: dict | None = None
    seq_len: int | None = None
    width: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        inputs = {"n_params": self.n_params, "tokens": self.tokens}
        if self.seq_len is not None:
            inputs["seq_len"] = self.seq_len
        if self.width is not None:
            inputs["width"] = self.width
        out = {
            "law": self.law,
            "inputs": inputs,
            "flops": self.flops,
            "lr": self.lr,
            "batch_tokens": self.batch_tokens,
            "batch_size": self.batch_size,
            "loss": self.loss,
            "intervals": {k: (list(v) if v else None) for k, v in self.intervals.items()},
            "extrapolation": d["extrapolation"],
            "warnings": list(self.warnings),
            "lr_kind": self.lr_kind,
            "lr_groups": self.lr_groups,
        }
        return jsonable(out)


# --- components that are not fitted here (presets only) ----------------------------------------
class _KaplanLoss:
    """Kaplan et al. 2020 eq. 1.5: L(N, D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D."""

    def __init__(self, d: dict) -> None:
        self.d = d
        self.params_ = d["params"]

    def predict(self, n_params, tokens):
        p = self.params_
        inner = (p["Nc"] / n_params) ** (p["alpha_N"] / p["alpha_D"]) + p["Dc"] / tokens
        return float(inner ** p["alpha_D"])

    def predict_interval(self, n_params, tokens):
        return None


class _KaplanCriticalBatch:
    """Kaplan et al. 2020 eq. 5.3: B_crit(L) = B_star / L^(1/alpha_B), in tokens."""

    def __init__(self, d: dict) -> None:
        self.params_ = d["params"]

    def from_loss(self, loss: float) -> float:
        p = self.params_
        return float(p["B_star"] / loss ** (1.0 / p["alpha_B"]))


def _loss_component(d: dict):
    if d["form"] == "kaplan":
        return _KaplanLoss(d)
    return LossLaw.from_dict(d)


class ScalingLaws:
    """Every law of one sweep or preset, built from a validated law-file document."""

    def __init__(self, doc: dict, *, path: str | None = None, trajectory_law: Any = None) -> None:
        validate_law_dict(doc, path or f"<{doc.get('id', 'laws')}>")
        self._doc = doc
        self.path = path
        self.id: str = doc["id"]
        laws = doc["laws"]
        self.loss_law = _loss_component(laws["loss"]) if "loss" in laws else None
        self.lr_law = PowerLaw.from_dict(laws["lr"]) if "lr" in laws else None
        self.batch_law = None
        self.critical_batch = None
        if "batch_tokens" in laws:
            if laws["batch_tokens"]["form"] == "kaplan-critical-batch":
                self.critical_batch = _KaplanCriticalBatch(laws["batch_tokens"])
            else:
                self.batch_law = PowerLaw.from_dict(laws["batch_tokens"])
        self.lr_compute_law = (
            PowerLaw.from_dict(laws["lr_compute"]) if "lr_compute" in laws else None
        )
        self.batch_compute_law = (
            PowerLaw.from_dict(laws["batch_tokens_compute"])
            if "batch_tokens_compute" in laws
            else None
        )
        self.lr_at_batch_law = (
            PowerLaw.from_dict(laws["lr_at_batch"]) if "lr_at_batch" in laws else None
        )
        alloc = laws.get("compute_allocation")
        self.allocation = (
            (PowerLaw.from_dict(alloc["n_params"]), PowerLaw.from_dict(alloc["tokens"]))
            if alloc
            else None
        )
        self._trajectory = trajectory_law
        if self._trajectory is None and doc.get("trajectory"):
            self._trajectory = CrossSizeTrajectoryLaw.from_dict(doc["trajectory"])

    # --- description ---------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._doc["kind"]

    @property
    def parametrization(self) -> dict:
        return dict(self._doc["parametrization"])

    def supports(self) -> list[str]:
        out = []
        if self.lr_law is not None:
            out.append("lr")
        if self.batch_law is not None or self.critical_batch is not None:
            out.append("batch_tokens")
        if self.loss_law is not None:
            out.append("loss")
        if self._trajectory is not None:
            out.append("trajectory")
        if self._can_allocate():
            out.append("compute_optimal")
        return out

    def _can_allocate(self) -> bool:
        if self.allocation is not None:
            return True
        if isinstance(self.loss_law, _KaplanLoss):
            return True
        return isinstance(self.loss_law, LossLaw) and self.loss_law.supports_compute_optimal

    def info(self) -> dict:
        d = self._doc
        return jsonable(
            {
                "id": self.id,
                "kind": self.kind,
                "citation": d.get("citation"),
                "url": d.get("url"),
                "parametrization": d["parametrization"],
                "units": d["units"],
                "fitted_range": d["fitted_range"],
                "supports": self.supports(),
                "forms": {k: v.get("expression", v["form"]) for k, v in d["laws"].items()},
                "notes": d.get("notes", []),
            }
        )

    def to_dict(self) -> dict:
        doc = dict(self._doc)
        if self._trajectory is not None and hasattr(self._trajectory, "to_dict"):
            doc["trajectory"] = self._trajectory.to_dict()
        return jsonable(doc)

    def save(self, path: str | os.PathLike) -> dict[str, Any]:
        """Write the law file (atomically); returns the document written."""
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        doc = self.to_dict()
        text = json.dumps(doc, indent=1, allow_nan=False)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return doc

    def __repr__(self) -> str:
        return f"ScalingLaws(id={self.id!r}, kind={self.kind!r}, supports={self.supports()})"

    # --- predictions -----------------------------------------------------------------------
    def _law_flops(self, n_params: float, tokens: float, seq_len, width) -> float:
        """Compute as the law's authors define it (DeepSeek: non-embedding FLOPs/token M times D,
        M = 6N(1 + seq_len/(12 width)) when seq_len and width are known, else 6N)."""
        definition = self._doc.get("compute", {}).get("definition", "6ND")
        if definition == "deepseek" and seq_len and width:
            return 6.0 * n_params * (1.0 + seq_len / (12.0 * width)) * tokens
        return 6.0 * n_params * tokens

    def _extrapolation(self, n_params: float, tokens: float, flops: float) -> dict[str, float]:
        out = {}
        fr = self._doc["fitted_range"]
        for key, value in (("n_params", n_params), ("tokens", tokens), ("flops", flops)):
            rng = fr.get(key)
            if rng:
                lo, hi = rng
                out[f"{key}_factor"] = range_factor(value, lo, hi)
            elif key != "flops":
                out[f"{key}_factor"] = 1.0
        return out

    def _range_warnings(self, extrapolation: dict[str, float]) -> list[str]:
        fr = self._doc["fitted_range"]
        out = []
        for key, factor in extrapolation.items():
            name = key.removesuffix("_factor")
            if factor > 1.0:
                lo, hi = fr[name]
                strength = "far outside" if factor > _FAR else "outside"
                out.append(
                    f"{name} is {factor:.3g}x {strength} the fitted range [{lo:.3g}, {hi:.3g}]: "
                    "this is an extrapolation"
                )
        return out

    def lr_kind(self) -> str:
        par = self._doc["parametrization"]
        if par["kind"] == "mup":
            base = par.get("base_width")
            where = (
                f"base width {base:g}"
                if isinstance(base, (int, float))
                else "base width not recorded"
            )
            return f"global muP LR for mup.MuAdamW ({where})"
        if par["kind"] == "sp":
            return "AdamW peak LR (standard parametrization)"
        return "peak LR (parametrization not recorded)"

    def lr_groups(self, lr: float, width: float) -> dict | None:
        """Per-parameter-group LRs that mup.MuAdamW (mup 1.0) sets for a model of this width.

        MuAdamW puts a parameter with two width-like dimensions (hidden matrices: attention
        q/k/v/out, MLP in/out) in a group with lr / width_mult and weight_decay * width_mult,
        where width_mult = fan_in / base fan_in = width / base_width. Every other parameter
        keeps the global lr: embeddings (vocab x width: one width-like dimension), biases,
        LayerNorm gains, and the MuReadout weight (also vocab x width). MuReadout divides its
        input by width_mult in the forward pass instead; a plain nn.Linear readout without that
        multiplier matches it with lr / width_mult (and weight_decay * width_mult).
        """
        par = self._doc["parametrization"]
        if par["kind"] != "mup" or not par.get("base_width"):
            return None
        base = float(par["base_width"])
        mult = width / base
        return {
            "optimizer": "mup.MuAdamW",
            "width": width,
            "base_width": base,
            "width_mult": mult,
            "groups": {
                "embeddings": {"lr": lr, "weight_decay_mult": 1.0},
                "vectors": {"lr": lr, "weight_decay_mult": 1.0, "params": "biases, norms"},
                "hidden_matrices": {"lr": lr / mult, "weight_decay_mult": mult},
                "readout": {
                    "lr": lr,
                    "weight_decay_mult": 1.0,
                    "output_mult": 1.0 / mult,
                    "plain_linear_lr": lr / mult,
                    "plain_linear_weight_decay_mult": mult,
                },
            },
            "note": (
                "as mup 1.0 MuAdamW does it; readout lr applies to a MuReadout layer "
                "(forward divides by width_mult); a plain nn.Linear readout takes plain_linear_lr"
            ),
        }

    def predict(
        self,
        n_params: float,
        tokens: float,
        *,
        seq_len: int | None = None,
        width: int | None = None,
        batch_tokens: float | None = None,
    ) -> Prediction:
        """LR, batch size and final loss for n_params and tokens.

        Laws fitted with several batch sizes per cell carry the optimal LR at a given batch
        (`lr_at_batch`): the LR returned is then the optimum at the recommended batch, or at
        `batch_tokens` when you give the batch you will train with (that batch is returned)."""
        # At least one parameter and one token: below that the laws' powers under- or
        # overflow to nonsense (an LR of 1e43), which is no prediction.
        n_params = check_positive("n_params", n_params, lower=1.0)
        tokens = check_positive("tokens", tokens, lower=1.0)
        if batch_tokens is not None:
            batch_tokens = check_positive("batch_tokens", batch_tokens, lower=1.0)
            check_batch_fits(batch_tokens, tokens)
        if seq_len is not None:
            seq_len = int(check_positive("seq_len", seq_len))
        if width is not None:
            width = int(check_positive("width", width))
        flops = 6.0 * n_params * tokens
        law_flops = self._law_flops(n_params, tokens, seq_len, width)
        warns: list[str] = []
        intervals: dict[str, tuple[float, float] | None] = {
            "lr": None,
            "batch_tokens": None,
            "loss": None,
        }
        loss = None
        if self.loss_law is not None:
            loss = float(self.loss_law.predict(n_params, tokens))
            intervals["loss"] = self.loss_law.predict_interval(n_params, tokens)
            form = self._doc["laws"]["loss"]["form"]
            if form in LOSS_FORMS[1:3]:
                notes = self._doc["laws"]["loss"].get("notes") or [f"reduced form {form}"]
                warns.append("loss law: " + notes[0])
                missing = self.loss_law.off_reduced_range(n_params, tokens)
                if missing is not None:
                    fitted = self.loss_law.data_range_[missing]
                    asked = n_params if missing == "n_params" else tokens
                    what = "size" if missing == "n_params" else "budget"
                    warns.append(
                        f"loss: the reduced loss law knows only {missing} {fitted[0]:.4g} to "
                        f"{fitted[1]:.4g}; at {missing}={asked:.4g} its loss is the one at that "
                        f"{what}, not a prediction, and no interval is given"
                    )
        batch = None
        if self.batch_law is not None:
            batch = float(self.batch_law.predict(n_params, tokens, law_flops))
            intervals["batch_tokens"] = self.batch_law.predict_interval(n_params, tokens, law_flops)
        elif self.critical_batch is not None and loss is not None:
            batch = self.critical_batch.from_loss(loss)
            warns.append(
                "batch_tokens is Kaplan's critical batch size B_crit(L) at the predicted loss, "
                "not a tuned optimum"
            )
        if batch_tokens is not None:
            batch, intervals["batch_tokens"] = batch_tokens, None
            warns.append("batch_tokens as given; loss is the optimum's (at the optimal batch)")
            if self.lr_at_batch_law is None and self.lr_law is not None:
                warns.append(
                    f"{self.id} has no LR law at a given batch: lr is the optimum at the law's "
                    "own batch size, not at the one given"
                )
            swept = (
                self._doc["laws"].get("lr_at_batch", {}).get("data_range", {}).get("batch_tokens")
            )
            if self.lr_at_batch_law is not None and swept:
                lo, hi = swept
                factor = range_factor(batch_tokens, lo, hi)
                if factor > 1.0 + 1e-6:
                    warns.append(
                        f"batch_tokens is {factor:.3g}x outside the batch range the LR-at-batch "
                        f"law was fitted on [{lo:.4g}, {hi:.4g}]: the LR at that batch is an "
                        "extrapolation"
                    )
        lr = None
        if self.lr_at_batch_law is not None and batch is not None:
            # The LR on the valley of the (LR, batch) landscape at this batch.
            lr = float(self.lr_at_batch_law.predict(n_params, tokens, batch_tokens=batch))
            intervals["lr"] = self._lr_at_batch_interval(
                n_params, tokens, law_flops, batch, given=batch_tokens is not None
            )
        elif self.lr_law is not None:
            lr = float(self.lr_law.predict(n_params, tokens, law_flops))
            intervals["lr"] = self.lr_law.predict_interval(n_params, tokens, law_flops)
        for name, value, what in (
            ("lr", lr, "learning-rate law"),
            ("batch_tokens", batch, "batch-size law"),
            ("loss", loss, "loss law"),
        ):
            if value is None:
                warns.append(f"{self.id} defines no {what}: {name} is None")
        batch_size = batch / seq_len if (batch is not None and seq_len) else None
        extrapolation = self._extrapolation(n_params, tokens, law_flops)
        warns += self._range_warnings(extrapolation)
        warns += list(self._doc.get("prediction_notes", []))
        groups = None
        if width is not None and lr is not None:
            groups = self.lr_groups(lr, width)
            if groups is None:
                warns.append("width only sets per-group LRs for muP laws; this law is not muP")
        return Prediction(
            law=self.id,
            n_params=n_params,
            tokens=tokens,
            flops=flops,
            lr=lr,
            batch_tokens=batch,
            batch_size=batch_size,
            loss=loss,
            intervals=intervals,
            extrapolation=extrapolation,
            warnings=warns,
            lr_kind=self.lr_kind(),
            lr_groups=groups,
            seq_len=seq_len,
            width=width,
        )

    def _lr_at_batch_interval(self, n_params, tokens, law_flops, batch, *, given: bool):
        """95% interval of the LR at this batch: the LR-at-batch law's bootstrap, paired with
        the batch law's when the batch is the recommended one (its uncertainty moves the LR
        too). Widened to contain the point estimate, which a percentile interval from few
        resamples can miss."""
        law = self.lr_at_batch_law
        batches = None
        if not given and self.batch_law is not None:
            batches = self.batch_law.sample_predictions(n_params, tokens, law_flops)
        # Sample i of the LR law at sample i of the batch (or at the given batch).
        lrs = law.sample_predictions(
            n_params, tokens, batch_tokens=batch if batches is None else batches
        )
        if lrs is None:
            return None
        point = float(law.predict(n_params, tokens, batch_tokens=batch))
        lo, hi = percentile_interval(lrs, point=point)
        return float(lo), float(hi)

    def compute_optimal(self, flops: float) -> dict:
        """The compute-optimal n_params and tokens for a FLOP budget (C = 6 N D), with the lr,
        batch and loss the laws give there."""
        flops = check_positive("flops", flops, lower=6.0)  # one parameter, one token
        warns: list[str] = []
        intervals: dict[str, Any] = {}
        if isinstance(self.loss_law, LossLaw) and self.loss_law.supports_compute_optimal:
            res = self.loss_law.compute_optimal(flops)
            n_opt, d_opt = res["n_params"], res["tokens"]
            intervals.update(res["intervals"])
        elif isinstance(self.loss_law, _KaplanLoss):
            n_opt, d_opt = _numeric_allocation(self.loss_law, flops)
            intervals.update(n_params=None, tokens=None)
            warns.append(
                "allocation minimizes Kaplan's L(N, D) at C = 6ND numerically; Kaplan's own "
                "compute-efficient frontier (early-stopped runs) differs"
            )
        elif self.allocation is not None:
            n_law, d_law = self.allocation
            n_opt = float(n_law.predict(flops=flops))
            d_opt = float(d_law.predict(flops=flops))
            intervals.update(n_params=None, tokens=None)
            warns += list(self._doc["laws"]["compute_allocation"].get("notes", []))
        else:
            have = ", ".join(self.supports()) or "nothing"
            reason = (
                f"its loss law is the reduced form {self._doc['laws']['loss']['form']}"
                if self.loss_law is not None
                else "it defines no loss law and no compute allocation"
            )
            raise UnsupportedQuery(
                f"{self.id} cannot answer compute_optimal: {reason} (it supports: {have})"
            )
        if not (n_opt >= 1.0 and d_opt >= 1.0):
            raise ValueError(
                f"flops must be large enough for one parameter and one token: at {flops:g} the "
                f"compute-optimal allocation is n_params {n_opt:.3g}, tokens {d_opt:.3g}"
            )
        pred = self.predict(n_opt, d_opt)
        intervals.setdefault("loss", pred.intervals["loss"])
        intervals["lr"] = pred.intervals["lr"]
        intervals["batch_tokens"] = pred.intervals["batch_tokens"]
        return jsonable(
            {
                "law": self.id,
                "flops": flops,
                "n_params": n_opt,
                "tokens": d_opt,
                "lr": pred.lr,
                "batch_tokens": pred.batch_tokens,
                "loss": pred.loss,
                "intervals": intervals,
                "warnings": warns + pred.warnings,
            }
        )

    def trajectory_inputs(
        self,
        n_params: float,
        tokens: float,
        *,
        lr: float | None = None,
        batch_tokens: float | None = None,
        seq_len: int | None = None,
    ) -> dict[str, Any]:
        """The peak LR, batch and step count a `trajectory` query runs at, and where each came
        from, without drawing the curve: {lr, lr_source, batch_tokens, batch_tokens_source,
        steps, prediction}. Sources: "given", "recommended" (the laws' optimum; for the LR, the
        optimum at the batch), or "the fitted runs' mean" (the trajectory law's own fitted
        runs' geometric mean, where the laws define no batch or no LR)."""
        n_params = check_positive("n_params", n_params, lower=1.0)
        tokens = check_positive("tokens", tokens, lower=1.0)
        if self._trajectory is None:
            raise UnsupportedQuery(
                f"{self.id} has no trajectory law (fit with a curves table to get one)"
            )
        if lr is not None:
            lr = check_positive("lr", lr)
        pred = None
        if lr is None or batch_tokens is None:
            # A given batch gets the LR that is optimal at that batch (where the laws know it).
            pred = self.predict(n_params, tokens, seq_len=seq_len, batch_tokens=batch_tokens)
        else:
            batch_tokens = check_positive("batch_tokens", batch_tokens, lower=1.0)
        out: dict[str, Any] = {"prediction": pred}
        for key, given in (("lr", lr), ("batch_tokens", batch_tokens)):
            recommended = getattr(pred, key) if pred is not None else None
            if given is not None:
                out[key], out[f"{key}_source"] = float(given), "given"
            elif recommended is not None:
                out[key], out[f"{key}_source"] = float(recommended), "recommended"
            else:
                out[key] = float(self._trajectory._default(key))
                out[f"{key}_source"] = "the fitted runs' mean"
        check_batch_fits(out["batch_tokens"], tokens)
        out["steps"] = _steps(tokens, out["batch_tokens"])
        return out

    def trajectory(
        self,
        n_params: float,
        tokens: float,
        *,
        schedule: Any = "cosine",
        warmup: int | None = None,
        points: int = 200,
        lr: float | None = None,
        batch_tokens: float | None = None,
        seq_len: int | None = None,
        max_steps: int | None = None,
        inputs: dict[str, Any] | None = None,
        corrected: bool = True,
    ) -> pd.DataFrame:
        """The predicted loss curve (columns step, tokens, lr, loss, loss_low, loss_high, and
        loss_law_alone: the smooth law without its residual map) under a schedule, at the
        given lr / batch or the ones the laws recommend. `frame.attrs` holds the peak LR and
        batch used and where they came from (see `trajectory_inputs`), and
        `residual_correction`: how much of the curve is the fitted runs' own misfit
        (CrossSizeTrajectoryLaw.correction_support). corrected=False draws the law alone.
        max_steps refuses (ValueError on tokens) a run of more optimizer steps than that.
        inputs: what `trajectory_inputs(n_params, tokens, ...)` returned for these same
        arguments, to draw several schedules from one prediction (instead of lr, batch_tokens
        and seq_len)."""
        if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or points < 2:
            raise ValueError(f"points must be an integer >= 2, got {points!r}")
        if not isinstance(schedule, (str, ScheduleSpec)):
            raise ValueError(f"schedule must be a name or a ScheduleSpec, got {schedule!r}")
        if inputs is None:
            inputs = self.trajectory_inputs(
                n_params, tokens, lr=lr, batch_tokens=batch_tokens, seq_len=seq_len
            )
        else:
            inputs = self._check_trajectory_inputs(inputs, tokens, lr, batch_tokens, seq_len)
        if max_steps is not None and inputs["steps"] > max_steps:
            raise ValueError(
                f"tokens {tokens:g} at batch_tokens {inputs['batch_tokens']:g} is "
                f"{inputs['steps']:.3g} optimizer steps; a trajectory is drawn for at most "
                f"{max_steps:.3g}"
            )
        # The cross-size law draws the curve and its interval.
        frame = self._trajectory.trajectory(
            n_params,
            tokens,
            lr=inputs["lr"],
            batch_tokens=inputs["batch_tokens"],
            schedule=schedule,
            warmup=warmup,
            points=points,
            corrected=corrected,
        )
        frame.attrs.update({k: v for k, v in inputs.items() if k != "prediction"})
        # Where the curve's inputs leave the runs the trajectory law was fitted on.
        fitted = getattr(self._trajectory, "fitted_range_", {}) or {}
        outside = []
        for key, value in (
            ("lr", inputs["lr"]),
            ("batch_tokens", inputs["batch_tokens"]),
            ("steps", inputs["steps"]),
        ):
            lo, hi = fitted.get(key, (None, None))
            if lo and hi and value > 0:
                factor = range_factor(value, lo, hi)
                if factor > 1.0 + 1e-6:
                    outside.append((key, value, factor, lo, hi))
        curve = frame[["loss", "loss_low", "loss_high"]].to_numpy(dtype=float)
        if not (np.isfinite(curve).all() and (curve > 0).all()):
            what = "; ".join(
                f"{k} {v:.4g} is {f:.3g}x outside [{a:.4g}, {b:.4g}]" for k, v, f, a, b in outside
            )
            worst = max(outside, key=lambda o: o[2])[0] if outside else "tokens"
            first = "tokens" if worst == "steps" else worst
            raise ValueError(
                f"{first}: the trajectory law gives no finite positive loss at these settings"
                + (f" ({what}: its fitted runs' range)" if what else "")
            )
        warns = [
            f"{k} {v:.4g} is {f:.3g}x outside the trajectory law's fitted runs "
            f"[{a:.4g}, {b:.4g}]: the curve is an extrapolation"
            for k, v, f, a, b in outside
        ]
        spread = frame.attrs.get("interval") or {}
        if spread.get("left_out"):
            k = spread["left_out"]
            warns.append(
                f"loss_low, loss_high: the interval leaves out {k} of the trajectory law's "
                f"{spread['refits']} bootstrap refits: {'its' if k == 1 else 'their'} loss goes "
                "non-positive on this run (an annealing term that grows without bound beyond "
                "the fitted runs)"
            )
        pred = inputs["prediction"]
        interval = pred.intervals.get("loss") if pred is not None else None
        recommended = inputs["lr_source"] == inputs["batch_tokens_source"] == "recommended"
        if recommended and pred.loss is not None and interval and frame.size:
            end, (lo, hi) = float(frame["loss"].iloc[-1]), interval
            if not lo <= end <= hi:
                warns.append(
                    f"the curve ends at loss {end:.4g}, outside the loss law's {pred.loss:.4g} "
                    f"[{lo:.4g}, {hi:.4g}] for this N and D at the optimal LR and batch: the two "
                    "laws are fitted separately, and for the final loss of the sweep's own "
                    "schedule the loss law is the one its backtests support"
                )
        frame.attrs["warnings"] = warns
        return frame

    @staticmethod
    def _check_trajectory_inputs(inputs, tokens, lr, batch_tokens, seq_len) -> dict[str, Any]:
        if lr is not None or batch_tokens is not None or seq_len is not None:
            raise ValueError("inputs: give either inputs or lr / batch_tokens / seq_len, not both")
        keys = ("lr", "lr_source", "batch_tokens", "batch_tokens_source", "steps", "prediction")
        if not isinstance(inputs, dict) or any(k not in inputs for k in keys):
            raise ValueError(
                f"inputs must be what trajectory_inputs returns (keys {', '.join(keys)}), "
                f"got {inputs!r:.200}"
            )
        tokens = check_positive("tokens", tokens, lower=1.0)
        if inputs["steps"] != _steps(tokens, inputs["batch_tokens"]):
            raise ValueError(
                f"inputs: made for another token budget ({inputs['steps']} steps at batch_tokens "
                f"{inputs['batch_tokens']:g}, not tokens {tokens:g})"
            )
        return inputs


def _steps(tokens: float, batch_tokens: float) -> int:
    """Optimizer steps of a run of `tokens` at `batch_tokens` per step (at least one)."""
    return max(1, round(tokens / batch_tokens))


def _numeric_allocation(loss_law, flops: float) -> tuple[float, float]:
    from scipy.optimize import minimize_scalar

    def f(log_n: float) -> float:
        n = math.exp(log_n)
        return loss_law.predict(n, flops / (6.0 * n))

    centre = 0.5 * math.log(flops / 6.0)
    res = minimize_scalar(f, bounds=(centre - 25, centre + 25), method="bounded")
    n = math.exp(res.x)
    return n, flops / (6.0 * n)


# --- fitting ---------------------------------------------------------------------------------
def _parametrization(runs: pd.DataFrame) -> dict:
    if "parametrization" not in runs.columns:
        return {"kind": "unknown", "base_width": None}
    kinds = sorted(set(runs["parametrization"].dropna().astype(str).str.lower()))
    if not kinds:
        return {"kind": "unknown", "base_width": None}
    if len(kinds) > 1:
        warnings.warn(
            f"runs mix parametrizations {kinds}: the LR law mixes incomparable LRs",
            UserWarning,
            stacklevel=3,
        )
        return {"kind": "mixed", "base_width": None}
    kind = kinds[0] if kinds[0] in ("mup", "sp") else "unknown"
    base = None
    if kind == "mup" and "base_width" in runs.columns:
        widths = runs["base_width"].dropna().unique()
        if len(widths) == 1:
            base = float(widths[0])
        elif len(widths) > 1:
            warnings.warn(
                f"runs use several muP base widths {sorted(widths)}: LRs are not comparable",
                UserWarning,
                stacklevel=3,
            )
    return {"kind": kind, "base_width": base}


def _fit_hparam(
    table: pd.DataFrame, boot: np.ndarray | None, col: int, target: str, value_col: str, seed
):
    """The (N, D) law and the compute law of one hyperparameter, or (None, None, note)."""
    edge_cols = "edge_lr" if target == "lr" else "edge_batch"
    bv = None if boot is None else np.exp(boot[:, :, col])
    args = (table["n_params"].to_numpy(), table["tokens"].to_numpy(), table[value_col].to_numpy())
    names = table["cell"].tolist()
    laws = []
    for compute in (False, True):
        try:
            laws.append(
                fit_power_law(
                    target,
                    *args,
                    bv,
                    exclude=table[edge_cols].to_numpy(),
                    compute=compute,
                    seed=seed,
                    cell_names=names,
                )
            )
        except ValueError as exc:
            warnings.warn(f"{target} law not fitted: {exc}", UserWarning, stacklevel=3)
            laws.append(None)
    return laws


class OptimumLaws(NamedTuple):
    """The cell optima and the laws fitted on them; None where the runs do not support one."""

    cells: pd.DataFrame
    loss: LossLaw | None
    lr: PowerLaw | None
    lr_compute: PowerLaw | None
    batch_tokens: PowerLaw | None
    batch_tokens_compute: PowerLaw | None
    lr_at_batch: PowerLaw | None  # the optimal LR at a given batch size


def fit_optimum_laws(
    runs: pd.DataFrame,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    n_jobs: int = 1,
    progress=None,
    loss_intervals: bool = True,
    cache: BootstrapCache | None = None,
) -> OptimumLaws:
    """Cell optima, then the final-loss law and the LR and batch laws on them (no trajectory
    law, no law file): what `fit` builds on, and what a backtest refits without some cells.
    Why a law was reduced or not fitted is raised as a warning.

    The cell bootstrap also weights the cells of the LR and batch laws (by the spread of each
    cell's resampled optimum), so their point estimates depend on `bootstrap` and `seed`, not
    only their intervals; bootstrap=0 weights all cells alike. loss_intervals=False skips the
    loss law's own bootstrap, which changes only its intervals (what a backtest can spare).
    A `BootstrapCache` shared between fits resamples each cell once (the same resamples)."""
    table, boot, cell_runs = cell_optima(
        runs,
        bootstrap=bootstrap,
        seed=seed,
        n_jobs=n_jobs,
        progress=progress,
        return_bootstrap=True,
        cache=cache,
    )
    ok = np.isfinite(table["loss_opt"].to_numpy())
    loss_law = None
    try:
        loss_law = LossLaw(
            bootstrap=bootstrap if loss_intervals else 0,
            seed=seed,
            n_jobs=n_jobs,
            progress=progress,
        ).fit(
            table.loc[ok, "n_params"].to_numpy(),
            table.loc[ok, "tokens"].to_numpy(),
            table.loc[ok, "loss_opt"].to_numpy(),
        )
        for note in loss_law.notes_:
            warnings.warn(f"loss law: {note}", UserWarning, stacklevel=3)
    except ValueError as exc:
        warnings.warn(f"loss law not fitted: {exc}", UserWarning, stacklevel=3)
    lr_law, lr_c = _fit_hparam(table, boot, 0, "lr", "lr_opt", seed)
    batch_law, batch_c = (None, None)
    if (table["batch_opt"].nunique() > 1) and table.get("method") is not None:
        varied = runs.groupby(runs["n_params"])["batch_tokens"].nunique().max() > 1
        if varied:
            batch_law, batch_c = _fit_hparam(table, boot, 1, "batch_tokens", "batch_opt", seed)
    if batch_law is None:
        warnings.warn(
            "batch_tokens was not varied within cells: no batch-size law", UserWarning, stacklevel=3
        )
    lr_at_batch = None
    conditional = conditional_lr_optima(cell_runs) if batch_law is not None else None
    if conditional is not None and len(conditional):
        try:
            lr_at_batch = fit_lr_at_batch(conditional, bootstrap=bootstrap, seed=seed)
        except ValueError as exc:
            warnings.warn(f"lr law at a given batch not fitted: {exc}", UserWarning, stacklevel=3)
    return OptimumLaws(table, loss_law, lr_law, lr_c, batch_law, batch_c, lr_at_batch)


def _backtest(
    runs: pd.DataFrame,
    table: pd.DataFrame,
    seed: int,
    bootstrap: int,
    n_jobs: int,
    cache: BootstrapCache | None = None,
) -> dict:
    """Refit without the largest n_params and predict its cells. The refit uses the cell
    bootstrap (from `cache`, where the full fit left it): it weights the cells of the LR and
    batch laws, so without it the refit would not be the law the full fit ships."""
    n_max = float(table["n_params"].max())
    held = np.isclose(runs["n_params"].to_numpy(), n_max, rtol=1e-6)
    if table["n_params"].nunique() < 3:
        return {"skipped": "fewer than three model sizes: nothing left to fit after holding out"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            core = fit_optimum_laws(
                runs[~held],
                bootstrap=bootstrap,
                seed=seed,
                n_jobs=n_jobs,
                loss_intervals=False,
                cache=cache,
            )
            loss_law, lr_law, batch_law = core.loss, core.lr, core.batch_tokens
        except (ValueError, RuntimeError) as exc:
            return {"skipped": f"refit without n_params={n_max:.4g} failed: {exc}"}
    rows = []
    for _, cell in table[np.isclose(table["n_params"], n_max, rtol=1e-6)].iterrows():
        n, d = float(cell["n_params"]), float(cell["tokens"])
        row = {"cell": cell["cell"], "n_params": n, "tokens": d}
        if loss_law is not None and np.isfinite(cell["loss_opt"]):
            pred = float(loss_law.predict(n, d))
            row.update(
                loss=float(cell["loss_opt"]),
                loss_pred=pred,
                loss_error_pct=100.0 * (pred - cell["loss_opt"]) / cell["loss_opt"],
            )
        if lr_law is not None and np.isfinite(cell["lr_opt"]):
            pred = float(lr_law.predict(n, d, 6 * n * d))
            row.update(lr=float(cell["lr_opt"]), lr_pred=pred, lr_ratio=pred / cell["lr_opt"])
        if batch_law is not None and np.isfinite(cell["batch_opt"]):
            pred = float(batch_law.predict(n, d, 6 * n * d))
            row.update(
                batch_tokens=float(cell["batch_opt"]),
                batch_tokens_pred=pred,
                batch_ratio=pred / cell["batch_opt"],
            )
        rows.append(row)
    summary: dict[str, Any] = {
        "held_out_n_params": n_max,
        "fitted_on_rows": int((~held).sum()),
        "cells": rows,
        "refit_warnings": sorted({str(w.message) for w in caught}),
    }
    for key, agg in (("loss_error_pct", "abs"), ("lr_ratio", "log"), ("batch_ratio", "log")):
        vals = np.array([r[key] for r in rows if key in r], float)
        if vals.size:
            if agg == "abs":
                summary["mean_abs_loss_error_pct"] = float(np.mean(np.abs(vals)))
                summary["max_abs_loss_error_pct"] = float(np.max(np.abs(vals)))
            else:
                worst = vals[np.argmax(np.abs(np.log(vals)))]
                summary[f"geomean_{key}"] = float(np.exp(np.mean(np.log(vals))))
                summary[f"worst_{key}"] = float(worst)
    return summary


def _searched_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of cells that searched lr / batch; cells run at a single setting (schedule
    variants for the trajectory law) are left out of the loss and hyperparameter laws, with a
    warning, unless no cell searched at all."""
    mask = searched_cells(runs)
    if mask.all() or not mask.any():
        return runs
    left = sorted(set(runs.loc[~mask, "cell"] if "cell" in runs.columns else []))
    names = f" ({', '.join(map(str, left))})" if left else ""
    warnings.warn(
        f"{int((~mask).sum())} run(s) in cells with fewer than 3 lr/batch settings{names} are "
        "left out of the loss, lr and batch laws (they still feed the trajectory law)",
        stacklevel=3,
    )
    return runs[mask.to_numpy()]


def fit(
    runs: pd.DataFrame | str | os.PathLike,
    curves: pd.DataFrame | str | os.PathLike | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    n_jobs: int = 2,
    sweep: str | None = None,
    progress: bool = False,
    trajectory_options: dict | None = None,
) -> ScalingLaws:
    """Fit every law the runs support (and the trajectory law when curves are given).

    Warnings raised while fitting (edge optima, reduced forms, excluded runs) are also stored
    in the law file under "warnings". trajectory_options go to the trajectory law's
    constructor (default: the same seed).

    bootstrap: resamples for the intervals. The cell resamples also weight the cells of the LR
    and batch laws (by the spread of each cell's optimum), so with few of them those laws'
    point estimates depend on the seed; 0 weights all cells alike.
    """
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    if isinstance(runs, (str, os.PathLike)):
        runs = read_runs(runs)
        sha = runs.attrs["sha256"]
    else:
        sha = runs.attrs.get("sha256") or runs_sha256(runs)
        runs = validate_runs(runs)
    if isinstance(curves, (str, os.PathLike)):
        # Read before any fit: a curves file that cannot be read (or lacks a column) is an
        # error, not a trajectory law skipped with a warning.
        curves = read_curves(curves)
    if sweep is None:
        sweep = (
            str(runs["sweep"].dropna().iloc[0])
            if "sweep" in runs.columns and runs["sweep"].notna().any()
            else "sweep"
        )
    bar = None
    if progress and bootstrap:
        from tqdm.auto import tqdm

        n_cells = runs.groupby(["n_params", "tokens"]).ngroups
        # One unit per cell (its runs resampled `bootstrap` times), then one per loss-law resample.
        bar = tqdm(total=n_cells + bootstrap, desc="bootstrap", unit="step", leave=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def tick(k: float) -> None:
            if bar is not None:
                bar.update(int(round(k)))

        search_runs = _searched_runs(runs)
        cache = BootstrapCache()
        with single_threaded_blas():
            table, loss_law, lr_law, lr_c, batch_law, batch_c, lr_at_batch = fit_optimum_laws(
                search_runs,
                bootstrap=bootstrap,
                seed=seed,
                n_jobs=n_jobs,
                progress=tick if bar else None,
                cache=cache,
            )
            if bar is not None:
                bar.n = bar.total
                bar.close()
            backtest = _backtest(search_runs, table, seed, bootstrap, n_jobs, cache)
        trajectory = None
        if curves is not None:
            with single_threaded_blas():
                trajectory = _fit_trajectory(runs, curves, trajectory_options or {"seed": seed})
    fit_warnings = []
    for w in caught:
        msg = str(w.message)
        # numpy's RuntimeWarnings (an empty slice's mean) are symptoms, not reasons.
        if msg not in fit_warnings and w.category is not RuntimeWarning:
            fit_warnings.append(msg)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    n_pruned = int(runs["pruned"].sum())
    if n_pruned:
        fit_warnings.append(
            f"{n_pruned} pruned run(s) excluded from the loss and optimum fits (not finished runs)"
        )
    finished = runs[runs["finished"]]
    laws: dict[str, Any] = {}
    if loss_law is not None:
        laws["loss"] = loss_law.to_dict()
    for key, law in (
        ("lr", lr_law),
        ("batch_tokens", batch_law),
        ("lr_compute", lr_c),
        ("batch_tokens_compute", batch_c),
        ("lr_at_batch", lr_at_batch),
    ):
        if law is not None:
            laws[key] = law.to_dict()
    if not laws:
        n_finished = int(runs["finished"].sum())
        reasons = "; ".join(fit_warnings) or "no reason recorded"
        raise ValueError(
            f"the runs support no law ({len(runs)} rows, {n_finished} finished, {n_pruned} "
            f"pruned): {reasons}"
        )
    doc = {
        "format_version": FORMAT_VERSION,
        "id": sweep,
        "kind": "fitted",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "citation": None,
        "source": {
            "sweep": sweep,
            "rows": int(len(runs)),
            "sha256": sha,
            "file": runs.attrs.get("source"),
            "n_finished": int(runs["finished"].sum()),
            "n_diverged": int(runs["diverged"].sum()),
            "n_pruned": n_pruned,
            "n_cells": int(len(table)),
        },
        "parametrization": _parametrization(runs),
        "units": {
            "n_params": "non-embedding parameters",
            "tokens": "training tokens",
            "flops": "6 * n_params * tokens",
            "lr": "peak learning rate",
            "batch_tokens": "tokens per optimizer step",
            "loss": "final validation cross-entropy, nats per token (sweep's tokenizer)",
        },
        "compute": {"definition": "6ND"},
        "fitted_range": {
            "n_params": [float(runs["n_params"].min()), float(runs["n_params"].max())],
            "tokens": [float(runs["tokens"].min()), float(runs["tokens"].max())],
            "flops": [float(runs["flops"].min()), float(runs["flops"].max())],
            "loss": (
                [float(finished["loss"].min()), float(finished["loss"].max())]
                if len(finished)
                else None
            ),
        },
        "fit_settings": {"bootstrap": bootstrap, "seed": seed, "level": 0.95},
        "laws": laws,
        "cells": table.to_dict(orient="records"),
        "backtest": backtest,
        "trajectory": trajectory.to_dict() if trajectory is not None else None,
        "warnings": fit_warnings,
    }
    doc = jsonable(doc)
    return ScalingLaws(doc, trajectory_law=trajectory)


def _fit_trajectory(runs: pd.DataFrame, curves: pd.DataFrame, options: dict):
    try:
        return CrossSizeTrajectoryLaw(**options).fit(runs, curves)
    except (ValueError, RuntimeError) as exc:
        warnings.warn(f"trajectory law not fitted: {exc}", UserWarning, stacklevel=3)
        return None


def load(path_or_preset: str | os.PathLike) -> ScalingLaws:
    """A law file by path, or a preset by name (see `list_presets()`)."""
    from .presets import PRESETS, preset_path

    if isinstance(path_or_preset, str) and path_or_preset in PRESETS:
        path = preset_path(path_or_preset)
        return ScalingLaws(read_law_file(path), path=str(path))
    if not isinstance(path_or_preset, (str, os.PathLike)):
        raise ValueError(f"expected a law-file path or preset name, got {path_or_preset!r}")
    path = Path(path_or_preset)
    if not path.exists() and isinstance(path_or_preset, str) and "/" not in path_or_preset:
        if not path_or_preset.endswith(".json"):
            raise ValueError(
                f"unknown law {path_or_preset!r}: not a file and not a preset "
                f"({', '.join(PRESETS)})"
            )
    doc = read_law_file(path)
    return ScalingLaws(doc, path=str(path))
