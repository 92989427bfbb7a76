"""The law file: fitted from runs, round-trips, and fails clearly when malformed."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from trajectory_support import FRAME_COLUMNS

import scaling
from scaling import LawFileError
from scaling.synthetic import TrueLaws, make_sweep


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    runs, truth = make_sweep(
        seed=21,
        sizes=(2e6, 6e6, 2e7, 6e7),
        lr_factors=(1 / 6, 1 / 2.5, 1, 2.5, 6),
        batch_factors=(1 / 4, 1, 4),
        missing=0.05,
        pruned=0.05,
        sweep="unit",
    )
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    runs.to_csv(path, index=False)
    return path, truth


@pytest.fixture(scope="module")
def fitted(runs_csv):
    path, _ = runs_csv
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scaling.fit(path, bootstrap=40, seed=0, n_jobs=1)


def test_contents(fitted, runs_csv):
    path, truth = runs_csv
    doc = fitted.to_dict()
    assert doc["format_version"] == 1 and doc["kind"] == "fitted" and doc["id"] == "unit"
    assert doc["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc["source"]["rows"] == len(scaling.read_runs(path))
    assert doc["source"]["n_pruned"] > 0 and doc["source"]["n_diverged"] > 0
    assert any("pruned run(s) excluded" in w for w in doc["warnings"])
    assert doc["parametrization"] == {"kind": "mup", "base_width": 64.0}
    for name in ("loss", "lr", "batch_tokens", "lr_compute", "batch_tokens_compute", "lr_at_batch"):
        law = doc["laws"][name]
        assert law["params"] and law["intervals"] and law["data_range"]
        assert law["residuals"]["rmse"] >= 0
    bt = doc["backtest"]
    assert bt["held_out_n_params"] == 6e7
    assert {"loss_error_pct", "lr_ratio", "batch_ratio"} <= set(bt["cells"][0])
    assert abs(bt["mean_abs_loss_error_pct"]) < 5
    assert 0.33 < bt["geomean_lr_ratio"] < 3
    assert len(doc["cells"]) == 12
    assert fitted.info()["supports"] == ["lr", "batch_tokens", "loss", "compute_optimal"]


def test_round_trip(fitted, tmp_path):
    path = tmp_path / "laws.json"
    fitted.save(path)
    again = scaling.load(path)
    assert again.to_dict() == json.loads(path.read_text())
    a = fitted.predict(1e9, 2e10, seq_len=512, width=1024).to_dict()
    b = again.predict(1e9, 2e10, seq_len=512, width=1024).to_dict()
    assert a == b
    assert again.compute_optimal(1e20)["n_params"] == pytest.approx(
        fitted.compute_optimal(1e20)["n_params"]
    )


def test_prediction_fields(fitted, runs_csv):
    _, truth = runs_csv
    p = fitted.predict(6e8, 2e10, seq_len=256, width=256)
    for key in ("lr", "batch_tokens", "loss"):
        lo, hi = p.intervals[key]
        assert lo <= getattr(p, key) <= hi
    assert p.extrapolation["n_params_factor"] == pytest.approx(10.0)
    assert any("n_params is 10x outside" in w for w in p.warnings)
    assert p.batch_size == pytest.approx(p.batch_tokens / 256)
    assert p.lr_kind == "global muP LR for mup.MuAdamW (base width 64)"
    groups = p.lr_groups["groups"]
    assert p.lr_groups["width_mult"] == 4.0
    assert groups["hidden_matrices"]["lr"] == pytest.approx(p.lr / 4)
    assert groups["embeddings"]["lr"] == groups["readout"]["lr"] == p.lr
    assert groups["readout"]["plain_linear_lr"] == pytest.approx(p.lr / 4)
    d = p.to_dict()
    assert set(d) >= {"law", "inputs", "lr", "batch_tokens", "batch_size", "loss", "intervals"}
    json.dumps(d)
    inside = fitted.predict(2e7, 2e8)
    assert inside.extrapolation["n_params_factor"] == 1.0
    assert inside.lr == pytest.approx(truth.lr_at(2e7, 2e8), rel=0.5)


def write(tmp_path, text, name="laws.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def good_doc(fitted):
    return fitted.to_dict()


def test_malformed_json(tmp_path):
    path = write(tmp_path, '{"format_version": 1, "id": oops}')
    with pytest.raises(LawFileError) as err:
        scaling.load(path)
    assert str(path) in str(err.value) and "not valid JSON" in str(err.value)
    assert err.value.path == str(path)
    assert err.value.field == "id"


def test_truncated(tmp_path, good_doc):
    text = json.dumps(good_doc, indent=1)
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(LawFileError, match="truncated") as err:
        scaling.load(path)
    assert str(path) in str(err.value)
    assert err.value.field is not None and err.value.field in str(err.value)


def test_future_version(tmp_path, good_doc):
    good_doc["format_version"] = 99
    path = write(tmp_path, json.dumps(good_doc))
    with pytest.raises(LawFileError, match="newer") as err:
        scaling.load(path)
    assert err.value.field == "format_version"
    assert str(path) in str(err.value) and "format_version" in str(err.value)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["laws"]["lr"]["params"].pop("coef"), "laws.lr.params.coef"),
        (lambda d: d["source"].__setitem__("rows", "many"), "source.rows"),
        (lambda d: d.pop("laws"), "laws"),
        (lambda d: d["laws"]["loss"].__setitem__("form", "magic"), "laws.loss.form"),
        (lambda d: d["laws"]["loss"]["params"].__setitem__("E", "1.7"), "laws.loss.params.E"),
        (
            lambda d: d["laws"]["loss"].__setitem__("form", "E+(A/N^alpha+B/D)^gamma"),
            "laws.loss.params.gamma",
        ),
        (
            lambda d: d["laws"]["loss"]["bootstrap"]["samples"].append([1.0, 2.0]),
            "laws.loss.bootstrap.samples",
        ),
        (lambda d: d["fitted_range"].__setitem__("n_params", [1]), "fitted_range.n_params"),
        (lambda d: d["parametrization"].__setitem__("kind", "ntk"), "parametrization.kind"),
        (
            lambda d: d["laws"]["lr_at_batch"].__setitem__("variables", ["N", "D"]),
            "laws.lr_at_batch.variables",
        ),
        (
            lambda d: d["laws"]["lr"].__setitem__("variables", ["N", "B"]),
            "laws.lr.variables",
        ),
    ],
)
def test_bad_fields(tmp_path, good_doc, mutate, field):
    mutate(good_doc)
    path = write(tmp_path, json.dumps(good_doc))
    with pytest.raises(LawFileError) as err:
        scaling.load(path)
    assert err.value.field == field
    assert field in str(err.value) and str(path) in str(err.value)


def test_not_an_object_and_missing_file(tmp_path):
    with pytest.raises(LawFileError, match="JSON object"):
        scaling.load(write(tmp_path, "[1, 2]"))
    with pytest.raises(LawFileError, match="no such file"):
        scaling.load(tmp_path / "absent.json")
    with pytest.raises(LawFileError, match="empty"):
        scaling.load(write(tmp_path, ""))


def test_read_runs_errors(tmp_path):
    bad = write(
        tmp_path,
        "n_params,tokens,lr,batch_tokens,loss\n1e6,1e8,1e-3,4096,3.1\n1e6,abc,1e-3,4096,3\n",
        "r.csv",
    )
    with pytest.raises(ValueError) as err:
        scaling.read_runs(bad)
    msg = str(err.value)
    assert str(bad) in msg and "'tokens'" in msg and "row 3" in msg and "abc" in msg
    neg = write(tmp_path, "n_params,tokens,lr,batch_tokens,loss\n1e6,1e8,-1,4096,3.1\n", "n.csv")
    with pytest.raises(ValueError, match="'lr', row 2"):
        scaling.read_runs(neg)
    missing = write(tmp_path, "n_params,tokens,lr,loss\n1e6,1e8,1e-3,3\n", "m.csv")
    with pytest.raises(ValueError, match="batch_tokens"):
        scaling.read_runs(missing)
    ok = write(
        tmp_path,
        "n_params,tokens,lr,batch_tokens,loss,diverged,state\n"
        "1e6,1e8,1e-3,4096,3.1,false,complete\n1e6,1e8,1,4096,nan,true,diverged\n"
        "1e6,1e8,1e-2,4096,inf,false,complete\n1e6,1e8,1e-4,4096,,false,pruned\n",
        "ok.csv",
    )
    runs = scaling.read_runs(ok)
    assert runs["diverged"].tolist() == [False, True, True, False]
    assert runs["pruned"].tolist() == [False, False, False, True]
    assert runs["finished"].tolist() == [True, False, False, False]
    assert np.isnan(runs["loss"][1])


def test_trajectory_law_is_fitted_stored_and_used(tmp_path):
    trajectory = pytest.importorskip("scaling.trajectory")
    from scaling.schedules import ScheduleSpec

    steps, rows, curve_rows = 150, [], []
    rng = np.random.default_rng(0)
    for n in (2.5e5, 1e6, 4e6):
        for name in ("cosine", "constant"):
            spec = ScheduleSpec(name, warmup_steps=10)
            lrs = spec.lrs(1e-2, steps)
            s = np.arange(1, steps + 1)
            # A loss that falls with the LR sum and drops further as the LR anneals.
            area = np.cumsum(lrs)
            loss = 2.0 * (n / 1e6) ** -0.05 + 1.0 * (n / 1e6) ** -0.1 * (1 + 10 * area) ** -0.5
            loss -= 0.3 * (1e-2 - lrs) / 1e-2 * (n / 1e6) ** 0.1 * 0.1
            logged = s[::10]
            rid = f"{n:g}-{name}"
            noisy = loss[logged - 1] * np.exp(rng.normal(0, 0.002, logged.size))
            curve_rows.append(pd.DataFrame({"run_id": rid, "step": logged, "loss": noisy}))
            rows.append(
                dict(
                    run_id=rid,
                    n_params=n,
                    tokens=steps * 4096,
                    lr=1e-2,
                    batch_tokens=4096,
                    loss=float(noisy[-1]),
                    steps=steps,
                    schedule=name,
                    schedule_json=spec.to_json(),
                    parametrization="sp",
                )
            )
    runs, curves = pd.DataFrame(rows), pd.concat(curve_rows, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        laws = scaling.fit(
            runs,
            curves,
            bootstrap=5,
            n_jobs=1,
            trajectory_options={"n_starts": 1, "n_bootstrap": 2, "max_segments": 30},
        )
    assert "trajectory" in laws.supports()
    assert laws.to_dict()["trajectory"]
    frame = laws.trajectory(
        1e6, steps * 4096, schedule="wsd", lr=1e-2, batch_tokens=4096, points=30
    )
    assert list(frame.columns) == FRAME_COLUMNS
    assert frame["loss"].iloc[-1] < frame["loss"].iloc[0]
    path = tmp_path / "laws.json"
    laws.save(path)
    again = scaling.load(path).trajectory(
        1e6, steps * 4096, schedule="wsd", lr=1e-2, batch_tokens=4096, points=30
    )
    np.testing.assert_allclose(again["loss"], frame["loss"], rtol=1e-9)
    assert trajectory.CrossSizeTrajectoryLaw is not None


def test_lr_is_the_optimum_at_the_recommended_or_given_batch(tmp_path):
    # Runs whose best LR grows as the square root of the batch: predict() must give the LR on
    # that valley at its own batch, and at a batch the user gives, and keep it in the file.
    truth = TrueLaws(lr_batch_exp=0.5)
    runs, _ = make_sweep(seed=23, sizes=(2e6, 6e6, 2e7, 6e7), truth=truth, sweep="valley")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        laws = scaling.fit(runs, bootstrap=20, seed=0, n_jobs=1)
    assert laws.to_dict()["laws"]["lr_at_batch"]["variables"] == ["N", "D", "B"]
    n, d = 2e7, 4e8
    p = laws.predict(n, d)
    assert p.lr == pytest.approx(laws.lr_at_batch_law.predict(n, d, batch_tokens=p.batch_tokens))
    lo, hi = p.intervals["lr"]
    assert lo <= p.lr <= hi
    big = laws.predict(n, d, batch_tokens=4 * p.batch_tokens)
    assert big.batch_tokens == 4 * p.batch_tokens and big.intervals["batch_tokens"] is None
    assert big.lr / p.lr == pytest.approx(2.0, rel=0.15)  # 4x the batch, sqrt: 2x the LR
    assert big.lr == pytest.approx(truth.lr_at_batch(n, d, big.batch_tokens), rel=0.3)
    assert any("batch_tokens as given" in w for w in big.warnings)
    laws.save(tmp_path / "laws.json")
    again = scaling.load(tmp_path / "laws.json")
    assert again.predict(n, d, batch_tokens=4096).lr == pytest.approx(
        laws.predict(n, d, batch_tokens=4096).lr
    )
    with pytest.raises(ValueError, match="batch_tokens"):
        laws.predict(n, d, batch_tokens=-1)


def test_a_law_without_the_coupling_says_so_when_given_a_batch():
    p = scaling.load("step-law").predict(7e9, 1.4e12, batch_tokens=4e6)
    assert p.batch_tokens == 4e6
    assert any("no LR law at a given batch" in w for w in p.warnings)


def test_fitted_laws_do_not_depend_on_the_runs_tables_row_order():
    """Two workers finish runs in any order: the same runs exported in another order must
    give the same laws (the per-cell bootstrap resampled rows by position, and its spread
    weights the optima, so the LR law moved with the order: coef 0.42 to 5.7 on `quick`)."""
    runs, _ = make_sweep(seed=5, sizes=(2e6, 6e6, 2e7, 6e7))
    shuffled = runs.sample(frac=1.0, random_state=3).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (scaling.fit(r, bootstrap=20, seed=0, n_jobs=1).to_dict() for r in (runs, shuffled))
    assert json.dumps(a["laws"], sort_keys=True) == json.dumps(b["laws"], sort_keys=True)
