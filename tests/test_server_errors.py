"""Every kind of bad request answers a JSON error {"error": {code, message, field}} with a
4xx; nothing answers a 500 with a traceback; nothing from a request becomes a file path."""

from __future__ import annotations

import json

import pytest

import scaling
from server import create_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # Presets only: errors do not depend on which laws are loaded.
    return create_app({"TESTING": True, "LAWS_DIR": str(tmp_path_factory.mktemp("empty"))})


@pytest.fixture
def client(app):
    return app.test_client()


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


GET_CASES = [
    # (url, code, field)
    ("/v1/predict?tokens=1e9", "missing", "n_params"),
    ("/v1/predict?n_params=1e9", "missing", "tokens"),
    ("/v1/predict", "missing", "n_params"),
    ("/v1/predict?n_params=seven&tokens=1e9", "not_a_number", "n_params"),
    ("/v1/predict?n_params=&tokens=1e9", "not_a_number", "n_params"),
    ("/v1/predict?n_params=0x10&tokens=1e9", "not_a_number", "n_params"),
    ("/v1/predict?n_params=nan&tokens=1e9", "not_finite", "n_params"),
    ("/v1/predict?n_params=NaN&tokens=1e9", "not_finite", "n_params"),
    ("/v1/predict?n_params=1e9&tokens=inf", "not_finite", "tokens"),
    ("/v1/predict?n_params=1e9&tokens=-Infinity", "not_finite", "tokens"),
    ("/v1/predict?n_params=1e9&tokens=1e999", "not_finite", "tokens"),
    ("/v1/predict?n_params=0&tokens=1e9", "not_positive", "n_params"),
    ("/v1/predict?n_params=-0.0&tokens=1e9", "not_positive", "n_params"),
    ("/v1/predict?n_params=1e9&tokens=-5", "not_positive", "tokens"),
    ("/v1/predict?n_params=1.1e15&tokens=1e9", "out_of_range", "n_params"),
    ("/v1/predict?n_params=1e9&tokens=2e17", "out_of_range", "tokens"),
    ("/v1/predict?n_params=1e9&tokens=1e9&seq_len=0", "not_positive", "seq_len"),
    ("/v1/predict?n_params=1e9&tokens=1e9&seq_len=2048.5", "not_an_integer", "seq_len"),
    ("/v1/predict?n_params=1e9&tokens=1e9&seq_len=1e30", "out_of_range", "seq_len"),
    ("/v1/predict?n_params=1e9&tokens=1e9&width=abc", "not_a_number", "width"),
    ("/v1/predict?n_params=1e9&tokens=1e9&batch=5", "unknown_field", "batch"),
    ("/v1/predict?n_params=1e9&tokens=1e9&n_params=2e9", "duplicate_field", "n_params"),
    ("/v1/predict?n_params=1e9&tokens=1e9&law=", "invalid_value", "law"),
    ("/v1/trajectory?n_params=1e9", "missing", "tokens"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&schedule=exp", "invalid_value", "schedule"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&points=1", "out_of_range", "points"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&points=100000", "out_of_range", "points"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&warmup=-1", "out_of_range", "warmup"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&lr=nan", "not_finite", "lr"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&lr=100", "out_of_range", "lr"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&steps=5", "unknown_field", "steps"),
    ("/v1/compute-optimal", "missing", "flops"),
    ("/v1/compute-optimal?flops=lots", "not_a_number", "flops"),
    ("/v1/compute-optimal?flops=inf", "not_finite", "flops"),
    ("/v1/compute-optimal?flops=-1e20", "not_positive", "flops"),
    ("/v1/compute-optimal?flops=1e31", "out_of_range", "flops"),
    ("/v1/compute-optimal?flops=1e23&n_params=1", "unknown_field", "n_params"),
    ("/v1/laws/step-law/curves?n_params=1e9", "missing", "tokens"),
    ("/v1/laws/step-law/curves?n_params=1e9&tokens=1e10&points=1000", "out_of_range", "points"),
    # Floors: below one parameter or token the laws' powers give nonsense (an LR of 1e43).
    ("/v1/predict?n_params=1e-300&tokens=1e9", "out_of_range", "n_params"),
    ("/v1/predict?n_params=1e9&tokens=0.5", "out_of_range", "tokens"),
    ("/v1/predict?n_params=1e9&tokens=1e9&batch_tokens=1e-3", "out_of_range", "batch_tokens"),
    ("/v1/compute-optimal?flops=5e-324", "out_of_range", "flops"),
    ("/v1/trajectory?n_params=1e9&tokens=1e10&lr=1e-300", "out_of_range", "lr"),
    ("/v1/laws/step-law/curves?n_params=1e-300&tokens=1e-300", "out_of_range", "n_params"),
    # scaling's own refusals name their field.
    ("/v1/predict?n_params=1e9&tokens=1e6&batch_tokens=1e7", "invalid_value", "batch_tokens"),
    # Routes that take no parameters refuse them rather than ignore them.
    ("/v1/laws?foo=1", "unknown_field", "foo"),
    ("/v1/laws/step-law?foo=1", "unknown_field", "foo"),
    ("/healthz?x=1", "unknown_field", "x"),
]


@pytest.mark.parametrize(("url", "code", "field"), GET_CASES)
def test_bad_query_strings(client, url, code, field):
    error = error_of(client.get(url), 400)
    assert (error["code"], error["field"]) == (code, field)


def test_a_plus_sign_typed_into_the_url_gets_a_hint(client):
    """7e+9 in a query string arrives as '7e 9' ('+' is a space there): the error says so."""
    error = error_of(client.get("/v1/predict?n_params=7e+9&tokens=1e12"), 400)
    assert (error["code"], error["field"]) == ("not_a_number", "n_params")
    assert "'7e 9'" in error["message"] and "%2B" in error["message"]
    assert (
        error_of(client.get("/v1/predict?n_params=7e%2B9&tokens=2e+12"), 400)["field"] == "tokens"
    )
    assert client.get("/v1/predict?n_params=7e%2B9&tokens=2e%2B12").status_code == 200
    plain = error_of(client.get("/v1/predict?n_params=seven+billion&tokens=1e12"), 400)
    assert "%2B" not in plain["message"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/predict?n_params=1e9&tokens=1e10&law=gpt-5",
        "/v1/trajectory?n_params=1e9&tokens=1e10&law=gpt-5",
        "/v1/compute-optimal?flops=1e23&law=gpt-5",
        "/v1/predict?n_params=1e9&tokens=1e10&law=../../etc/passwd",
        "/v1/predict?n_params=1e9&tokens=1e10&law=%2Fetc%2Fpasswd",
    ],
)
def test_unknown_law_is_404(client, url):
    error = error_of(client.get(url), 404)
    assert (error["code"], error["field"]) == ("unknown_law", "law")


@pytest.mark.parametrize(
    "url",
    ["/v1/laws/gpt-5", "/v1/laws/..%2Fresults", "/v1/laws/gpt-5/curves?n_params=1&tokens=1"],
)
def test_unknown_law_in_the_path_is_404(client, url):
    error = error_of(client.get(url), 404)
    assert error["code"] in {"unknown_law", "not_found"}


def test_law_files_are_never_opened_from_a_request(client, tmp_path, monkeypatch):
    law_file = tmp_path / "laws.json"
    law_file.write_text("{}")
    opened = []
    monkeypatch.setattr(scaling, "load", lambda path: opened.append(path))
    error_of(client.get(f"/v1/predict?n_params=1e9&tokens=1e9&law={law_file}"), 404)
    error_of(client.get("/v1/laws/" + str(law_file).replace("/", "%2F")), 404)
    assert opened == []


POST_CASES = [
    # (raw body, code, field)
    (b"{not json", "malformed_json", "body"),
    (b"", "malformed_json", "body"),
    (b"   ", "malformed_json", "body"),
    (b'"a string"', "malformed_json", "body"),
    (b"42", "malformed_json", "body"),
    (b"null", "malformed_json", "body"),
    (b"[]", "malformed_json", "body"),
    (b"[1, 2]", "malformed_json", "[0]"),
    (b'{"n_params": NaN, "tokens": 1e9}', "not_finite", "body"),
    (b'{"n_params": Infinity, "tokens": 1e9}', "not_finite", "body"),
    (b'{"n_params": 1e999, "tokens": 1e9}', "not_finite", "n_params"),
    (b'{"n_params": 1' + b"0" * 5000 + b', "tokens": 1e9}', "not_finite", "n_params"),
    (b'{"n_params": true, "tokens": 1e9}', "not_a_number", "n_params"),
    (b'{"n_params": "1e9x", "tokens": 1e9}', "not_a_number", "n_params"),
    (b'{"n_params": [1e9], "tokens": 1e9}', "not_a_number", "n_params"),
    (b'{"n_params": {"v": 1}, "tokens": 1e9}', "not_a_number", "n_params"),
    (b'{"n_params": null, "tokens": 1e9}', "not_a_number", "n_params"),
    (b'{"n_params": 1e9}', "missing", "tokens"),
    (b'{"n_params": -1e9, "tokens": 1e9}', "not_positive", "n_params"),
    (b'{"n_params": 1e9, "tokens": 1e9, "lr": 0.1}', "unknown_field", "lr"),
    (b'{"n_params": 1e9, "tokens": 1e9, "law": 7}', "invalid_value", "law"),
    (
        b'[{"n_params": 1e9, "tokens": 1e9}, {"n_params": 0, "tokens": 1e9}]',
        "not_positive",
        "[1].n_params",
    ),
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json", "body"),
    (b"\xff\xfe\x00garbage", "malformed_json", "body"),
]


@pytest.mark.parametrize(("body", "code", "field"), POST_CASES)
def test_bad_post_bodies(client, body, code, field):
    response = client.post("/v1/predict", data=body, content_type="application/json")
    error = error_of(response, 400)
    assert (error["code"], error["field"]) == (code, field)


def test_unknown_law_in_a_post_list_is_404(client):
    body = [{"n_params": 1e9, "tokens": 1e9}, {"n_params": 1e9, "tokens": 1e9, "law": "nope"}]
    error = error_of(client.post("/v1/predict", json=body), 404)
    assert (error["code"], error["field"]) == ("unknown_law", "[1].law")


def test_post_with_query_parameters_is_refused(client):
    # ?law=nope would otherwise be ignored and the default law would answer.
    response = client.post("/v1/predict?law=nope", json={"n_params": 1e9, "tokens": 1e10})
    assert (error_of(response, 400)["code"], error_of(response, 400)["field"]) == (
        "unknown_field",
        "law",
    )


def test_list_over_1000_items(client):
    body = [{"n_params": 1e9, "tokens": 1e9}] * 1001
    error = error_of(client.post("/v1/predict", json=body), 400)
    assert (error["code"], error["field"]) == ("too_many_items", "body")


def test_oversize_body_is_413(client, app):
    body = b'{"n_params": 1e9, "tokens": 1e9, "pad": "' + b"x" * app.config["MAX_CONTENT_LENGTH"]
    error = error_of(client.post("/v1/predict", data=body, content_type="application/json"), 413)
    assert error["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("delete", "/v1/predict"),
        ("put", "/v1/predict"),
        ("post", "/v1/trajectory"),
        ("post", "/v1/laws"),
        ("patch", "/healthz"),
        ("post", "/"),
    ],
)
def test_wrong_method_is_405_json(client, method, url):
    response = getattr(client, method)(url)
    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "url", ["/v2/predict", "/v1/predict/extra", "/static/../server/api.py", "/x" * 50]
)
def test_unknown_route_is_404_json(client, url):
    assert error_of(client.get(url), 404)["code"] == "not_found"


def test_a_failing_law_is_a_json_500_without_traceback(tmp_path, monkeypatch):
    app = create_app({"LAWS_DIR": str(tmp_path)})
    law = app.extensions["scaling_laws"].laws["step-law"]

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(law, "predict", explode)
    response = app.test_client().get("/v1/predict?n_params=1e9&tokens=1e9&law=step-law")
    error = error_of(response, 500)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)


def test_value_errors_from_scaling_are_400(tmp_path, monkeypatch):
    app = create_app({"LAWS_DIR": str(tmp_path)})
    law = app.extensions["scaling_laws"].laws["step-law"]

    def refuse(*args, **kwargs):
        raise ValueError("tokens must be at least one batch, got 3.0")

    monkeypatch.setattr(law, "predict", refuse)
    response = app.test_client().get("/v1/predict?n_params=1e9&tokens=3&law=step-law")
    assert error_of(response, 400)["code"] == "invalid_value"


def test_questions_a_law_cannot_answer_are_422(tmp_path, monkeypatch):
    app = create_app({"LAWS_DIR": str(tmp_path)})
    law = app.extensions["scaling_laws"].laws["kaplan"]

    def unsupported(*args, **kwargs):
        raise scaling.UnsupportedQuery("kaplan has no trajectory law")

    monkeypatch.setattr(law, "trajectory", unsupported)
    response = app.test_client().get("/v1/trajectory?n_params=1e9&tokens=2e10&law=kaplan")
    error = error_of(response, 422)
    assert (error["code"], error["field"]) == ("unsupported_query", "law")
    assert "kaplan" in error["message"]


def test_error_bodies_are_strict_json(client):
    text = client.get("/v1/predict?n_params=nan&tokens=1").get_data(as_text=True)
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON constant {token}"))
