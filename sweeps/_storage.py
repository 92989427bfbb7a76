"""Opening a sweep's Optuna storage, the planning lock, and heartbeats for journal files.

RDB storages (SQLite, PostgreSQL, any SQLAlchemy URL) use Optuna's own heartbeats; the
journal file backend has none, so this module keeps one in a trial system attribute.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

__all__ = [
    "StorageError",
    "StorageSpec",
    "postgres_driver",
    "journal_heartbeat",
    "fail_stale_journal_trials",
]

HEARTBEAT_ATTR = "sweeps:heartbeat"

# Optuna 4.9 renamed the retry callback and the RDBStorage argument that takes it.
if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
    RetryCallback = optuna.storages.RetryHeartbeatStaleTrialCallback
    _RETRY_ARG = "heartbeat_stale_trial_callback"
else:  # pragma: no cover - optuna < 4.9
    RetryCallback = optuna.storages.RetryFailedTrialCallback
    _RETRY_ARG = "failed_trial_callback"


class StorageError(RuntimeError):
    """The storage cannot be opened or reached; the message is one line for the user."""


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def postgres_driver(url: str) -> str:
    """postgresql:// with the driver that is installed: SQLAlchemy 2.1 defaults to psycopg 3,
    older releases (and many clusters) have psycopg2."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    import importlib.util

    rest = url.split("://", 1)[1]
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


@dataclass(frozen=True)
class StorageSpec:
    """Where a sweep lives: `kind` is "rdb" (SQLAlchemy URL) or "journal" (a log file)."""

    url: str
    kind: str
    path: Path | None = None  # sqlite database or journal file

    @classmethod
    def parse(cls, url: str) -> StorageSpec:
        if url.startswith("journal://"):
            return cls(url, "journal", Path(url[len("journal://") :]))
        if "://" not in url:
            if url.endswith(".log"):
                return cls(url, "journal", Path(url))
            if url.endswith((".db", ".sqlite", ".sqlite3")):
                return cls(f"sqlite:///{url}", "rdb", Path(url))
            raise StorageError(
                f"storage {url!r} is neither a SQLAlchemy URL (sqlite:///..., "
                "postgresql://...), a journal file (journal:///path or *.log) nor a *.db file"
            )
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            return cls(url, "rdb", Path(url[len("sqlite:///") :]))
        return cls(postgres_driver(url), "rdb", None)

    @property
    def display(self) -> str:
        return _hide_password(self.url)

    @property
    def dialect(self) -> str:
        if self.kind == "journal":
            return "journal"
        return self.url.split("://", 1)[0].split("+", 1)[0]

    def open(
        self,
        *,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        max_retry: int | None = None,
    ) -> optuna.storages.BaseStorage:
        """The Optuna storage; heartbeats (with retry of stale trials) when an interval is given."""
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "journal":
                from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

                lock = JournalFileOpenLock(str(self.path))
                backend = JournalFileBackend(str(self.path), lock_obj=lock)
                return optuna.storages.JournalStorage(backend)
            engine_kwargs: dict = {"pool_pre_ping": True}
            if self.dialect == "sqlite":
                # Workers on one machine share the file; wait for its write lock, not fail.
                engine_kwargs["connect_args"] = {"timeout": 120}
            elif self.dialect == "postgresql":
                engine_kwargs["connect_args"] = {"connect_timeout": 10}
            kwargs: dict = {}
            if heartbeat_interval is not None:
                kwargs = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period,
                }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                if kwargs:
                    kwargs[_RETRY_ARG] = RetryCallback(max_retry=max_retry)
                return optuna.storages.RDBStorage(self.url, engine_kwargs=engine_kwargs, **kwargs)
        except StorageError:
            raise
        except Exception as exc:  # driver missing, bad URL, server down, permissions...
            raise StorageError(f"cannot open storage {self.display}: {_first_line(exc)}") from None

    def plan_lock(self, sweep: str) -> PlanLock:
        return PlanLock(self, sweep)


class PlanLock:
    """Serializes "count this cell's trials, then claim one" across every worker of a sweep.

    Without it two workers can both see N-1 trials and both start the N-th. File storages use
    a POSIX lock next to the file (released by the kernel when a worker dies); PostgreSQL an
    advisory lock (released when the worker's connection drops); MySQL GET_LOCK.
    """

    def __init__(self, spec: StorageSpec, sweep: str) -> None:
        self.spec = spec
        self.key = zlib.crc32(f"sweeps:{sweep}".encode())
        self.name = f"sweeps:{sweep}"
        self._fd: int | None = None
        self._conn = None
        self._engine = None
        self._held = False

    def acquire(self) -> None:
        if self._held:
            return
        dialect = self.spec.dialect
        if self.spec.path is not None:
            if self._fd is None:
                lock_path = Path(f"{self.spec.path}.plan.lock")
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        elif dialect in ("postgresql", "mysql", "mariadb"):
            import sqlalchemy as sa

            if self._engine is None:
                self._engine = sa.create_engine(self.spec.url, poolclass=sa.pool.NullPool)
            self._conn = self._engine.connect()
            if dialect == "postgresql":
                self._conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            else:
                self._conn.execute(sa.text("SELECT GET_LOCK(:n, -1)"), {"n": self.name})
            self._conn.commit()
        # Other databases: no cross-process lock; the planned count may then be overshot.
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                import sqlalchemy as sa

                if self.spec.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                else:
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": self.name})
                conn.commit()
            conn.close()

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> PlanLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def journal_heartbeat(storage, trial_id: int, interval: float):
    """Record a heartbeat in the trial every `interval` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_journal_trials(study: optuna.Study, grace_period: float, max_retry: int) -> None:
    """Journal storages: fail RUNNING trials whose heartbeat is older than the grace period
    and enqueue a retry (same parameters), as RDB storages do with their own heartbeats."""
    now = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryCallback(max_retry=max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = trial.system_attrs.get(HEARTBEAT_ATTR)
        if last is None and trial.datetime_start is not None:
            last = trial.datetime_start.timestamp()
        if last is None or now - float(last) <= grace_period:
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            retry(study, study._storage.get_trial(trial._trial_id))
