"""End to end: the service under a real gunicorn process on 127.0.0.1 (a free port), started
with the repository's gunicorn config and stopped by the fixture."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_support import free_port, write_law_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    laws_dir = tmp_path_factory.mktemp("results")
    write_law_file(laws_dir, "synthetic", law_id="quick")
    port = free_port()
    env = {
        **os.environ,
        "SCALING_BIND": f"127.0.0.1:{port}",
        "SCALING_WORKERS": "2",
        "SCALING_LAWS_DIR": str(laws_dir),
        "PYTHONPATH": str(REPO),
    }
    env.pop("SCALING_DEFAULT_LAW", None)
    log = (tmp_path_factory.mktemp("gunicorn") / "log.txt").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn.conf.py", "server:create_app()"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, _ = request(port, "GET", "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"gunicorn did not come up on port {port}:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_healthz_names_the_fitted_default(gunicorn):
    status, content_type, body = request(gunicorn, "GET", "/healthz")
    assert status == 200 and content_type == "application/json"
    assert json.loads(body)["default_law"] == "quick"


def test_predict_over_http(gunicorn):
    status, _, body = request(gunicorn, "GET", "/v1/predict?n_params=7e9&tokens=2e12")
    answer = json.loads(body)
    assert status == 200
    assert answer["law"] == "quick"
    assert answer["lr"] > 0 and answer["batch_tokens"] > 0 and answer["loss"] > 0
    assert answer["extrapolation"]["n_params_factor"] > 100
    assert answer["warnings"]


def test_post_list_over_http(gunicorn):
    queries = [{"n_params": 1e6 * (i + 1), "tokens": 1e8, "law": "quick"} for i in range(50)]
    status, _, body = request(
        gunicorn,
        "POST",
        "/v1/predict",
        body=json.dumps(queries),
        headers={"Content-Type": "application/json"},
    )
    answers = json.loads(body)
    assert status == 200 and len(answers) == 50
    assert [a["inputs"]["n_params"] for a in answers] == [q["n_params"] for q in queries]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/predict?n_params=nan&tokens=1e9", 400, "not_finite"),
        ("GET", "/v1/predict?n_params=1e9&tokens=1e9&law=nope", 404, "unknown_law"),
        ("GET", "/no/such/route", 404, "not_found"),
        ("DELETE", "/v1/predict", 405, "method_not_allowed"),
    ],
)
def test_errors_over_http_are_json(gunicorn, method, path, status, code):
    got_status, content_type, body = request(gunicorn, method, path)
    assert (got_status, content_type) == (status, "application/json")
    assert json.loads(body)["error"]["code"] == code


def test_oversize_body_over_http_is_413(gunicorn):
    body = b"[" + b'{"n_params": 1e9, "tokens": 1e9},' * 20_000 + b"{}]"
    status, content_type, answer = request(
        gunicorn, "POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"}
    )
    assert status == 413 and content_type == "application/json"
    assert json.loads(answer)["error"]["code"] == "payload_too_large"


def test_page_and_assets_over_http(gunicorn):
    status, content_type, body = request(gunicorn, "GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    assert b'id="query"' in body
    status, _, script = request(gunicorn, "GET", "/static/vendor/chart.umd.min.js")
    assert status == 200 and b"Chart.js" in script[:200]
