"""marshmallow schemas: they validate every request and are the source of the OpenAPI
document, so the documented limits are the enforced ones."""

from __future__ import annotations

import math
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

# tokens / batch_tokens: the trajectory law draws a run of any length at one cost, up to this
# many optimizer steps (a trillion).
from scaling._residual_map import MATERIAL_SUPPORT
from scaling.trajectory import MAX_TRAJECTORY_STEPS

# Caps well above any model or run anyone trains, low enough that the laws stay finite.
MAX_N_PARAMS = 1e15
MAX_TOKENS = 1e17
MAX_FLOPS = 1e30
MAX_SEQ_LEN = 10_000_000
MAX_WIDTH = 10_000_000
MAX_LR = 10.0
MAX_BATCH_TOKENS = 1e12
MAX_POINTS = 2_000
MAX_BATCH_ITEMS = 1_000
# Floors: one parameter, one token, one token per step, the compute of both (below them the
# laws' powers overflow to nonsense, such as an LR of 1e43); an LR far below any trained.
MIN_COUNT = 1.0
MIN_FLOPS = 6.0
MIN_LR = 1e-12
SCHEDULES = ("cosine", "wsd", "constant", "linear", "step")


class Quantity(fields.Float):
    """A positive, finite float between a floor and a cap (both inclusive, so the OpenAPI
    document's minimum and maximum say exactly what is enforced)."""

    def __init__(
        self, maximum: float, description: str, *, minimum: float = MIN_COUNT, **kwargs: Any
    ) -> None:
        super().__init__(
            allow_nan=False,
            validate=validate.Range(min=minimum, max=maximum),
            metadata={"description": description, **kwargs.pop("metadata", {})},
            **kwargs,
        )


class Count(fields.Integer):
    """A whole number given as 2048, 2048.0 or "2048"; 2048.5 is refused, not truncated."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError) as error:
            raise self.make_error("invalid", input=value) from error
        if not math.isfinite(number) or not number.is_integer():
            raise self.make_error("invalid", input=value)
        return int(number)


def _law() -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "law id (see /v1/laws); default: the service's default law"},
    )


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class PredictQuery(StrictSchema):
    n_params = Quantity(MAX_N_PARAMS, "non-embedding parameters N", required=True)
    tokens = Quantity(MAX_TOKENS, "training tokens D", required=True)
    law = _law()
    seq_len = Count(
        validate=validate.Range(min=1, max=MAX_SEQ_LEN),
        metadata={"description": "sequence length; gives batch_size = batch_tokens / seq_len"},
    )
    width = Count(
        validate=validate.Range(min=1, max=MAX_WIDTH),
        metadata={"description": "model width; gives muP per-group LRs for muP laws"},
    )
    batch_tokens = Quantity(
        MAX_BATCH_TOKENS,
        "the batch you will train with (tokens per step); lr is then the optimum at that batch "
        "where the law knows it; default: the law's optimal batch",
    )


class TrajectoryQuery(StrictSchema):
    n_params = Quantity(MAX_N_PARAMS, "non-embedding parameters N", required=True)
    tokens = Quantity(MAX_TOKENS, "training tokens D", required=True)
    law = _law()
    schedule = fields.String(
        load_default="cosine",
        validate=validate.OneOf(SCHEDULES),
        metadata={"description": "learning-rate schedule"},
    )
    warmup = Count(
        validate=validate.Range(min=0, max=MAX_TRAJECTORY_STEPS),
        metadata={"description": "warmup optimizer steps; default: the schedule's (2%)"},
    )
    points = Count(
        load_default=200,
        validate=validate.Range(min=2, max=MAX_POINTS),
        metadata={"description": "number of points on the curve"},
    )
    lr = Quantity(MAX_LR, "peak LR; default: the law's optimal LR", minimum=MIN_LR)
    batch_tokens = Quantity(MAX_BATCH_TOKENS, "tokens per step; default: the law's optimum")
    seq_len = Count(validate=validate.Range(min=1, max=MAX_SEQ_LEN))


class ComputeOptimalQuery(StrictSchema):
    flops = Quantity(MAX_FLOPS, "training compute C = 6 N D", minimum=MIN_FLOPS, required=True)
    law = _law()


class CurvesQuery(StrictSchema):
    n_params = Quantity(MAX_N_PARAMS, "query N, marked on the plots", required=True)
    tokens = Quantity(MAX_TOKENS, "query D; the curves hold D/N at this ratio", required=True)
    points = Count(load_default=48, validate=validate.Range(min=2, max=200))


# ---- answers (documentation only: the routes build plain dicts on the hot path) ----


class Interval(fields.List):
    def __init__(self, more: str = "", **kwargs: Any) -> None:
        super().__init__(
            fields.Float(),
            allow_none=True,
            metadata={"description": "95% interval [low, high], null when the law has none" + more},
            **kwargs,
        )


class Intervals(Schema):
    lr = Interval()
    batch_tokens = Interval()
    loss = Interval(
        "; a fitted law's is the bootstrap spread of its parameters widened by its leave-one-out "
        "error, and null where a reduced loss law (one budget or one size) is asked elsewhere"
    )


class Extrapolation(Schema):
    n_params_factor = fields.Float(
        metadata={"description": "times beyond the fitted N range (1.0 inside)"}
    )
    tokens_factor = fields.Float(
        metadata={"description": "times beyond the fitted D range (1.0 inside)"}
    )
    flops_factor = fields.Float(
        metadata={"description": "times beyond the fitted compute range, where the law has one"}
    )


class PredictInputs(Schema):
    n_params = fields.Float()
    tokens = fields.Float()
    seq_len = fields.Integer(allow_none=True)
    width = fields.Integer(allow_none=True)
    batch_tokens = fields.Float(allow_none=True)  # only when the query gave one


class Prediction(Schema):
    law = fields.String(required=True)
    inputs = fields.Nested(PredictInputs, required=True)
    flops = fields.Float(metadata={"description": "6 * n_params * tokens"})
    lr = fields.Float(allow_none=True, required=True)
    batch_tokens = fields.Float(allow_none=True, required=True)
    batch_size = fields.Float(allow_none=True, required=True)
    loss = fields.Float(allow_none=True, required=True)
    intervals = fields.Nested(Intervals, required=True)
    extrapolation = fields.Nested(Extrapolation, required=True)
    warnings = fields.List(fields.String(), required=True)
    lr_kind = fields.String(allow_none=True)
    lr_groups = fields.Dict(allow_none=True)


class ResidualCorrection(Schema):
    applied = fields.Boolean(
        required=True, metadata={"description": "whether the law's residual map was applied"}
    )
    support = fields.Float(
        required=True,
        metadata={
            "description": "0: the law alone; 1: the misfit of like fitted runs in full "
            "(their kernel weight against the law alone's prior)"
        },
    )
    material = fields.Boolean(
        metadata={
            "description": f"support of at least {MATERIAL_SUPPORT:g}: the correction moves "
            "the curve"
        }
    )
    n_params = fields.List(fields.Float(), metadata={"description": "the fitted sizes read"})
    runs = fields.Integer(metadata={"description": "fitted runs that carry the correction"})
    reason = fields.String(allow_none=True, metadata={"description": "why it was not applied"})


class TrajectoryInterval(Schema):
    level = fields.Float(metadata={"description": "the interval's level (0.95)"})
    refits = fields.Integer(metadata={"description": "the trajectory law's bootstrap refits"})
    left_out = fields.Integer(
        metadata={
            "description": "refits left out of loss_low / loss_high: their loss goes "
            "non-positive on this run"
        }
    )


class Trajectory(Schema):
    law = fields.String(required=True)
    inputs = fields.Dict(required=True)
    steps = fields.List(fields.Integer(), required=True)
    tokens = fields.List(fields.Float(), required=True)
    lr = fields.List(fields.Float(), required=True)
    loss = fields.List(fields.Float(allow_none=True), required=True)
    loss_low = fields.List(fields.Float(allow_none=True), required=True)
    loss_high = fields.List(fields.Float(allow_none=True), required=True)
    loss_law_alone = fields.List(
        fields.Float(allow_none=True),
        metadata={"description": "the smooth trajectory law alone, without its residual map"},
    )
    residual_correction = fields.Nested(
        ResidualCorrection,
        allow_none=True,
        metadata={"description": "how much of `loss` is the fitted runs' own misfit"},
    )
    interval = fields.Nested(
        TrajectoryInterval,
        allow_none=True,
        metadata={"description": "the bootstrap refits behind loss_low and loss_high"},
    )
    peak_lr = fields.Float(allow_none=True, metadata={"description": "the peak LR drawn at"})
    peak_lr_source = fields.String(
        metadata={"description": "given, recommended, or the fitted runs' mean"}
    )
    batch_tokens = fields.Float(allow_none=True, metadata={"description": "tokens per step"})
    batch_tokens_source = fields.String(
        metadata={"description": "given, recommended, or the fitted runs' mean"}
    )
    extrapolation = fields.Nested(Extrapolation, required=True)
    warnings = fields.List(fields.String(), required=True)


class ComputeOptimal(Schema):
    law = fields.String(required=True)
    inputs = fields.Dict(required=True)
    flops = fields.Float(metadata={"description": "the compute budget C"})
    n_params = fields.Float(allow_none=True, required=True)
    tokens = fields.Float(allow_none=True, required=True)
    lr = fields.Float(allow_none=True, required=True)
    batch_tokens = fields.Float(allow_none=True, required=True)
    loss = fields.Float(allow_none=True, required=True)
    intervals = fields.Dict(required=True)
    extrapolation = fields.Nested(Extrapolation, required=True)
    warnings = fields.List(fields.String(), required=True)


class LawInfo(Schema):
    id = fields.String(required=True)
    kind = fields.String(metadata={"description": "preset or fitted"})
    citation = fields.String(allow_none=True)
    parametrization = fields.Raw(allow_none=True)
    units = fields.Raw(allow_none=True)
    fitted_range = fields.Raw(allow_none=True)
    supports = fields.List(fields.String())
    default = fields.Boolean(metadata={"description": "the law used when none is named"})
    url = fields.String(allow_none=True, metadata={"description": "the source paper"})
    forms = fields.Raw(allow_none=True, metadata={"description": "each law's form"})
    notes = fields.Raw(allow_none=True, metadata={"description": "caveats the law carries"})


class LawList(Schema):
    default = fields.String(required=True)
    laws = fields.List(fields.Nested(LawInfo), required=True)


class LawDetail(Schema):
    info = fields.Nested(LawInfo, required=True)
    law = fields.Dict(required=True, metadata={"description": "the whole law file (contract 2)"})
    optima = fields.List(
        fields.Dict(), metadata={"description": "per-cell optima the LR and batch laws fit"}
    )


class Curves(Schema):
    law = fields.String(required=True)
    inputs = fields.Dict(required=True)
    tokens_per_param = fields.Float(required=True)
    n_params = fields.List(fields.Float(), required=True)
    tokens = fields.List(fields.Float(), required=True)
    lr = fields.List(fields.Float(allow_none=True), required=True)
    lr_low = fields.List(fields.Float(allow_none=True), required=True)
    lr_high = fields.List(fields.Float(allow_none=True), required=True)
    batch_tokens = fields.List(fields.Float(allow_none=True), required=True)
    batch_tokens_low = fields.List(fields.Float(allow_none=True), required=True)
    batch_tokens_high = fields.List(fields.Float(allow_none=True), required=True)
    loss = fields.List(fields.Float(allow_none=True), required=True)
    optima = fields.List(fields.Dict(), required=True)
    query = fields.Dict(required=True)


class Health(Schema):
    status = fields.String(required=True)
    laws = fields.Integer(required=True)
    default_law = fields.String(required=True)


class ErrorBody(Schema):
    code = fields.String(
        required=True,
        metadata={
            "description": "missing, not_a_number, not_an_integer, not_finite, not_positive, "
            "out_of_range, "
            "unknown_field, duplicate_field, unknown_law, malformed_json, too_many_items, "
            "unsupported_query, invalid_value, not_found, method_not_allowed, "
            "payload_too_large, internal_error"
        },
    )
    message = fields.String(required=True)
    field = fields.String(allow_none=True, required=True)


class Error(Schema):
    error = fields.Nested(ErrorBody, required=True)


def load(schema: Schema, data: dict[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Validate one mapping, raising the APIError for the first bad field."""
    from .errors import classify_invalid

    try:
        return schema.load(data)
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"": error.messages}
        # Report fields in the order the schema declares them, unknown ones last.
        order = list(schema.fields)
        name = min(messages, key=lambda k: order.index(k) if k in order else len(order))
        message = messages[name]
        while isinstance(message, (list, dict)):
            message = next(iter(message.values() if isinstance(message, dict) else message))
        field = schema.fields.get(name)
        raise classify_invalid(
            f"{prefix}{name}",
            data.get(name),
            str(message),
            numeric=isinstance(field, fields.Number),
            integer=isinstance(field, fields.Integer),
            positive=_requires_positive(field),
        ) from None


def _requires_positive(field: fields.Field | None) -> bool:
    for validator in getattr(field, "validators", ()):
        if isinstance(validator, validate.Range) and validator.min is not None:
            return validator.min > 0 or (validator.min == 0 and not validator.min_inclusive)
    return False
