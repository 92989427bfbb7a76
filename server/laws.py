"""The laws the service answers from: loaded once when the app starts (fitted law files under
the laws directory, plus every preset), looked up by id only, with answers cached."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import scaling

from . import schemas
from .errors import APIError

log = logging.getLogger(__name__)

# Presets tried, in order, when no fitted law is there to be the default.
PREFERRED_PRESETS = ("step-law", "deepseek")
PREFERRED_FITTED = ("reference", "quick")


def json_safe(value: Any) -> Any:
    """numpy scalars and arrays to Python, NaN and infinities to null: strict JSON only."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return json_safe(float(value))
    return str(value)


class LawRegistry:
    """Every law on offer, by id, and the default one. Built once per app."""

    def __init__(
        self,
        laws: dict[str, scaling.ScalingLaws],
        *,
        default: str,
        fitted: tuple[str, ...] = (),
        cache_size: int = 4096,
    ) -> None:
        if default not in laws:
            raise ValueError(f"default law {default!r} is not among the loaded laws {sorted(laws)}")
        self.laws = laws
        self.default = default
        self.fitted = fitted
        self._info = {law_id: json_safe(law.info()) for law_id, law in laws.items()}
        # Per-registry caches (no module-level state): answers depend only on the arguments.
        self.predict = functools.lru_cache(maxsize=cache_size)(self._predict)
        self.compute_optimal = functools.lru_cache(maxsize=cache_size)(self._compute_optimal)
        self._trajectory_cached = functools.lru_cache(maxsize=256)(self._trajectory)
        self._law_dict = functools.cache(self._law_file)

    # ---- loading ----

    @classmethod
    def load(
        cls,
        laws_dir: str | Path | None,
        *,
        default: str | None = None,
        presets: bool = True,
        cache_size: int = 4096,
    ) -> LawRegistry:
        laws: dict[str, scaling.ScalingLaws] = {}
        if presets:
            for name in scaling.list_presets():
                try:
                    laws[name] = scaling.load(name)
                except Exception:  # a broken preset must not take the service down
                    log.exception("preset %r could not be loaded; skipped", name)
        fitted = []
        for path in sorted(Path(laws_dir).glob("*/laws.json")) if laws_dir else []:
            try:
                law = scaling.load(str(path))
            except Exception as error:  # noqa: BLE001 - logged and skipped, by design
                log.error("law file %s could not be loaded (%s); skipped", path, error)
                continue
            if law.id in laws:
                log.error("law file %s has id %r, already taken; skipped", path, law.id)
                continue
            laws[law.id] = law
            fitted.append(law.id)
        if not laws:
            raise RuntimeError(f"no law could be loaded (laws directory {laws_dir!r})")
        chosen = default or cls.pick_default(laws, fitted)
        log.info("laws loaded: %s; default %s", sorted(laws), chosen)
        return cls(laws, default=chosen, fitted=tuple(fitted), cache_size=cache_size)

    @staticmethod
    def pick_default(laws: Mapping[str, scaling.ScalingLaws], fitted: list[str]) -> str:
        """SCALING_DEFAULT_LAW wins (the caller passes it); else the fitted "reference" law,
        else the fitted "quick" law, else the first preset of PREFERRED_PRESETS that answers
        both lr and batch_tokens, else any law that does, else the first id."""
        for law_id in PREFERRED_FITTED:
            if law_id in fitted:
                return law_id
        answers_both = [
            law_id
            for law_id, law in laws.items()
            if {"lr", "batch_tokens"} <= set(law.info().get("supports", ()))
        ]
        for law_id in PREFERRED_PRESETS:
            if law_id in answers_both:
                return law_id
        return (sorted(answers_both) or sorted(laws))[0]

    # ---- lookups ----

    def get(self, law_id: str | None, *, field: str = "law") -> scaling.ScalingLaws:
        law_id = self.default if law_id is None else law_id
        law = self.laws.get(law_id)
        if law is None:
            raise APIError(
                f"unknown law {law_id[:100]!r}; see /v1/laws",
                code="unknown_law",
                field=field,
                status=404,
            )
        return law

    def info(self, law_id: str) -> dict[str, Any]:
        return {**self._info[law_id], "default": law_id == self.default}

    def infos(self) -> list[dict[str, Any]]:
        return [self.info(law_id) for law_id in sorted(self.laws)]

    # ---- answers (cached: laws are immutable once loaded) ----

    def _predict(
        self,
        law_id: str,
        n_params: float,
        tokens: float,
        seq_len: int | None = None,
        width: int | None = None,
        batch_tokens: float | None = None,
    ) -> dict[str, Any]:
        law = self.get(law_id)
        prediction = law.predict(
            n_params, tokens, seq_len=seq_len, width=width, batch_tokens=batch_tokens
        )
        return self._prediction_answer(
            law_id, prediction, n_params, tokens, seq_len, width, batch_tokens
        )

    @staticmethod
    def _prediction_answer(
        law_id: str,
        prediction: scaling.Prediction,
        n_params: float,
        tokens: float,
        seq_len: int | None = None,
        width: int | None = None,
        batch_tokens: float | None = None,
    ) -> dict[str, Any]:
        """The /v1/predict answer for a Prediction that law_id made at these arguments."""
        inputs = {"n_params": n_params, "tokens": tokens, "seq_len": seq_len, "width": width}
        if batch_tokens is not None:
            inputs["batch_tokens"] = batch_tokens
        answer = {"law": law_id, "inputs": inputs}
        answer.update(
            (key, value)
            for key, value in json_safe(prediction.to_dict()).items()
            if key not in answer
        )
        return answer

    def _compute_optimal(self, law_id: str, flops: float) -> dict[str, Any]:
        law = self.get(law_id)
        answer = {"law": law_id, "inputs": {"flops": flops}}
        answer.update(
            (key, value)
            for key, value in json_safe(law.compute_optimal(flops)).items()
            if key not in answer
        )
        n_params, tokens = answer.get("n_params"), answer.get("tokens")
        if n_params and tokens:
            extrapolation = self.predict(law_id, n_params, tokens)["extrapolation"]
        else:
            extrapolation = {"n_params_factor": None, "tokens_factor": None}
        answer.setdefault("extrapolation", extrapolation)
        answer.setdefault("intervals", {})
        answer.setdefault("warnings", [])
        return answer

    def trajectory(self, law_id: str, query: dict[str, Any]) -> dict[str, Any]:
        return self._trajectory_cached(law_id, tuple(sorted(query.items())))

    def _trajectory(self, law_id: str, items: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        query = dict(items)
        law = self.get(law_id)
        if "trajectory" not in self._info[law_id].get("supports", ()):
            raise scaling.UnsupportedQuery(f"{law_id} has no trajectory law")
        n_params, tokens = query["n_params"], query["tokens"]
        seq_len, batch_tokens = query.get("seq_len"), query.get("batch_tokens")
        # The batch the curve is drawn at (given, recommended, or the trajectory law's own
        # fitted runs' mean where the law has no batch law) sets the step count: cap it first.
        inputs = law.trajectory_inputs(
            n_params, tokens, lr=query.get("lr"), batch_tokens=batch_tokens, seq_len=seq_len
        )
        # One prediction per request: trajectory_inputs made it (at these very arguments)
        # unless both lr and batch_tokens were given, and law.trajectory reuses it.
        prediction = inputs["prediction"]
        if prediction is None:
            prediction = law.predict(n_params, tokens, seq_len=seq_len, batch_tokens=batch_tokens)
        prediction = self._prediction_answer(
            law_id, prediction, n_params, tokens, seq_len, batch_tokens=batch_tokens
        )
        if inputs["steps"] > schemas.MAX_TRAJECTORY_STEPS:
            raise APIError(
                f"tokens / batch_tokens = {tokens:.4g} / {inputs['batch_tokens']:.4g} = "
                f"{inputs['steps']:.3g} optimizer steps; a trajectory is answered for at most "
                f"{schemas.MAX_TRAJECTORY_STEPS:.0e}",
                code="out_of_range",
                field="tokens",
            )
        frame = law.trajectory(
            n_params,
            tokens,
            schedule=query["schedule"],
            points=query["points"],
            warmup=query.get("warmup"),
            inputs=inputs,
        )
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        warns = list(prediction.get("warnings", []))
        for key in ("lr", "batch_tokens"):
            if inputs[f"{key}_source"] == "the fitted runs' mean":
                warns.append(
                    f"{law_id} recommends no {key}: the curve is drawn at its trajectory law's "
                    f"fitted runs' geometric mean, {key} {inputs[key]:.4g}"
                )
        warns += [w for w in frame.attrs.get("warnings", []) if w not in warns]
        return {
            "law": law_id,
            "inputs": {**query, "law": law_id},
            "steps": json_safe(columns["step"].astype(np.int64)),
            **{
                name: json_safe(columns[name])
                for name in ("tokens", "lr", "loss", "loss_low", "loss_high", "loss_law_alone")
                if name in columns
            },
            "peak_lr": inputs["lr"],
            "peak_lr_source": inputs["lr_source"],
            "batch_tokens": inputs["batch_tokens"],
            "batch_tokens_source": inputs["batch_tokens_source"],
            "residual_correction": json_safe(frame.attrs.get("residual_correction")),
            "interval": json_safe(frame.attrs.get("interval")),
            "extrapolation": prediction["extrapolation"],
            "warnings": warns,
        }

    def optima(self, law_id: str) -> list[dict[str, Any]]:
        """The per-cell optima (sweep points) the LR and batch laws were fitted on."""
        return cell_optima(self._law_dict(law_id))

    def _law_file(self, law_id: str) -> dict[str, Any]:
        return json_safe(self.get(law_id).to_dict())

    def detail(self, law_id: str) -> dict[str, Any]:
        self.get(law_id)
        return {
            "info": self.info(law_id),
            "law": self._law_dict(law_id),
            "optima": self.optima(law_id),
        }

    def curves(self, law_id: str, n_params: float, tokens: float, points: int) -> dict[str, Any]:
        """The LR, batch and loss laws along N at the query's tokens-per-parameter ratio."""
        info = self.info(law_id)
        ratio = tokens / n_params
        fitted = (info.get("fitted_range") or {}).get("n_params") or [n_params, n_params]
        lo = max(min(fitted[0], n_params) / 3.0, 1.0)
        hi = min(max(fitted[1], n_params) * 3.0, 1e15)
        grid = np.geomspace(lo, hi, points)
        grid = grid[grid * ratio <= 1e17]
        rows = [self.predict(law_id, float(n), float(n * ratio)) for n in grid]

        def column(key: str, side: int | None = None) -> list[float | None]:
            if side is None:
                return [row.get(key) for row in rows]
            return [(row["intervals"].get(key) or [None, None])[side] for row in rows]

        query = self.predict(law_id, n_params, tokens)
        return {
            "law": law_id,
            "inputs": {"n_params": n_params, "tokens": tokens, "points": points},
            "tokens_per_param": ratio,
            "n_params": json_safe(grid),
            "tokens": json_safe(grid * ratio),
            "lr": column("lr"),
            "lr_low": column("lr", 0),
            "lr_high": column("lr", 1),
            "batch_tokens": column("batch_tokens"),
            "batch_tokens_low": column("batch_tokens", 0),
            "batch_tokens_high": column("batch_tokens", 1),
            "loss": column("loss"),
            "optima": self.optima(law_id),
            "query": {
                "n_params": n_params,
                "tokens": tokens,
                **{key: query.get(key) for key in ("lr", "batch_tokens", "loss")},
            },
        }


def cell_optima(law_file: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-cell optima from a law file (contract 2) as rows of n_params, tokens, lr,
    batch_tokens, loss (+ whatever else the file keeps); [] for presets, which have no sweep."""
    optima = law_file.get("cells") or []
    if isinstance(optima, Mapping):  # column-wise
        optima = [dict(zip(optima, row, strict=True)) for row in zip(*optima.values(), strict=True)]
    rows = []
    for row in optima:
        if isinstance(row, Mapping):
            row = {_OPTIMUM_NAMES.get(key, key): value for key, value in row.items()}
            rows.append(row)
    return rows


# Column names of scaling's cell-optima table, in the names the API uses.
_OPTIMUM_NAMES = {"lr_opt": "lr", "batch_opt": "batch_tokens", "loss_opt": "loss"}
