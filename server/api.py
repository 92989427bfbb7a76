"""The JSON API (contract 4): predictions, trajectories, compute-optimal allocations, the laws
on offer, and liveness. Every answer names its law and echoes the inputs as understood."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, jsonify, request

import scaling

from . import schemas
from .errors import APIError
from .laws import LawRegistry

bp = Blueprint("api", __name__)

_PREDICT = schemas.PredictQuery()
_TRAJECTORY = schemas.TrajectoryQuery()
_COMPUTE_OPTIMAL = schemas.ComputeOptimalQuery()
_CURVES = schemas.CurvesQuery()


def registry() -> LawRegistry:
    return current_app.extensions["scaling_laws"]


def query_args() -> dict[str, str]:
    """The query string as a plain dict; a parameter given twice is ambiguous, so refused."""
    args = request.args.to_dict(flat=False)
    for name, values in args.items():
        if len(values) > 1:
            raise APIError(f"{name} given {len(values)} times", code="duplicate_field", field=name)
    return {name: values[0] for name, values in args.items()}


def no_query_args() -> None:
    """Routes that take no query parameters refuse them: an ignored `?law=` would answer a
    different question than the one asked, without saying so."""
    for name in request.args:
        raise APIError(
            f"unknown query parameter {name!r}: this route takes none",
            code="unknown_field",
            field=name,
        )


def _refuse_constant(token: str) -> float:
    raise APIError(f"{token} is not a number JSON allows", code="not_finite", field="body")


def json_body() -> Any:
    data = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH (413 beyond)
    if not data.strip():
        raise APIError("request body is empty; send JSON", code="malformed_json", field="body")
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_int=float)
    except APIError:
        raise
    except (ValueError, RecursionError) as error:
        raise APIError(
            f"body is not valid JSON: {error}"[:200], code="malformed_json", field="body"
        ) from None


def _predict_one(query: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    laws = registry()
    law_id = query.get("law", laws.default)
    laws.get(law_id, field=f"{prefix}law")  # 404 before any work
    return laws.predict(
        law_id,
        query["n_params"],
        query["tokens"],
        seq_len=query.get("seq_len"),
        width=query.get("width"),
        batch_tokens=query.get("batch_tokens"),
    )


# Query fields the scaling package's messages may open with ("tokens must be at least 1, ...").
_FIELDS = ("n_params", "tokens", "batch_tokens", "flops", "lr", "warmup", "seq_len", "width")


def answer_scaling_errors(call, *args: Any, prefix: str = "") -> Any:
    """Errors the scaling package raises for a validated query, as 4xx answers. Its messages
    open with the argument they are about; that names the field."""
    try:
        return call(*args)
    except scaling.UnsupportedQuery as error:
        raise APIError(
            str(error), code="unsupported_query", status=422, field=f"{prefix}law"
        ) from None
    except ValueError as error:
        current_app.logger.warning("scaling refused a validated query: %s", error)
        first = str(error).split(" ", 1)[0].rstrip(":")  # "tokens must ...", "lr: ..."
        field = f"{prefix}{first}" if first in _FIELDS else None
        raise APIError(str(error), code="invalid_value", field=field) from None


@bp.get("/v1/predict")
def predict_get():
    query = schemas.load(_PREDICT, query_args())
    return jsonify(answer_scaling_errors(_predict_one, query))


@bp.post("/v1/predict")
def predict_post():
    no_query_args()
    body = json_body()
    if isinstance(body, dict):
        return jsonify(answer_scaling_errors(_predict_one, schemas.load(_PREDICT, body)))
    if not isinstance(body, list):
        raise APIError(
            "body must be a JSON object or a list of them", code="malformed_json", field="body"
        )
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if not 1 <= len(body) <= limit:
        raise APIError(
            f"a list must hold 1 to {limit} queries, got {len(body)}",
            code="too_many_items" if body else "malformed_json",
            field="body",
        )
    queries = []
    for i, item in enumerate(body):
        if not isinstance(item, dict):
            raise APIError(f"item {i} is not a JSON object", code="malformed_json", field=f"[{i}]")
        queries.append(schemas.load(_PREDICT, item, prefix=f"[{i}]."))
    return jsonify(
        [
            answer_scaling_errors(_predict_one, query, f"[{i}].", prefix=f"[{i}].")
            for i, query in enumerate(queries)
        ]
    )


@bp.get("/v1/trajectory")
def trajectory():
    query = schemas.load(_TRAJECTORY, query_args())
    laws = registry()
    law_id = query.pop("law", laws.default)
    laws.get(law_id)
    return jsonify(answer_scaling_errors(laws.trajectory, law_id, query))


@bp.get("/v1/compute-optimal")
def compute_optimal():
    query = schemas.load(_COMPUTE_OPTIMAL, query_args())
    laws = registry()
    law_id = query.get("law", laws.default)
    laws.get(law_id)
    return jsonify(answer_scaling_errors(laws.compute_optimal, law_id, query["flops"]))


@bp.get("/v1/laws")
def list_laws():
    no_query_args()
    laws = registry()
    return jsonify({"default": laws.default, "laws": laws.infos()})


@bp.get("/v1/laws/<law_id>")
def law_detail(law_id: str):
    no_query_args()
    laws = registry()
    laws.get(law_id, field="id")
    return jsonify(laws.detail(law_id))


@bp.get("/v1/laws/<law_id>/curves")
def law_curves(law_id: str):
    laws = registry()
    laws.get(law_id, field="id")
    query = schemas.load(_CURVES, query_args())
    return jsonify(
        answer_scaling_errors(
            laws.curves, law_id, query["n_params"], query["tokens"], query["points"]
        )
    )


@bp.get("/healthz")
def healthz():
    no_query_args()
    laws = registry()
    return jsonify({"status": "ok", "laws": len(laws.laws), "default_law": laws.default})


@bp.get("/openapi.json")
def openapi():
    no_query_args()
    return jsonify(current_app.extensions["scaling_openapi"])
