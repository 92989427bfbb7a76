"""The sweep engine end to end on tiny proxies: SQLite, journal files and PostgreSQL storages,
concurrent workers, a worker killed mid-trial, pruning, and one-line CLI errors."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from corpus_support import default_corpus_slice

from sweeps._storage import postgres_driver
from sweeps.config import CONFIG_DIR, load_config
from sweeps.engine import CURVE_COLUMNS, RUN_COLUMNS, export, run_sweep, sweep_status
from sweeps.engine import main as engine_main

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG_URL = "postgresql://scaling:scaling@127.0.0.1:5432/scaling_test"
CONTRACT_COLUMNS = [
    "run_id", "sweep", "cell", "n_params", "n_params_total", "tokens", "lr", "batch_tokens",
    "loss", "diverged", "pruned", "state", "width", "depth", "n_heads", "seq_len", "vocab_size",
    "steps", "schedule", "schedule_json", "warmup_steps", "weight_decay", "seed", "flops",
    "wall_seconds", "device", "parametrization", "base_width",
]  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    """A 400 kB slice of the default corpus's real text, so these runs stay small."""
    text = default_corpus_slice().decode("utf-8", "replace")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text)
    return path


def write_config(tmp_path: Path, corpus: Path, *, name: str = "tiny", extra: str = "") -> Path:
    """tiny.toml with this test's corpus, results folder and sweep name (+ extra TOML)."""
    head = f'name = "{name}"\ncorpus = "{corpus}"\nresults_dir = "{tmp_path / "results"}"\n'
    body = (CONFIG_DIR / "tiny.toml").read_text()
    path = tmp_path / f"{name}.toml"
    path.write_text(head + extra + body)
    return path


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeps.engine", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_export(cfg, storage: str, out: Path) -> pd.DataFrame:
    """The shared assertions: contract columns, every planned trial exactly once."""
    runs_path, curves_path, missing = export(cfg, storage, out)
    assert missing == 0
    runs = pd.read_csv(runs_path)
    curves = pd.read_csv(curves_path)
    assert set(CONTRACT_COLUMNS) <= set(runs.columns)
    assert list(runs.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert list(curves.columns) == CURVE_COLUMNS
    planned = {c.name: c.n_trials for c in cfg.cells()}
    assert runs.groupby("cell").size().to_dict() == planned
    assert runs["run_id"].is_unique
    assert len(runs) == cfg.n_planned()
    assert set(curves["run_id"]) == set(runs["run_id"])
    finished = runs[runs["state"] == "complete"]
    assert np.isfinite(finished["loss"]).all() and (finished["loss"] > 0).all()
    assert (runs["tokens"] == runs["steps"] * runs["batch_tokens"]).all()
    assert (runs["flops"] == 6.0 * runs["n_params"] * runs["tokens"]).all()
    assert set(runs["schedule"]) == {"cosine", "wsd"}
    # The variant reuses the best LR found in its base cell.
    variant = runs[runs["variant"]].iloc[0]
    base = runs[(runs["cell"] == variant["cell"].rsplit("-", 1)[0]) & ~runs["diverged"]]
    assert math.isclose(variant["lr"], base.loc[base["loss"].idxmin(), "lr"])
    # Trials in the storage agree: one finished trial per exported row, nothing left running.
    for cell in cfg.cells():
        study = optuna.load_study(study_name=f"{cfg.name}:{cell.name}", storage=storage)
        states = [t.state for t in study.get_trials()]
        assert optuna.trial.TrialState.RUNNING not in states
        assert optuna.trial.TrialState.WAITING not in states
        assert (
            states.count(optuna.trial.TrialState.COMPLETE)
            + states.count(optuna.trial.TrialState.PRUNED)
            == cell.n_trials
        )
    return runs


def test_tiny_sweep_sqlite_end_to_end(tmp_path, corpus_file):
    cfg = load_config(write_config(tmp_path, corpus_file))
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    status = run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    assert sum(s["finished"] for s in status) == cfg.n_planned()
    runs = check_export(cfg, storage, tmp_path / "out")
    assert (runs["device"].str.startswith("cpu")).all()
    assert (runs["vocab_size"] == 256).all() and (runs["corpus"] == str(corpus_file)).all()
    # Resuming a finished sweep runs nothing more and exports the same table.
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    again = check_export(cfg, storage, tmp_path / "out2")
    pd.testing.assert_frame_equal(runs, again)


def test_tiny_sweep_journal_file(tmp_path, corpus_file):
    cfg = load_config(write_config(tmp_path, corpus_file))
    storage = f"journal://{tmp_path / 'sweep.log'}"
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    runs_path, _, missing = export(cfg, storage, tmp_path / "out")
    assert missing == 0
    runs = pd.read_csv(runs_path)
    assert runs.groupby("cell").size().to_dict() == {c.name: c.n_trials for c in cfg.cells()}
    assert runs["run_id"].is_unique


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("SCALING_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(postgres_driver(url), connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {url} is unreachable ({type(exc).__name__}: {exc}); start it with "
            "`sudo .ci/start-postgres` or set SCALING_TEST_POSTGRES_URL"
        )
    return postgres_driver(url)


@pytest.mark.postgres
def test_tiny_sweep_postgres_two_workers(tmp_path, corpus_file, postgres_url):
    name = f"tiny_{uuid.uuid4().hex[:8]}"  # the test database is shared between runs
    path = write_config(tmp_path, corpus_file, name=name)
    cfg = load_config(path)
    try:
        done = cli("run", "--config", str(path), "--storage", postgres_url, "--workers", "2",
                   "--threads", "1", "--no-progress")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{cfg.n_planned()}/{cfg.n_planned()} runs finished" in done.stdout
        runs = check_export(cfg, postgres_url, tmp_path / "out")
        # Which process ran which trial is recorded (both usually do; not asserted, since one
        # fast worker may drain a sweep this small before the other has imported torch).
        assert runs["worker"].notna().all()
    finally:
        for cell in cfg.cells():
            try:
                optuna.delete_study(study_name=f"{name}:{cell.name}", storage=postgres_url)
            except KeyError:
                pass


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    out = []
    for summary in optuna.get_all_study_summaries(storage):
        out += optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    return out


def test_worker_killed_mid_trial_resumes(tmp_path, corpus_file):
    path = write_config(tmp_path, corpus_file)
    # Trials long enough (128 steps) that one is reliably caught mid-run after another ended.
    path.write_text(path.read_text().replace("[4096]", "[32768]"))
    cfg = load_config(path)
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    args = [sys.executable, "-m", "sweeps.engine", "run", "--config", str(path),
            "--storage", storage, "--threads", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished_before: set[int] = set()
    killed: int | None = None
    try:
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                trials = _trials(storage)
            except Exception:  # the database is still being created
                continue
            done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            mid = [
                t
                for t in trials
                if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values
            ]
            if done and mid:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = mid[0].number
                finished_before = {
                    t.user_attrs["row"]["run_id"]
                    for t in _trials(storage)
                    if t.state == optuna.trial.TrialState.COMPLETE
                }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed is not None, "the worker never reached a trial in progress"
    assert any(t.state == optuna.trial.TrialState.RUNNING for t in _trials(storage))

    resumed = cli("run", "--config", str(path), "--storage", storage, "--threads", "1",
                  "--no-progress")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    runs = check_export(cfg, storage, tmp_path / "out")
    assert finished_before <= set(runs["run_id"])
    trials = _trials(storage)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1  # the killed trial, failed by its stale heartbeat...
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1  # ...and re-run once, with the same parameters
    assert retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == failed[0].params


def test_pruned_trials_are_marked_pruned(tmp_path, corpus_file):
    extra = '[pruner]\nname = "median"\nn_startup_trials = 1\n\n'
    text = write_config(tmp_path, corpus_file, extra="").read_text()
    # One cell of 6 trials over a wide LR range, so that some fall behind and are pruned.
    text = text.replace("trials_per_cell = 2", "trials_per_cell = 6")
    text = text.replace("widths = [16, 32]", "widths = [32]").replace(
        "tokens = [4096]", "tokens = [8192]"
    )
    text = text.replace("lr = [3e-3, 3e-2]", "lr = [1e-4, 1e-1]")
    text = text.split("[[variants]]")[0] + extra
    path = tmp_path / "prune.toml"
    path.write_text(text)
    cfg = load_config(path)
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    runs_path, curves_path, missing = export(cfg, storage, tmp_path / "out")
    assert missing == 0
    runs = pd.read_csv(runs_path)
    trials = _trials(storage)
    pruned = {t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED}
    assert pruned, "no trial was pruned"
    assert len(runs) == 6
    assert set(runs.loc[runs["pruned"], "trial_number"]) == pruned
    assert (runs.loc[runs["pruned"], "state"] == "pruned").all()
    assert (runs.loc[~runs["pruned"], "state"].isin(["complete", "diverged"])).all()
    # A pruned run stopped early: its curve ends before its planned last step.
    curves = pd.read_csv(curves_path)
    for _, row in runs[runs["pruned"]].iterrows():
        assert curves.loc[curves["run_id"] == row["run_id"], "step"].max() < row["steps"]


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_bad_config_one_line(tmp_path, corpus_file):
    path = write_config(tmp_path, corpus_file, extra="learning_rate = 3\n")
    line = _one_error_line(cli("run", "--config", str(path), "--no-progress"))
    assert "learning_rate" in line and str(path) in line


def test_cli_unreachable_storage_one_line(tmp_path, corpus_file):
    path = write_config(tmp_path, corpus_file)
    url = "postgresql://nobody:secret@127.0.0.1:1/nowhere"
    line = _one_error_line(cli("run", "--config", str(path), "--storage", url, "--no-progress"))
    assert "storage" in line and "127.0.0.1:1" in line and "secret" not in line


def test_cli_missing_corpus_one_line(tmp_path):
    path = write_config(tmp_path, tmp_path / "no-such-corpus.txt")
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    result = cli("run", "--config", str(path), "--storage", storage, "--no-progress")
    line = _one_error_line(result)
    assert "no-such-corpus" in line


def test_status_and_export_without_runs(tmp_path, corpus_file, capsys):
    path = write_config(tmp_path, corpus_file)
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    # A storage file that does not exist is a mistyped --storage: refused, and not created.
    for command in ("status", "export"):
        assert engine_main([command, "--config", str(path), "--storage", storage]) == 2
        assert "--storage: no storage at" in capsys.readouterr().err
    assert not (tmp_path / "storage.db").exists()
    optuna.storages.RDBStorage(storage)  # an empty storage, as `sweeps run` leaves it at start
    assert engine_main(["status", "--config", str(path), "--storage", storage]) == 0
    assert "0/2" in capsys.readouterr().out
    assert engine_main(["export", "--config", str(path), "--storage", storage,
                        "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    assert "5 planned runs have not finished" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "out" / "runs.csv").empty
    # An empty export never replaces a table that holds runs (a wrong --storage loses nothing).
    good = "run_id,loss\nr1,2.5\n"
    (tmp_path / "out" / "runs.csv").write_text(good)
    assert engine_main(["export", "--config", str(path), "--storage", storage,
                        "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert "not overwriting" in capsys.readouterr().err
    assert (tmp_path / "out" / "runs.csv").read_text() == good


def grid_sweep(tmp_path: Path, corpus: Path, lr_points: int):
    """tiny.toml as one cell (width 16) searched on a grid of lr_points LRs x 2 batch sizes;
    returns the config and a SQLite storage URL."""
    text = write_config(tmp_path, corpus).read_text().split("[[variants]]")[0]
    text = text.replace("trials_per_cell = 2\n", "").replace('name = "tpe"', 'name = "grid"')
    text = text.replace("widths = [16, 32]", "widths = [16]")
    text = text.replace(
        "batch_tokens = [256, 512]", f"batch_tokens = [256, 512]\ngrid_points = {lr_points}"
    )
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return load_config(path), f"sqlite:///{tmp_path / 'storage.db'}"


def test_grid_sampler_visits_each_point_once(tmp_path, corpus_file):
    cfg, storage = grid_sweep(tmp_path, corpus_file, 2)
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    runs = pd.read_csv(export(cfg, storage, tmp_path / "out")[0])
    points = sorted(zip(runs["lr"].round(12), runs["batch_tokens"], strict=True))
    assert len(points) == 4 and len(set(points)) == 4  # 2 LRs x 2 batch sizes, none repeated
    assert set(runs["batch_tokens"]) == {256, 512}
    assert sorted(set(runs["lr"].round(12))) == [0.003, 0.03]


def test_grid_slot_claimed_but_not_yet_sampled_is_taken(tmp_path, corpus_file):
    """Two workers claiming at once: the first trial has its slot but no parameters yet (they
    are drawn after the planning lock is released). The second must not take the same point
    (it did: a fresh grid sweep with 2 workers ran one point twice)."""
    from sweeps._worker import Worker, grid_point_key, grid_points

    cfg, storage = grid_sweep(tmp_path, corpus_file, 2)
    worker = Worker(cfg, storage, threads=1)
    cell = worker.cells[0]
    study = worker.study(cell)

    def ask():  # outside Study.optimize, the heartbeat storage warns; the claim is the same
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return study.ask()

    first, second = ask(), ask()
    slot_a = worker._assign_slot(study, first, cell)
    slot_b = worker._assign_slot(study, second, cell)
    points = grid_points(cfg, cell)
    assert grid_point_key(points[slot_a]) != grid_point_key(points[slot_b])
    third = ask()
    slots = {slot_a, slot_b, worker._assign_slot(study, third, cell)}
    assert len({grid_point_key(points[i]) for i in slots}) == 3


def test_a_retry_from_before_slots_takes_its_own_points_slot(tmp_path, corpus_file):
    """A waiting trial with fixed parameters and no slot (a retry enqueued before trials had
    slots) is given the slot of its own point, not the first free one, so it runs where its
    slot says."""
    from sweeps._worker import Worker, grid_point_key, grid_points

    cfg, storage = grid_sweep(tmp_path, corpus_file, 2)
    worker = Worker(cfg, storage, threads=1)
    cell = worker.cells[0]
    study = worker.study(cell)
    points = grid_points(cfg, cell)
    last = points[-1]  # not the first free point
    study.enqueue_trial({"lr": last["lr"], "batch_tokens": last["batch_tokens"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    slot = worker._assign_slot(study, trial, cell)
    assert slot == len(points) - 1
    assert grid_point_key(points[slot]) == grid_point_key(last)


def test_a_grid_trial_off_its_slots_point_stops_the_sweep(tmp_path, corpus_file, monkeypatch):
    """A grid trial that would train elsewhere than its slot's point (here: at the sweep's seed
    instead of its slot's) stops the sweep with the mismatch. Progress counts a point by what
    its runs recorded, so such a run would leave the point open and the planning loop would
    make trials for it without end (as it did under this very mutation)."""
    from sweeps._worker import Worker

    cfg, storage = grid_sweep(tmp_path, corpus_file, 2)
    cfg.path.write_text(
        cfg.path.read_text().replace("grid_points = 2", "grid_points = 2\nseeds = [0, 3]")
    )
    cfg = load_config(cfg.path)
    real = Worker._hyperparameters

    def at_the_sweeps_seed(self, trial, cell, slot, by_name):
        lr, batch_tokens, _ = real(self, trial, cell, slot, by_name)
        return lr, batch_tokens, self.cfg.seed

    monkeypatch.setattr(Worker, "_hyperparameters", at_the_sweeps_seed)
    worker = Worker(cfg, storage, threads=1)
    # Seed 0's four points run as planned; the first of seed 3's stops the sweep (without the
    # check, nine trials would run and return, seed 3's points never covered).
    with pytest.raises(
        RuntimeError, match=r"holds grid slot 4 \(.*seed=3\) but would train at .*seed=0"
    ):
        worker.run(max_trials=9)
    assert worker.trials_run == 4
    states = [t.state for t in _trials(storage)]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert states.count(optuna.trial.TrialState.FAIL) == 1


def test_grid_sweep_interrupted_then_resumed_covers_every_point_once(
    tmp_path, corpus_file, monkeypatch
):
    """An interrupt (SIGINT / Ctrl-C) fails the running trial; the resumed sweep must run the
    failed point and every other point exactly once. (Optuna's GridSampler counted a failed
    point as visited, so resumed sweeps repeated finished points and skipped failed ones.)"""
    import sweeps.train

    cfg, storage = grid_sweep(tmp_path, corpus_file, 3)
    real_train, calls = sweeps.train.train, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 4):
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweeps.train, "train", interrupted)
    for _ in range(2):  # two interrupted sessions
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    states = [t.state.name for t in _trials(storage)]
    assert states.count("FAIL") == 2
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)  # resume to the end
    runs = pd.read_csv(export(cfg, storage, tmp_path / "out")[0])
    points = list(zip(runs["lr"].round(12), runs["batch_tokens"], strict=True))
    assert len(points) == 6 and len(set(points)) == 6  # 3 LRs x 2 batch sizes, none repeated
    assert len(calls) == 8  # 6 points + the 2 interrupted attempts, nothing run twice


def _run_interrupted_trial(tmp_path: Path, corpus_file: Path):
    """One trial of the tiny sweep, run in this process under a worker process's SIGINT
    handler, interrupted by whatever the test patched in; its FAIL then written as the worker's
    entry does. Returns the worker and the storage URL."""
    from sweeps._worker import Worker
    from sweeps.engine import _worker_sigint

    cfg = load_config(write_config(tmp_path, corpus_file))
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    worker = Worker(cfg, storage, threads=1)
    previous = signal.signal(signal.SIGINT, _worker_sigint(lambda: worker))
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.run(max_trials=1)
        worker.fail_running_trial()
    finally:
        signal.signal(signal.SIGINT, previous)
    return worker, storage


def test_a_repeated_interrupt_does_not_cut_the_fail_write_short(tmp_path, corpus_file, monkeypatch):
    """A stopping sweep repeats its SIGINT to the workers. Once the running trial has taken one,
    the worker's handler ignores the rest, so optuna's FAIL write of that trial runs to its end
    (with the default handler, a repeat landing in it raised inside the write)."""
    import optuna.study._optimize as optimize

    import sweeps.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real_tell, told = optimize._tell_with_warning, []

    def tell_under_repeats(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the sweep's repeat, landing during the write
        time.sleep(0.2)  # (a Python handler runs here, between two bytecodes)
        told.append(kwargs["state"])
        return real_tell(*args, **kwargs)

    monkeypatch.setattr(sweeps.train, "train", interrupted)
    monkeypatch.setattr(optimize, "_tell_with_warning", tell_under_repeats)
    worker, storage = _run_interrupted_trial(tmp_path, corpus_file)
    assert worker.stopping
    assert told == [optuna.trial.TrialState.FAIL]
    assert [t.state.name for t in _trials(storage)] == ["FAIL"]


def test_an_interrupt_waits_for_the_end_of_the_trials_storage_write(
    tmp_path, corpus_file, monkeypatch
):
    """An interrupt that arrives while the running trial writes to the storage (here, reporting
    an intermediate loss) is raised once the write has ended, not inside it: a write cut short
    can leave the trial RUNNING, with the database locked against its FAIL write."""
    import sweeps.train

    reported = []

    def one_evaluation(config, callback, corpus=None):
        callback(2, 2 * config.batch_tokens, 5.0)
        reported.append("after")  # not reached: the held interrupt ends the run here
        raise AssertionError("the interrupt was lost")

    real_report = optuna.trial.Trial.report

    def report_under_interrupt(self, value, step):
        os.kill(os.getpid(), signal.SIGINT)  # arrives during the write
        time.sleep(0.2)  # (a Python handler runs here, between two bytecodes)
        real_report(self, value, step)
        reported.append(step)

    monkeypatch.setattr(sweeps.train, "train", one_evaluation)
    monkeypatch.setattr(optuna.trial.Trial, "report", report_under_interrupt)
    _, storage = _run_interrupted_trial(tmp_path, corpus_file)
    assert reported == [2]
    (trial,) = _trials(storage)
    assert trial.state.name == "FAIL" and trial.intermediate_values == {2: 5.0}


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_stop_when_the_parent_is_killed(tmp_path, corpus_file, sig):
    """Killing `sweeps run` (even with SIGKILL) stops its worker processes: they fail their
    running trials at once (re-run on resume) instead of pulling trials on their own."""
    path = write_config(tmp_path, corpus_file)
    # Trials long enough (seconds, not a fraction of one) that a loaded machine cannot finish
    # the whole sweep between two polls: the signal must land while trials run.
    path.write_text(path.read_text().replace("[4096]", "[1048576]"))
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    args = [sys.executable, "-m", "sweeps.engine", "run", "--config", str(path),
            "--storage", storage, "--workers", "2", "--threads", "1", "--no-progress"]  # fmt: skip
    # Started as a background job is (`nohup make sweep &`): SIGINT ignored, which its workers
    # inherit unless they restore it.
    err_path = tmp_path / "sweep.err"  # the workers' too: they inherit it
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    workers: list[int] = []
    running: list = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                running = [t for t in _trials(storage) if t.state.name == "RUNNING"]
            except Exception:
                continue
            workers = [c for c in _children(proc.pid) if _alive(c)]
            if running and len(workers) >= 2:
                break
        assert running and len(workers) >= 2, "the workers never started a trial"
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
    finally:
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    states = [t.state.name for t in _trials(storage)]
    assert "RUNNING" not in states and states.count("FAIL") >= 1, err_path.read_text()[-4000:]


def test_variant_seeds_run_one_replicate_per_seed_and_lr_factor(tmp_path, corpus_file):
    """[[variants]] seeds = [...]: one run per seed and LR factor, at the same LR and batch; the
    seed is the run's (its row says which), so replicates differ; a resumed sweep whose config
    gains a seed runs only the new replicates."""
    text = write_config(tmp_path, corpus_file).read_text()
    text = text.replace("widths = [16, 32]", "widths = [16]").replace(
        "widths = [32]", "widths = [16]"
    )
    path = tmp_path / "seeds.toml"
    storage = f"sqlite:///{tmp_path / 'storage.db'}"

    def sweep(seeds: str, out: str) -> pd.DataFrame:
        path.write_text(text.replace('lr = "best"', f'lr = "best"\nseeds = {seeds}'))
        cfg = load_config(path)
        run_sweep(cfg, storage, workers=1, threads=1, progress=False)
        runs_path, _, missing = export(cfg, storage, tmp_path / out)
        assert missing == 0
        return pd.read_csv(runs_path)

    runs = sweep("[0, 7]", "out")
    wsd = runs[runs["schedule"] == "wsd"].sort_values("seed")
    assert list(wsd["seed"]) == [0, 7]
    assert wsd["lr"].nunique() == 1 and wsd["batch_tokens"].nunique() == 1
    assert wsd["loss"].iloc[0] != wsd["loss"].iloc[1]
    assert (runs.loc[runs["schedule"] == "cosine", "seed"] == 0).all()
    # The config gains a seed: resuming runs that replicate alone.
    runs2 = sweep("[0, 7, 8]", "out2")
    assert sorted(runs2.loc[runs2["schedule"] == "wsd", "seed"]) == [0, 7, 8]
    kept = runs2.set_index("run_id").loc[runs["run_id"], "loss"].to_numpy()
    np.testing.assert_array_equal(kept, runs["loss"].to_numpy())
    assert len(_trials(storage)) == len(runs2) == len(runs) + 1  # nothing ran twice


def test_grid_seeds_run_every_point_once_per_seed_and_extend_a_sweep(tmp_path, corpus_file):
    """search.seeds on a grid: every (LR, batch) point once per seed, each run at its seed. A
    single-seed sweep whose config gains seeds (the sweep's seed first) is extended: its runs
    are kept and only the new seeds' runs are made. The cell's best point (what a variant at
    the best LR takes) is the best on the mean of its seeds."""
    from sweeps._worker import best_run, study_name

    cfg, storage = grid_sweep(tmp_path, corpus_file, 2)
    run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    runs = pd.read_csv(export(cfg, storage, tmp_path / "out")[0])
    assert len(runs) == 4 and (runs["seed"] == 0).all()

    path = cfg.path
    path.write_text(path.read_text().replace("grid_points = 2", "grid_points = 2\nseeds = [0, 3]"))
    cfg2 = load_config(path)
    assert cfg2.n_planned() == 8
    run_sweep(cfg2, storage, workers=1, threads=1, progress=False)
    runs_path, _, missing = export(cfg2, storage, tmp_path / "out2")
    runs2 = pd.read_csv(runs_path)
    assert missing == 0 and len(runs2) == 8 and len(_trials(storage)) == 8  # nothing ran twice
    kept = runs2.set_index("run_id").loc[runs["run_id"], "loss"].to_numpy()
    np.testing.assert_array_equal(kept, runs["loss"].to_numpy())
    points = runs2.assign(lr=runs2["lr"].round(12)).groupby(["lr", "batch_tokens"])["seed"]
    assert points.apply(sorted).tolist() == [[0, 3]] * 4
    # replicates differ (another initialization and data order), one per seed
    by_seed = runs2.assign(lr=runs2["lr"].round(12)).pivot_table(
        index=["lr", "batch_tokens"], columns="seed", values="loss"
    )
    assert (by_seed[0] != by_seed[3]).all()
    # the cell's best point by the geometric mean of its two seeds
    study = optuna.load_study(study_name=study_name(cfg2, cfg2.cells()[0]), storage=storage)
    best = best_run(study.get_trials(deepcopy=False))
    means = np.exp(np.log(by_seed).mean(axis=1))
    assert best["seeds"] == 2 and best["loss"] == pytest.approx(means.min(), rel=1e-9)
    assert (round(best["lr"], 12), best["batch_tokens"]) == means.idxmin()
    status = sweep_status(cfg2, storage)[0]
    assert status["planned"] == status["finished"] == 8
    # A seed dropped from the config does not stand in for the new one's points; its runs are
    # still exported (no run is lost).
    path.write_text(path.read_text().replace("seeds = [0, 3]", "seeds = [0, 4]"))
    cfg3 = load_config(path)
    assert sweep_status(cfg3, storage)[0]["finished"] == 4
    run_sweep(cfg3, storage, workers=1, threads=1, progress=False)
    runs3 = pd.read_csv(export(cfg3, storage, tmp_path / "out3")[0])
    assert sorted(runs3["seed"].value_counts().items()) == [(0, 4), (3, 4), (4, 4)]
    assert sweep_status(cfg3, storage)[0]["finished"] == 8
