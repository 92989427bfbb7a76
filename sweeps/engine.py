"""The sweep engine: `python -m sweeps run|export|status` over one Optuna storage.

One study per (N, D) cell (and per schedule variant); any number of workers, on this machine
or many, pull trials from the same storage until every cell holds its planned runs.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from sweeps._storage import StorageError, StorageSpec
from sweeps._worker import (
    FINISHED,
    Worker,
    best_run,
    cell_progress,
    grid_point_key,
    is_grid,
    row_and_curve,
    study_name,
    trial_point_keyer,
)
from sweeps.config import SweepConfig, load_config

__all__ = [
    "CURVE_COLUMNS",
    "RUN_COLUMNS",
    "export",
    "main",
    "main_export",
    "main_run",
    "main_status",
    "run_sweep",
    "sweep_status",
]

RUN_COLUMNS = [
    "run_id", "sweep", "cell", "n_params", "n_params_total", "tokens", "lr", "batch_tokens",
    "loss", "diverged", "pruned", "state", "width", "depth", "n_heads", "seq_len", "vocab_size",
    "steps", "schedule", "schedule_json", "warmup_steps", "weight_decay", "seed", "flops",
    "wall_seconds", "device", "parametrization", "base_width", "trial_number", "variant",
    "corpus",
]  # fmt: skip
CURVE_COLUMNS = ["run_id", "step", "tokens", "lr", "loss", "train_loss"]


class SweepError(RuntimeError):
    """A problem to report in one line (bad config, storage, corpus, failed worker)."""


# ----------------------------------------------------------------------------- helpers


def _storage_url(cfg: SweepConfig, storage: str | None) -> str:
    return storage or os.environ.get("SWEEP_STORAGE") or cfg.default_storage_url()


def _open_read(url: str) -> optuna.storages.BaseStorage:
    """The storage, for reading: a SQLite or journal file that does not exist is an error (a
    mistyped --storage), not a new empty storage created on the way."""
    spec = StorageSpec.parse(url)
    if spec.path is not None and not spec.path.exists():
        raise SweepError(
            f"--storage: no storage at {spec.path} (nothing has been run there; `sweeps run` "
            "creates it)"
        )
    return spec.open()


def _load_study(storage, cfg: SweepConfig, cell) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=study_name(cfg, cell), storage=storage)
    except KeyError:
        return None


def _check_corpus(cfg: SweepConfig, *, check_ids: bool = True):
    """The sweep's corpus, loaded once per process and shared by its trials; refused (in one
    line) when it does not match model.vocab_size, holds a token id >= its vocab size, or is
    shorter than one sequence. Spawned workers skip the id scan their parent made."""
    from sweeps.data import load_corpus

    corpus = load_corpus(
        cfg.corpus,
        vocab_size=cfg.corpus_vocab_size,
        dtype=cfg.corpus_dtype,
        seq_len=cfg.model.seq_len,
        check_ids=check_ids,
    )
    if corpus.vocab_size != cfg.model.vocab_size:
        raise SweepError(
            f"corpus vocab_size {corpus.vocab_size} != model.vocab_size {cfg.model.vocab_size} "
            f"in {cfg.path}"
        )
    return corpus


def sweep_status(cfg: SweepConfig, storage_url: str, storage=None) -> list[dict[str, Any]]:
    """One dict per cell: planned/finished/running/pruned/diverged counts and the best run."""
    storage = storage or _open_read(storage_url)
    out = []
    for cell in cfg.cells():
        study = _load_study(storage, cfg, cell)
        trials = study.get_trials(deepcopy=False) if study else []
        counts = cell_progress(trials, trial_point_keyer(cfg, cell))
        rows = [r for t in trials if (r := row_and_curve(t))]
        best = best_run(trials)
        out.append(
            {
                "cell": cell.name,
                "planned": cell.n_trials,
                "finished": counts["finished"],
                "running": counts["running"],
                "waiting": counts["waiting"],
                "pruned": counts["pruned"],
                "failed": counts["fail"],
                "diverged": sum(1 for r, _ in rows if r.get("diverged")),
                "best_loss": best["loss"] if best else math.nan,
                "best_lr": best["lr"] if best else math.nan,
                "best_batch_tokens": best["batch_tokens"] if best else None,
            }
        )
    return out


# ----------------------------------------------------------------------------- run


def _exit_with_parent(
    parent_pid: int, interval: float = 1.0, repeat: float = 2.0, give_up: float = 45.0
) -> None:
    """Interrupt this worker once its parent is gone (killed, even by SIGKILL): the running
    trial is failed at once, to be re-run on resume, instead of the worker pulling trials on
    its own.

    A real SIGINT to this process, not `_thread.interrupt_main`: only a signal wakes a main
    thread blocked in a system call (the planning file lock, a sleep). It is repeated, as the
    parent repeats its own: a KeyboardInterrupt raised inside a finalizer or a weakref callback
    is printed and dropped. Once the worker is stopping it ignores SIGINT, so the repeats do
    not cut its FAIL write short. A worker still alive `give_up` seconds later is stuck; it
    exits all the same, and its trial, still RUNNING, is failed by the heartbeat check on
    resume."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        orphaned = time.monotonic()
        while time.monotonic() - orphaned < give_up:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(repeat)
        print(f"error: worker {os.getpid()}: still running {give_up:.0f} s after its parent "
              "died; exiting", file=sys.stderr)  # fmt: skip
        os._exit(130)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _worker_sigint(get_worker: Callable[[], Worker | None]) -> Callable[[int, Any], None]:
    """A worker's SIGINT handler: KeyboardInterrupt, but never inside a storage write of the
    running trial (`Worker.interrupt_now`). Once the trial has taken one, optuna writes its
    FAIL, and the repeats of a stopping sweep's SIGINT (the parent's, the parent watch's) are
    ignored; during the trial's own writes, the interrupt waits for the write's end."""

    def interrupt(signum: int, frame: Any) -> None:
        worker = get_worker()
        if worker is None or worker.interrupt_now():
            raise KeyboardInterrupt

    return interrupt


def _worker_entry(
    cfg: SweepConfig, url: str, threads: int, gpu: str | None, parent_pid: int | None = None
) -> None:
    """Body of one worker process (spawned): pin threads/GPU before torch is imported."""
    # A sweep started in the background (`nohup make sweep &`, a batch job) inherits SIGINT as
    # ignored, and Python then leaves it ignored: the parent's SIGINT and the parent watch's
    # would do nothing, and the running trial would neither stop nor be failed. Workers always
    # install their own SIGINT handler, which raises KeyboardInterrupt (see _worker_sigint).
    worker = None
    signal.signal(signal.SIGINT, _worker_sigint(lambda: worker))
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        corpus = _check_corpus(cfg, check_ids=False)  # the parent scanned the token ids
        worker = Worker(cfg, url, threads=threads, corpus=corpus)
        worker.run()
    except KeyboardInterrupt:
        # Stopping: further interrupts (the parent repeats its SIGINT until the workers exit)
        # must not cut short the FAIL write of the running trial.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if worker is not None:
            worker.fail_running_trial()
        sys.exit(130)
    except Exception as exc:  # reported in one line; the trial is marked FAIL and re-run later
        print(f"error: worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


class _Progress:
    """A tqdm bar in the parent: finished / planned trials, ETA, best loss per cell."""

    def __init__(self, cfg: SweepConfig, url: str, interval: float = 2.0, enabled: bool = True):
        self.cfg, self.url, self.interval = cfg, url, interval
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def _loop(self) -> None:
        from tqdm.auto import tqdm

        try:
            storage = _open_read(self.url)
        except StorageError:
            return
        total = self.cfg.n_planned()
        interactive = sys.stderr.isatty()
        bar = tqdm(total=total, desc=f"sweep {self.cfg.name}", unit="run", dynamic_ncols=True)
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    status = sweep_status(self.cfg, self.url, storage)
                except Exception:  # a busy database: try again at the next tick
                    continue
                done = sum(min(s["finished"], s["planned"]) for s in status)
                # Off a terminal (CI logs, SLURM), print a line only when a run finishes.
                bar.update(done - bar.n)
                best = [
                    f"{s['cell']}={s['best_loss']:.3f}"
                    for s in status
                    if not math.isnan(s["best_loss"])
                ]
                running = sum(s["running"] for s in status)
                bar.set_postfix_str(
                    f"running={running} best: " + " ".join(best[-4:]), refresh=interactive
                )
                if stopping:
                    return
        finally:
            bar.close()


def run_sweep(
    cfg: SweepConfig,
    storage: str | None = None,
    *,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = True,
    max_trials: int | None = None,
) -> list[dict[str, Any]]:
    """Run workers until the sweep is done; returns the status table.

    workers == 1 trains in this process; more spawn one process each (one per GPU when there
    are several), with cores // workers torch threads apiece.
    """
    url = _storage_url(cfg, storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    spec = StorageSpec.parse(url)
    spec.open()  # fail early, in one line, on an unreachable storage
    corpus = _check_corpus(cfg)
    status = sweep_status(cfg, url)
    if all(s["finished"] >= s["planned"] and not (s["running"] or s["waiting"]) for s in status):
        return status  # already done: resuming a finished sweep starts no worker
    if threads is not None and threads < 1:
        raise SweepError(f"--threads must be >= 1, got {threads}")
    threads = threads or max(1, _cpu_count() // workers)
    gpus = _gpus()
    with _Progress(cfg, url, enabled=progress):
        if workers == 1:
            Worker(cfg, url, threads=threads, corpus=corpus).run(max_trials=max_trials)
        else:
            ctx = mp.get_context("spawn")
            procs = []
            for i in range(workers):
                gpu = gpus[i % len(gpus)] if len(gpus) > 1 else None
                p = ctx.Process(
                    target=_worker_entry,
                    args=(cfg, url, threads, gpu, os.getpid()),
                    daemon=False,
                )
                p.start()
                procs.append(p)
            try:
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                # Ctrl-C or SIGTERM here: interrupt the workers too (each fails its running
                # trial, to be re-run on resume), and wait for them.
                # The SIGINT is repeated until they exit: one that lands where Python drops it
                # (in a finalizer) would otherwise leave a worker training on.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(p.is_alive() for p in procs):
                    for p in procs:
                        if p.is_alive():
                            try:
                                os.kill(p.pid, signal.SIGINT)
                            except ProcessLookupError:
                                pass
                    for p in procs:
                        p.join(timeout=0.5 / len(procs))
                for p in procs:
                    if p.is_alive():  # stuck: its trial is failed later by its heartbeat
                        p.kill()
                        p.join()
                raise
            failed = [p.exitcode for p in procs if p.exitcode != 0]
            if failed:
                raise SweepError(
                    f"{len(failed)} of {workers} workers failed (exit codes {failed}); "
                    "finished runs are kept: re-run the same command to resume"
                )
    return sweep_status(cfg, url)


# ----------------------------------------------------------------------------- export


def export(
    cfg: SweepConfig, storage: str | None = None, out: str | Path | None = None
) -> tuple[Path, Path, int]:
    """Write runs.csv and curves.csv (contract 1) from the storage; returns paths and the
    number of planned runs not finished yet."""
    import pandas as pd

    url = _storage_url(cfg, storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = _open_read(url)
    out_dir = Path(out) if out else cfg.out_dir
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    missing = duplicates = 0
    for cell in cfg.cells():
        study = _load_study(store, cfg, cell)
        trials = study.get_trials(deepcopy=False, states=FINISHED) if study else []
        found = 0
        seen: set = set()
        for trial in sorted(trials, key=lambda t: t.number):
            got = row_and_curve(trial)
            if got is None:
                continue
            row, curve = got
            if is_grid(cfg, cell):
                # A repeat of a grid point at the same seed (possible in storages written
                # before the slot grid) is the same run again: keep the first.
                key = grid_point_key(row, cfg.seed)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
            found += 1
            rows.append(row)
            if curve.get("step"):
                frame = pd.DataFrame({c: curve.get(c, []) for c in CURVE_COLUMNS[1:]})
                frame.insert(0, "run_id", row["run_id"])
                curves.append(frame)
        missing += max(0, cell.n_trials - found)
    if duplicates:
        print(f"note: left out {duplicates} repeated grid run(s)", file=sys.stderr)
    runs = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in runs.columns:
            runs[col] = pd.Series(dtype="object")
    extra = [c for c in runs.columns if c not in RUN_COLUMNS]
    runs = runs[RUN_COLUMNS + extra]
    for col in ("loss", "lr", "wall_seconds", "flops"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    curve_table = (
        pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path, curves_path = out_dir / "runs.csv", out_dir / "curves.csv"
    if runs.empty and runs_path.is_file():
        try:
            kept = len(pd.read_csv(runs_path))
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            kept = 0
        if kept:
            # An empty export over a table of runs is a wrong --storage, not a result.
            raise SweepError(
                f"no finished run of sweep {cfg.name!r} in {url}; not overwriting {runs_path} "
                f"({kept} runs): check --storage"
            )
    runs.to_csv(runs_path, index=False)
    curve_table.to_csv(curves_path, index=False)
    return runs_path, curves_path, missing


# ----------------------------------------------------------------------------- CLI


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="config name in sweeps/configs or a .toml path")
    p.add_argument(
        "--storage",
        default=None,
        help="sqlite:///x.db, postgresql://..., journal:///path/x.log (default: the config's, "
        "else $SWEEP_STORAGE, else sqlite:///results/<sweep>/storage.db)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweeps", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run workers until every cell holds its planned trials")
    _add_common(run)
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    run.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (cores // workers)"
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress bar")
    exp = sub.add_parser("export", help="write runs.csv and curves.csv from the storage")
    _add_common(exp)
    exp.add_argument("--out", default=None, help="output folder (default results/<sweep>)")
    status = sub.add_parser("status", help="table of cells: finished/planned, best loss")
    _add_common(status)
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _guarded(fn, args: argparse.Namespace) -> int:
    try:
        return fn(args)
    except KeyboardInterrupt:
        return _fail("interrupted; finished runs are kept: re-run the same command to resume")
    except (ValueError, StorageError, SweepError, FileNotFoundError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except Exception as exc:  # a failed trial: marked FAIL in the storage, re-run on resume
        return _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    # SIGTERM (kill, SLURM's scancel, a timeout) stops the sweep as Ctrl-C does.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    cfg = load_config(args.config)
    url = _storage_url(cfg, args.storage)
    status = run_sweep(
        cfg, url, workers=args.workers, threads=args.threads, progress=not args.no_progress
    )
    finished = sum(min(s["finished"], s["planned"]) for s in status)
    planned = sum(s["planned"] for s in status)
    print(
        f"sweep {cfg.name}: {finished}/{planned} runs finished "
        f"({sum(s['pruned'] for s in status)} pruned, {sum(s['diverged'] for s in status)} "
        f"diverged) in {StorageSpec.parse(url).display}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    runs_path, curves_path, missing = export(cfg, args.storage, args.out)
    print(f"wrote {runs_path} and {curves_path}")
    if missing:
        print(f"warning: {missing} planned runs have not finished yet", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    status = sweep_status(cfg, _storage_url(cfg, args.storage))
    width = max(len(s["cell"]) for s in status)
    print(f"{'cell':<{width}}  done/plan  run  pruned  failed  div  best_loss  best_lr   batch")
    for s in status:
        print(
            f"{s['cell']:<{width}}  {s['finished']:>4}/{s['planned']:<4}  {s['running']:>3}  "
            f"{s['pruned']:>6}  {s['failed']:>6}  {s['diverged']:>3}  {s['best_loss']:>9.4f}  "
            f"{s['best_lr']:>8.2e}  {s['best_batch_tokens'] or '-'}"
        )
    return 0


def main_run(args: argparse.Namespace) -> int:
    return _guarded(_run, args)


def main_export(args: argparse.Namespace) -> int:
    return _guarded(_export, args)


def main_status(args: argparse.Namespace) -> int:
    return _guarded(_status, args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"run": main_run, "export": main_export, "status": main_status}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
