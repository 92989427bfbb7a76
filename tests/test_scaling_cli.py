"""`python -m scaling fit|predict|trajectory`: law file, report, curves; bad arguments exit 2 cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.synthetic import make_sweep


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    runs, _ = make_sweep(
        seed=31,
        sizes=(2e6, 6e6, 2e7, 6e7),
        lr_factors=(1 / 6, 1 / 2.5, 1, 2.5, 6),
        batch_factors=(1 / 4, 1, 4),
        sweep="cli",
    )
    runs.to_csv(out / "runs.csv", index=False)
    rc = main(
        [
            "fit",
            str(out / "runs.csv"),
            "-o",
            str(out / "laws.json"),
            "--report-dir",
            str(out / "report"),
            "--bootstrap",
            "20",
            "--n-jobs",
            "1",
        ]
    )
    assert rc == 0
    return out


def test_fit_names_each_law_and_how_the_loss_form_was_chosen(tmp_path, capsys):
    runs, _ = make_sweep(seed=32, sizes=(2e6, 6e6, 2e7, 6e7), sweep="cli-forms")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    args = ["fit", str(tmp_path / "runs.csv"), "-o", str(tmp_path / "laws.json")]
    assert main([*args, "--bootstrap", "0", "--no-report"]) == 0
    out = capsys.readouterr().out.splitlines()
    loss = [line for line in out if line.startswith("loss: ")]
    assert loss and "L = E + A/N^alpha + B/D^beta" in loss[0]
    assert "chosen by leave-one-out error: E+A/N^alpha+B/D^beta" in loss[0]
    assert "E+(A/N^alpha+B/D)^gamma" in loss[0]
    assert any(line.startswith("lr: lr = coef") for line in out)


def test_fit_writes_law_file_and_report(fitted_dir):
    doc = json.loads((fitted_dir / "laws.json").read_text())
    assert doc["id"] == "cli" and doc["fit_settings"]["bootstrap"] == 20
    report = (fitted_dir / "report" / "report.md").read_text()
    assert "## Cell optima" in report and "## Backtest" in report
    loo = doc["laws"]["loss"]["loo_rmse_log"]
    assert (
        f"leave-one-out error ({100 * loo:.2f}%, so at least ±{100 * 1.959964 * loo:.2f}%" in report
    )
    figures = {p.name for p in (fitted_dir / "report" / "figures").iterdir()}
    assert {"loss_law.png", "landscapes.png", "lr_law.png", "batch_tokens_law.png"} <= figures
    assert all((fitted_dir / "report" / "figures" / f).stat().st_size > 1000 for f in figures)


def test_predict_json(fitted_dir, capsys):
    rc = main(
        [
            "predict",
            "--laws",
            str(fitted_dir / "laws.json"),
            "--n-params",
            "1e9",
            "--tokens",
            "2e10",
            "--width",
            "512",
            "--seq-len",
            "256",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "cli" and out["lr"] > 0 and out["loss"] > 0
    assert len(out["intervals"]["lr"]) == 2
    assert out["lr_groups"]["width_mult"] == 8.0


def test_predict_at_a_given_batch(fitted_dir, capsys):
    laws = str(fitted_dir / "laws.json")
    argv = ["predict", "--laws", laws, "--n-params", "1e9", "--tokens", "2e10", "--json"]
    assert main([*argv, "--batch-tokens", "65536"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_tokens"] == 65536
    assert any("batch_tokens as given" in w for w in out["warnings"])


def test_predict_preset_text(capsys):
    assert main(["predict", "--laws", "step-law", "--n-params", "7e9", "--tokens", "1.4e12"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0009166" in out and "batch_tokens: 4.999e+06" in out


QUICK_LAWS = str(Path(__file__).resolve().parents[1] / "results" / "quick" / "laws.json")
_TRAJ = ["trajectory", "--laws", QUICK_LAWS, "--n-params", "5e5", "--tokens", "4e6"]


def test_trajectory_compares_schedules_in_text_csv_and_figure(tmp_path, capsys):
    csv, png = tmp_path / "curves.csv", tmp_path / "curves.png"
    argv = _TRAJ + ["--schedule", "cosine,wsd", "--points", "50", "--csv", str(csv)]
    assert main(argv + ["--plot", str(png), "--rows", "4"]) == 0
    out = capsys.readouterr().out
    assert "cosine: final loss" in out and "wsd: final loss" in out
    assert "(recommended)" in out
    # 5e5 parameters is about twice the quick sweep's largest proxy: said, not hidden.
    assert "extrapolation beyond the fitted range: n_params 2.0" in out
    table = pd.read_csv(csv)
    assert set(table["schedule"]) == {"cosine", "wsd"}
    assert {"step", "tokens", "lr", "loss", "loss_low", "loss_high"} <= set(table.columns)
    for _, curve in table.groupby("schedule"):
        assert len(curve) == 50 and np.isfinite(curve["loss"]).all()
        assert (curve["loss_low"] <= curve["loss"]).all() and (
            curve["loss"] <= curve["loss_high"]
        ).all()
        assert curve["loss"].iloc[-1] < curve["loss"].iloc[len(curve) // 4]  # it learns
    cos, wsd = (table[table["schedule"] == s] for s in ("cosine", "wsd"))
    # Same run, same peak LR: WSD holds the peak where cosine decays, so the curves differ.
    assert wsd["lr"].iloc[30] > cos["lr"].iloc[30]
    assert not np.allclose(wsd["loss"].to_numpy(), cos["loss"].to_numpy())
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_trajectory_at_a_given_lr_uses_it(tmp_path, capsys):
    csv = tmp_path / "curve.csv"
    argv = _TRAJ + ["--lr", "0.005", "--batch-tokens", "4096", "--rows", "0", "--csv", str(csv)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "peak lr 0.005 (given), batch 4096 tokens (given)" in out
    assert "cosine: final loss" in out
    table = pd.read_csv(csv)
    assert np.allclose(table["lr"].max(), 0.005, rtol=1e-6)  # the given peak LR, not the law's
    # batch 4096 tokens: the last step is the budget over the batch
    assert table["step"].iloc[-1] * 4096 == pytest.approx(table["tokens"].iloc[-1], rel=1e-6)
    assert table["step"].iloc[-1] == round(4e6 / 4096)


REFERENCE_LAWS = str(Path(QUICK_LAWS).parents[1] / "reference" / "laws.json")


def test_trajectory_says_what_the_residual_map_did(tmp_path, capsys):
    """At one of the reference sweep's grid points (width 144, 12M tokens, LR 0.01, batch
    2,048, its cosine with 5% warmup) the curve carries the fitted runs' misfit in full; a
    model 100x larger on 100x the tokens has no like run and gets the law alone."""
    csv = tmp_path / "curve.csv"
    at_grid = ["--n-params", "535968", "--tokens", "1.2e7", "--lr", "0.01"]
    at_grid += ["--batch-tokens", "2048", "--warmup", "0.05", "--rows", "0", "--csv", str(csv)]
    assert main(["trajectory", "--laws", REFERENCE_LAWS, *at_grid]) == 0
    out = capsys.readouterr().out
    assert "residual map: support 1.00 from" in out and "N = 5.36e+05" in out
    table = pd.read_csv(csv)
    # the grid point's misfit moves the curve: its end differs from the law alone's
    assert abs(table["loss"].iloc[-1] / table["loss_law_alone"].iloc[-1] - 1) > 0.005
    far = ["--n-params", "5e7", "--tokens", "1e9", "--rows", "0", "--csv", str(csv)]
    assert main(["trajectory", "--laws", REFERENCE_LAWS, *far]) == 0
    assert "no fitted run is like this one" in capsys.readouterr().out
    table = pd.read_csv(csv)
    np.testing.assert_allclose(table["loss"], table["loss_law_alone"], rtol=1e-6)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["predict", "--laws", "step-law", "--n-params", "abc", "--tokens", "1e9"], "--n-params"),
        (["predict", "--laws", "step-law", "--n-params", "-5", "--tokens", "1e9"], "--n-params"),
        (["predict", "--laws", "step-law", "--n-params", "1e9", "--tokens", "inf"], "--tokens"),
        (["predict", "--laws", "nope", "--n-params", "1e9", "--tokens", "1e9"], "unknown law"),
        (["predict", "--n-params", "1e9", "--tokens", "1e9"], "--laws"),
        (
            [
                "predict",
                "--laws",
                "step-law",
                "--n-params",
                "1e9",
                "--tokens",
                "1e9",
                "--batch-tokens",
                "0",
            ],
            "--batch-tokens",
        ),
        (["fit", "/no/such/runs.csv", "-o", "x.json"], "no such runs file"),
        (["frobnicate"], "invalid choice"),
        (_TRAJ + ["--schedule", "cosine,sawtooth"], "--schedule: unknown schedule sawtooth"),
        (_TRAJ + ["--warmup", "-1"], "--warmup"),
        (_TRAJ + ["--points", "1"], "--points must be at least 2, got 1"),
        (
            ["trajectory", "--laws", "kaplan", "--n-params", "1e9", "--tokens", "2e10"],
            "no trajectory law",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


_BROKEN_CURVES = [
    (b"a,b\n1,2\n", "curves table is missing column(s) run_id, step, loss"),
    (b"run_id,step\nr1,10\n", "missing column(s) loss"),
    (b'run_id,step,loss\n"r1,10,2.5\n', "cannot parse as CSV"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x92", "cannot parse as CSV"),
    (b"", "cannot parse as CSV"),
    (b"run_id,step,loss\nr1,10,2.5\nr1,20,abc\n", "column 'loss', row 3: expected a number"),
]


@pytest.mark.parametrize("content, needle", _BROKEN_CURVES)
def test_fit_with_a_broken_curves_file_is_an_error(tmp_path, capsys, content, needle):
    # A curves file given on the command line that cannot be used: exit 2 with one line naming
    # the file, not a trajectory law skipped with a warning and exit 0.
    runs, _ = make_sweep(seed=33, sizes=(2e6, 6e6, 2e7), sweep="cli-curves")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    curves = tmp_path / "curves.csv"
    curves.write_bytes(content)
    out = tmp_path / "laws.json"
    argv = ["fit", str(tmp_path / "runs.csv"), "--curves", str(curves), "-o", str(out)]
    assert main([*argv, "--bootstrap", "0", "--n-jobs", "1", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {curves}: ") and needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_fit_from_python_with_a_broken_curves_path_raises(tmp_path):
    from scaling import fit

    runs, _ = make_sweep(seed=33, sizes=(2e6, 6e6, 2e7), sweep="cli-curves")
    curves = tmp_path / "curves.csv"
    curves.write_text("a,b\n1,2\n")
    with pytest.raises(
        ValueError, match=r"curves\.csv: curves table is missing column\(s\) run_id"
    ):
        fit(runs, curves, bootstrap=0, n_jobs=1)


def test_module_entry_point_bad_law_file(tmp_path):
    bad = tmp_path / "laws.json"
    bad.write_text('{"format_version": 7')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaling",
            "predict",
            "--laws",
            str(bad),
            "--n-params",
            "1e9",
            "--tokens",
            "1e10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--csv", "/nonexistent-dir/x.csv"], "error: Cannot save file"),  # an OSError
        (["--tokens", "1e16", "--batch-tokens", "1024"], "a trajectory is drawn for at most"),
        (["--batch-tokens", "1e7"], "batch_tokens must be at most tokens"),
        (["--warmup", "100000"], "warmup must be shorter than the run"),
    ],
)
def test_trajectory_refusals_are_one_line(extra, needle, capsys):
    argv = _TRAJ + ["--rows", "0"] + extra  # a repeated --tokens: argparse keeps the last
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_trajectory_warns_outside_its_fitted_runs(capsys):
    # A batch 16x beyond the quick sweep's runs (one batch size, 4096): warned, still drawn.
    assert main(_TRAJ + ["--rows", "0", "--batch-tokens", "65536"]) == 0
    err = capsys.readouterr().err
    assert "batch_tokens 6.554e+04 is 16x outside the trajectory law's fitted runs" in err


def test_duplicate_run_ids_and_an_unfittable_table_are_explained(tmp_path, capsys):
    runs = pd.read_csv(Path(QUICK_LAWS).parent / "runs.csv")
    dup = tmp_path / "dup.csv"
    pd.concat([runs, runs.iloc[:2]]).to_csv(dup, index=False)
    assert main(["fit", str(dup), "-o", str(tmp_path / "l.json"), "--bootstrap", "0"]) == 2
    assert f"column 'run_id': {runs['run_id'].iloc[0]!r} appears 2 times" in (
        capsys.readouterr().err
    )
    one = tmp_path / "one.csv"
    runs.iloc[:1].to_csv(one, index=False)
    assert main(["fit", str(one), "-o", str(tmp_path / "l.json"), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    # The reasons come with the refusal, not only "see the warnings".
    assert "the runs support no law (1 rows, 1 finished, 0 pruned)" in err
    assert "loss law not fitted" in err
