"""One exception class for every client error, and the handlers that turn anything raised
while answering a request into a JSON error body: never an HTML page, never a traceback."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Codes that clients may branch on; messages are for people.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class APIError(Exception):
    """A request the service refuses, with the HTTP status, a stable code and the bad field."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "bad_request",
        field: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def classify_invalid(
    field: str,
    value: Any,
    message: str,
    *,
    numeric: bool = True,
    integer: bool = False,
    positive: bool = True,
) -> APIError:
    """Turn a schema's complaint about one field into an APIError with a precise code.

    marshmallow reports messages, not reasons; the raw value tells which rule it broke.
    """
    shown = _shown(value)
    if message.startswith("Missing data"):
        return APIError(f"{field} is required", code="missing", field=field)
    if message.startswith("Unknown field"):
        return APIError(f"unknown field {field!r}", code="unknown_field", field=field)
    if not numeric:
        return APIError(f"{field}={shown}: {message}", code="invalid_value", field=field)
    number = _as_float(value)
    if number is None:
        hint = ""
        if isinstance(value, str) and " " in value.strip() and _as_float(value.replace(" ", "+")):
            # 7e+9 typed into a URL: a query string reads '+' as a space.
            hint = " (a '+' in a URL's query reads as a space: write 7e9, or %2B for '+')"
        return APIError(
            f"{field} must be a number, got {shown}{hint}", code="not_a_number", field=field
        )
    if not math.isfinite(number):
        return APIError(f"{field} must be finite, got {shown}", code="not_finite", field=field)
    if integer and not number.is_integer():
        return APIError(
            f"{field} must be a whole number, got {shown}", code="not_an_integer", field=field
        )
    if positive and number <= 0:
        return APIError(f"{field} must be positive, got {shown}", code="not_positive", field=field)
    return APIError(f"{field}={shown}: {message}", code="out_of_range", field=field)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
    except OverflowError:  # an int with hundreds of digits
        return math.inf


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(error: APIError):
        return jsonify(error.to_dict()), error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = {
            404: "no such route; see /openapi.json",
            405: "method not allowed on this route",
            413: f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
        }.get(status, error.description or error.name)
        response = jsonify(APIError(message, code=code, status=status).to_dict())
        response.status_code = status
        # Keep the Allow header of a 405 and any other header werkzeug set.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error while answering a request")
        body = APIError("internal error; the server log has details", code="internal_error")
        return jsonify(body.to_dict()), 500
