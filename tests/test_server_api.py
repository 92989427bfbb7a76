"""Every route of the HTTP API through Flask's test client, against the presets and a law
file fitted in a fixture from a synthetic sweep."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pandas as pd
import pytest
from server_support import fitted_laws, write_law_file

import scaling
from server import create_app, schemas

SWEEP = "synthetic"


@pytest.fixture(scope="module")
def laws_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("results")
    write_law_file(path, SWEEP)
    return path


@pytest.fixture(scope="module")
def fitted(laws_dir):
    return fitted_laws(laws_dir, SWEEP)


@pytest.fixture(scope="module")
def app(laws_dir):
    return create_app({"TESTING": True, "LAWS_DIR": str(laws_dir), "DEFAULT_LAW": SWEEP})


@pytest.fixture
def client(app):
    return app.test_client()


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel)


# ---- liveness, laws ----


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["default_law"] == SWEEP
    assert body["laws"] == len(scaling.list_presets()) + 1


def test_laws_lists_presets_and_fitted_with_provenance(client):
    body = client.get("/v1/laws").get_json()
    ids = [law["id"] for law in body["laws"]]
    assert set(ids) == set(scaling.list_presets()) | {SWEEP}
    assert body["default"] == SWEEP
    by_id = {law["id"]: law for law in body["laws"]}
    assert by_id[SWEEP]["kind"] == "fitted"
    assert by_id[SWEEP]["default"] is True
    lo, hi = by_id[SWEEP]["fitted_range"]["n_params"]
    assert lo == pytest.approx(2.0e5) and hi == pytest.approx(1.28e7)
    assert all(by_id[name]["kind"] == "preset" for name in scaling.list_presets())


def test_law_detail_has_the_file_and_cell_optima(client, laws_dir):
    body = client.get(f"/v1/laws/{SWEEP}").get_json()
    assert body["info"]["id"] == SWEEP
    saved = json.loads((laws_dir / SWEEP / "laws.json").read_text())
    assert body["law"]["laws"] == saved["laws"]
    assert body["law"]["source"]["sha256"] == saved["source"]["sha256"]
    assert len(body["optima"]) == 12  # one per (N, D) cell of the synthetic sweep
    for row in body["optima"]:
        assert row["lr"] > 0 and row["batch_tokens"] > 0 and row["n_params"] > 0


def test_preset_detail_has_no_optima(client):
    body = client.get("/v1/laws/step-law").get_json()
    assert body["info"]["kind"] == "preset"
    assert body["optima"] == []


# ---- predict ----


def test_predict_get_matches_the_python_api(client, fitted):
    body = client.get("/v1/predict?n_params=1e6&tokens=1e8&seq_len=128").get_json()
    expected = fitted.predict(1e6, 1e8, seq_len=128)
    assert body["law"] == SWEEP
    assert body["inputs"] == {"n_params": 1e6, "tokens": 1e8, "seq_len": 128, "width": None}
    for key in ("lr", "batch_tokens", "batch_size", "loss"):
        assert close(body[key], getattr(expected, key)), key
    assert close(body["batch_size"], body["batch_tokens"] / 128)
    for key in ("lr", "batch_tokens", "loss"):
        low, high = body["intervals"][key]
        assert low <= body[key] <= high
    assert body["extrapolation"]["n_params_factor"] == 1.0
    assert body["extrapolation"]["tokens_factor"] == 1.0
    assert isinstance(body["warnings"], list)


def test_predict_far_outside_the_sweep_says_so(client):
    body = client.get("/v1/predict?n_params=7e9&tokens=2e12").get_json()
    assert body["extrapolation"]["n_params_factor"] == pytest.approx(7e9 / 1.28e7, rel=1e-6)
    assert body["extrapolation"]["tokens_factor"] > 1
    assert body["warnings"], "a 500x extrapolation must carry a warning"


def test_predict_with_a_preset(client):
    body = client.get("/v1/predict?n_params=7e9&tokens=2e12&law=step-law").get_json()
    expected = scaling.load("step-law").predict(7e9, 2e12)
    assert body["law"] == "step-law"
    assert close(body["lr"], expected.lr) and close(body["batch_tokens"], expected.batch_tokens)


def test_predict_width_gives_mup_groups(client, fitted):
    body = client.get("/v1/predict?n_params=1e6&tokens=1e8&width=256").get_json()
    expected = fitted.predict(1e6, 1e8, width=256)
    assert body["inputs"]["width"] == 256
    assert body["lr_groups"] == json.loads(json.dumps(expected.lr_groups))


def test_predict_at_a_given_batch(client, fitted):
    body = client.get("/v1/predict?n_params=1e6&tokens=1e8&batch_tokens=65536").get_json()
    expected = fitted.predict(1e6, 1e8, batch_tokens=65536)
    assert body["inputs"]["batch_tokens"] == 65536
    assert body["batch_tokens"] == 65536 and body["intervals"]["batch_tokens"] is None
    assert close(body["lr"], expected.lr)
    assert any("batch_tokens as given" in w for w in body["warnings"])
    bad = client.get("/v1/predict?n_params=1e6&tokens=1e8&batch_tokens=-3")
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "batch_tokens"


def test_predict_post_one_object(client):
    got = client.post("/v1/predict", json={"n_params": 1e6, "tokens": 1e8})
    want = client.get("/v1/predict?n_params=1e6&tokens=1e8")
    assert got.status_code == 200
    assert got.get_json() == want.get_json()


def test_predict_post_list_keeps_order_and_laws(client):
    queries = [
        {"n_params": 1e6, "tokens": 1e8},
        {"n_params": 7e9, "tokens": 2e12, "law": "step-law"},
        {"n_params": 7e9, "tokens": 2e12, "law": "deepseek", "seq_len": 4096},
    ]
    body = client.post("/v1/predict", json=queries).get_json()
    assert [item["law"] for item in body] == [SWEEP, "step-law", "deepseek"]
    for query, item in zip(queries, body, strict=True):
        single = client.post("/v1/predict", json=query).get_json()
        assert item == single


def test_predict_post_list_of_1000(client):
    queries = [{"n_params": 1e6 * (1 + i / 100), "tokens": 1e8} for i in range(1000)]
    body = client.post("/v1/predict", json=queries).get_json()
    assert len(body) == 1000
    assert [item["inputs"]["n_params"] for item in body] == [q["n_params"] for q in queries]


def test_integer_spellings_are_accepted(client):
    a = client.get("/v1/predict?n_params=1000000&tokens=1e8&seq_len=128").get_json()
    b = client.post("/v1/predict", json={"n_params": 1e6, "tokens": 1e8, "seq_len": 128.0})
    assert a == b.get_json()


# ---- trajectory, compute-optimal, curves ----


def test_trajectory_matches_the_python_api(client, fitted):
    url = "/v1/trajectory?n_params=1e8&tokens=2e9&schedule=wsd&points=50"
    body = client.get(url).get_json()
    frame = fitted.trajectory(1e8, 2e9, schedule="wsd", points=50)
    assert body["law"] == SWEEP
    assert body["inputs"]["schedule"] == "wsd"
    assert body["steps"] == frame["step"].astype(int).tolist()
    assert body["loss"] == pytest.approx(frame["loss"].tolist())
    assert len(body["tokens"]) == len(body["lr"]) == len(body["loss"]) == len(frame) == 50
    assert body["loss"][-1] < body["loss"][len(frame) // 10]
    assert body["peak_lr"] == pytest.approx(fitted.predict(1e8, 2e9).lr)
    assert set(body["extrapolation"]) >= {"n_params_factor", "tokens_factor"}
    assert isinstance(body["warnings"], list)
    # the smooth law beside the curve, and what the residual map did to it
    assert body["loss_law_alone"] == pytest.approx(frame["loss_law_alone"].tolist())
    assert body["residual_correction"] == frame.attrs["residual_correction"]
    assert body["residual_correction"]["applied"] is True
    assert 0.0 <= body["residual_correction"]["support"] <= 1.0


def test_trajectory_carries_every_warning_of_the_python_api(client, fitted):
    """The service draws the curve from the same inputs as the Python API, so it warns where
    the API does (the curve's end outside the loss law's interval was dropped: the service
    passed the recommended LR and batch as given ones)."""
    frame = fitted.trajectory(1e8, 2e9, schedule="wsd", points=50)
    assert any("ends at loss" in w for w in frame.attrs["warnings"])
    body = client.get("/v1/trajectory?n_params=1e8&tokens=2e9&schedule=wsd&points=50").get_json()
    assert set(frame.attrs["warnings"]) <= set(body["warnings"])


def test_trajectory_from_precomputed_inputs(fitted):
    """trajectory(inputs=trajectory_inputs(...)) draws the same curve with the same warnings,
    and refuses inputs mixed with lr/batch or made for another token budget."""
    inputs = fitted.trajectory_inputs(1e8, 2e9)
    for schedule in ("cosine", "wsd"):
        direct = fitted.trajectory(1e8, 2e9, schedule=schedule, points=20)
        reused = fitted.trajectory(1e8, 2e9, schedule=schedule, points=20, inputs=inputs)
        pd.testing.assert_frame_equal(direct, reused)
        assert direct.attrs == reused.attrs
    with pytest.raises(ValueError, match="not both"):
        fitted.trajectory(1e8, 2e9, lr=1e-3, inputs=inputs)
    with pytest.raises(ValueError, match="another token budget"):
        fitted.trajectory(1e8, 4e9, inputs=inputs)
    with pytest.raises(ValueError, match="inputs must be"):
        fitted.trajectory(1e8, 2e9, inputs={"lr": 1e-3})


def test_trajectory_at_a_given_lr_batch_and_warmup(client, fitted):
    url = "/v1/trajectory?n_params=1e7&tokens=1e9&lr=0.003&batch_tokens=65536&warmup=100&points=20"
    body = client.get(url).get_json()
    frame = fitted.trajectory(1e7, 1e9, lr=0.003, batch_tokens=65536, warmup=100, points=20)
    assert body["loss"] == pytest.approx(frame["loss"].tolist())
    assert body["peak_lr"] == 0.003 and body["batch_tokens"] == 65536
    assert 0.9 * 0.003 < max(body["lr"]) <= 0.003


def test_trajectory_of_a_preset_without_one_is_422(client):
    response = client.get("/v1/trajectory?n_params=1e9&tokens=2e10&law=step-law")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unsupported_query"
    assert response.get_json()["error"]["field"] == "law"


def test_trajectory_says_where_its_lr_and_batch_came_from(client, fitted):
    body = client.get("/v1/trajectory?n_params=1e8&tokens=2e9&points=5").get_json()
    assert (body["peak_lr_source"], body["batch_tokens_source"]) == ("recommended",) * 2
    assert body["batch_tokens"] == pytest.approx(fitted.predict(1e8, 2e9).batch_tokens)
    # The steps are the budget over the batch the curve was drawn at.
    assert body["steps"][-1] == round(2e9 / body["batch_tokens"])
    url = "/v1/trajectory?n_params=1e8&tokens=2e9&points=5&lr=0.002&batch_tokens=65536"
    body = client.get(url).get_json()
    assert (body["peak_lr_source"], body["batch_tokens_source"]) == ("given", "given")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("n_params=1e7&tokens=1e6&batch_tokens=2e6", "batch_tokens"),  # a batch above the run
        ("n_params=1e7&tokens=1e9&batch_tokens=65536&warmup=20000", "warmup"),  # 15,259 steps
        ("n_params=1e7&tokens=1e17&batch_tokens=1024", "tokens"),  # 1e14 steps
    ],
)
def test_trajectory_refuses_runs_it_cannot_draw(client, query, field):
    response = client.get(f"/v1/trajectory?{query}")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == field


def test_trajectory_cap_uses_the_batch_drawn_at_without_a_batch_law(client, fitted, monkeypatch):
    """A law with no batch law draws at its trajectory law's fitted runs' batch: the step cap
    must count steps at that batch (it was skipped, and one request pinned a worker)."""
    laws = client.application.extensions["scaling_laws"]
    law = laws.laws[SWEEP]
    real = law.predict

    def no_batch(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), batch_tokens=None)

    monkeypatch.setattr(law, "predict", no_batch)
    laws._trajectory_cached.cache_clear()
    laws.predict.cache_clear()
    mean_batch = law._trajectory._default("batch_tokens")
    tokens = 3 * schemas.MAX_TRAJECTORY_STEPS * mean_batch
    response = client.get(f"/v1/trajectory?n_params=1e8&tokens={tokens:.6g}&points=5")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "tokens"
    body = client.get("/v1/trajectory?n_params=1e8&tokens=2e9&points=5").get_json()
    assert body["batch_tokens_source"] == "the fitted runs' mean"
    assert body["batch_tokens"] == pytest.approx(mean_batch)
    assert any("recommends no batch_tokens" in w for w in body["warnings"])
    laws._trajectory_cached.cache_clear()
    laws.predict.cache_clear()


@pytest.mark.parametrize(
    "query",
    [
        "",  # lr and batch recommended
        "&schedule=wsd&seq_len=128",
        "&lr=0.002",  # batch recommended
        "&batch_tokens=65536",  # the LR at that batch
        "&lr=0.002&batch_tokens=65536",  # both given: the prediction is still needed
    ],
)
def test_trajectory_predicts_once_per_request(client, monkeypatch, query):
    """One request makes one prediction (it made two, and drew the inputs twice): the
    extrapolation and warnings come from the prediction trajectory_inputs already made."""
    laws = client.application.extensions["scaling_laws"]
    law = laws.laws[SWEEP]
    real, calls = law.predict, []

    def counted(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(law, "predict", counted)
    laws._trajectory_cached.cache_clear()
    laws.predict.cache_clear()
    response = client.get(f"/v1/trajectory?n_params=1e8&tokens=2e9&points=5{query}")
    assert response.status_code == 200, response.get_json()
    assert len(calls) == 1, calls
    body = response.get_json()
    expected = real(1e8, 2e9, seq_len=128 if "seq_len" in query else None)
    assert body["extrapolation"] == pytest.approx(expected.extrapolation)
    laws._trajectory_cached.cache_clear()
    laws.predict.cache_clear()


def test_compute_optimal_matches_the_python_api(client):
    body = client.get("/v1/compute-optimal?flops=1e23&law=chinchilla-hoffmann").get_json()
    expected = scaling.load("chinchilla-hoffmann").compute_optimal(1e23)
    assert body["law"] == "chinchilla-hoffmann"
    assert body["inputs"] == {"flops": 1e23}
    assert close(body["n_params"], expected["n_params"])
    assert close(body["tokens"], expected["tokens"])
    assert 6 * body["n_params"] * body["tokens"] == pytest.approx(1e23, rel=0.05)
    assert set(body["extrapolation"]) == {"n_params_factor", "tokens_factor"}


def test_curves_hold_the_ratio_and_mark_the_query(client, fitted):
    body = client.get(f"/v1/laws/{SWEEP}/curves?n_params=1e8&tokens=2e9&points=30").get_json()
    assert body["tokens_per_param"] == pytest.approx(20)
    assert len(body["n_params"]) == 30
    for n, d in zip(body["n_params"], body["tokens"], strict=True):
        assert d == pytest.approx(20 * n)
    for i in (0, 13, 29):
        expected = fitted.predict(body["n_params"][i], body["tokens"][i])
        assert body["lr"][i] == pytest.approx(expected.lr)
        assert [body["lr_low"][i], body["lr_high"][i]] == pytest.approx(expected.intervals["lr"])
        assert body["batch_tokens_high"][i] == pytest.approx(expected.intervals["batch_tokens"][1])
    assert body["query"]["n_params"] == 1e8
    assert min(body["n_params"]) <= 2e5 and max(body["n_params"]) >= 1e8
    assert len(body["optima"]) == 12


# ---- configuration ----


def test_default_law_without_fitted_laws_answers_lr_and_batch(tmp_path):
    app = create_app({"LAWS_DIR": str(tmp_path)})
    laws = app.extensions["scaling_laws"]
    assert laws.default == "step-law"
    assert {"lr", "batch_tokens"} <= set(laws.laws[laws.default].info()["supports"])


def test_default_prefers_reference_then_quick(tmp_path):
    write_law_file(tmp_path, SWEEP, law_id="quick")
    write_law_file(tmp_path, SWEEP, law_id="other")
    assert create_app({"LAWS_DIR": str(tmp_path)}).extensions["scaling_laws"].default == "quick"
    write_law_file(tmp_path, SWEEP, law_id="reference")
    laws = create_app({"LAWS_DIR": str(tmp_path)}).extensions["scaling_laws"]
    assert laws.default == "reference"
    assert {"quick", "other", "reference"} <= set(laws.laws)


def test_default_law_from_the_environment(monkeypatch, laws_dir):
    monkeypatch.setenv("SCALING_LAWS_DIR", str(laws_dir))
    monkeypatch.setenv("SCALING_DEFAULT_LAW", "deepseek")
    app = create_app()
    assert app.config["LAWS_DIR"] == str(laws_dir)
    assert app.extensions["scaling_laws"].default == "deepseek"
    assert SWEEP in app.extensions["scaling_laws"].laws


def test_unknown_default_law_fails_at_start(tmp_path):
    with pytest.raises(ValueError, match="no-such-law"):
        create_app({"LAWS_DIR": str(tmp_path), "DEFAULT_LAW": "no-such-law"})


def test_broken_law_file_is_logged_and_skipped(tmp_path, laws_dir, caplog):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "laws.json").write_text('{"format_version": 1, "laws": ')
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "laws.json").write_text((laws_dir / SWEEP / "laws.json").read_text())
    with caplog.at_level(logging.ERROR, logger="server.laws"):
        app = create_app({"LAWS_DIR": str(tmp_path)})
    assert SWEEP in app.extensions["scaling_laws"].laws
    assert any("broken" in record.getMessage() for record in caplog.records)


# ---- the OpenAPI document and the page's assets ----


def test_openapi_document_is_generated_from_the_schemas(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {
        "/v1/predict",
        "/v1/trajectory",
        "/v1/compute-optimal",
        "/v1/laws",
        "/v1/laws/{law_id}",
        "/healthz",
    }
    params = {p["name"]: p for p in spec["paths"]["/v1/predict"]["get"]["parameters"]}
    assert params["n_params"]["required"] is True
    assert params["n_params"]["schema"]["maximum"] == 1e15
    assert params["tokens"]["schema"]["maximum"] == 1e17
    post = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert post["schema"]["oneOf"][1]["maxItems"] == 1000
    assert "Prediction" in spec["components"]["schemas"]


def test_page_and_vendored_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<form id="query"' in html and SWEEP in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    for asset in ("/static/vendor/chart.umd.min.js", "/static/app.js", "/static/style.css"):
        with client.get(asset) as response:  # a file response: close it
            assert response.status_code == 200, asset
            assert response.data


def test_the_shipped_default_law_draws_the_curve_of_a_large_target():
    """7B parameters on 2T tokens: at the reference law's recommended batch that is 75M
    optimizer steps, which the service refused (a 2M-step cap) and the law took 80 s to sum."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    app = create_app({"TESTING": True, "LAWS_DIR": str(results)})
    response = app.test_client().get("/v1/trajectory?n_params=7e9&tokens=2e12&points=50")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["law"] == "reference" and body["batch_tokens_source"] == "recommended"
    assert body["steps"][-1] == round(2e12 / body["batch_tokens"]) > 10_000_000
    assert len(body["loss"]) == 50 and all(0 < v < 10 for v in body["loss"])
    assert body["loss"][-1] < body["loss"][0]
    assert any("extrapolation" in w for w in body["warnings"])


def test_a_refused_trajectory_names_its_field():
    """7B parameters on 2T tokens at a given batch of 4M tokens: the reference trajectory law's
    batch terms, 977x beyond its runs, give no positive loss. The 400 names batch_tokens in
    `field` too, not only in its message ("batch_tokens: the trajectory law ...")."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    app = create_app({"TESTING": True, "LAWS_DIR": str(results)})
    query = "/v1/trajectory?n_params=7e9&tokens=2e12&batch_tokens=4e6"
    response = app.test_client().get(query)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["message"].startswith("batch_tokens: the trajectory law gives no finite")
    assert error["field"] == "batch_tokens" and error["code"] == "invalid_value"


def test_the_trajectory_interval_leaves_out_refits_whose_loss_goes_negative():
    """On quick's laws at 1e6 parameters and 1e8 tokens (24k steps, 67x its fitted runs) one
    bootstrap refit, stopped far out on the annealing term's B-C ridge, predicts a negative
    loss: the interval's lower bound read 7.9e-08. It is left out, and the answer says so."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    app = create_app({"TESTING": True, "LAWS_DIR": str(results)})
    query = "/v1/trajectory?law=quick&n_params=1e6&tokens=1e8&points=50"
    body = app.test_client().get(query).get_json()
    frame = scaling.load(results / "quick" / "laws.json").trajectory(1e6, 1e8, points=50)
    assert body["interval"] == frame.attrs["interval"]
    left_out = body["interval"]["left_out"]
    assert 1 <= left_out < body["interval"]["refits"]
    assert body["loss_low"] == pytest.approx(frame["loss_low"].tolist())
    pairs = zip(body["loss_low"], body["loss"], strict=True)
    assert all(0.5 * loss < low <= loss for low, loss in pairs)
    assert sum(f"leaves out {left_out} of" in w for w in body["warnings"]) == 1
