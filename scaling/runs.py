"""Read and validate the runs table (contract 1) that `python -m sweeps export` writes.

Every fit starts here: bad rows fail loudly with the file, column, row and value named;
diverged rows are kept (they are evidence), pruned rows are marked as not finished.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CURVES_COLUMNS",
    "REQUIRED_COLUMNS",
    "read_csv_table",
    "read_curves",
    "read_runs",
    "validate_runs",
    "runs_sha256",
]

REQUIRED_COLUMNS = ("n_params", "tokens", "lr", "batch_tokens", "loss")
CURVES_COLUMNS = ("run_id", "step", "loss")
_POSITIVE = ("n_params", "tokens", "lr", "batch_tokens")
_STATES = ("complete", "pruned", "diverged", "failed")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


def _as_bool(series: pd.Series, column: str, source: str) -> pd.Series:
    out = []
    for i, value in enumerate(series.tolist()):
        if isinstance(value, (bool, np.bool_)):
            out.append(bool(value))
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(False)
        elif isinstance(value, (int, np.integer, float, np.floating)) and value in (0, 1):
            out.append(bool(value))
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            out.append(value.strip().lower() in _TRUE)
        else:
            raise ValueError(
                f"{source}: column {column!r}, row {i + 2}: expected true/false, got {value!r}"
            )
    return pd.Series(out, index=series.index, dtype=bool)


def validate_runs(runs: pd.DataFrame, source: str = "<runs table>") -> pd.DataFrame:
    """Check a runs table and return a normalized copy.

    Adds (when absent) `diverged`, `pruned`, `state` and `finished` columns: `finished` is True
    for complete runs with a finite loss, the only rows a loss or optimum fit uses as values.
    Row numbers in messages count the CSV header as row 1, as a spreadsheet shows them.
    """
    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"{source}: expected a pandas DataFrame, got {type(runs).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(
            f"{source}: missing required column(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )
    if len(runs) == 0:
        raise ValueError(f"{source}: the runs table has no rows")
    df = runs.copy().reset_index(drop=True)
    if "run_id" in df.columns:
        # A run counted twice weighs twice in every fit (and reads as a second seed).
        ids = df["run_id"].astype(str)
        dup = ids.duplicated(keep=False) & df["run_id"].notna()
        if dup.any():
            first = ids[dup].iloc[0]
            rows = [int(i) + 2 for i in np.flatnonzero((ids == first).to_numpy())]
            raise ValueError(
                f"{source}: column 'run_id': {first!r} appears {len(rows)} times (rows "
                f"{', '.join(map(str, rows[:5]))}); every run needs its own id "
                f"({int(dup.sum())} rows share an id with another)"
            )
    for column in REQUIRED_COLUMNS:
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if column != "loss" and df[column].isna().any():
            bad = bad | df[column].isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{source}: column {column!r}, row {i + 2}: not a number: {df[column].iloc[i]!r}"
            )
        df[column] = values.astype(float)
    for column in _POSITIVE:
        values = df[column].to_numpy()
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source}: column {column!r}, row {i + 2}: must be a positive finite number, "
                f"got {values[i]!r}"
            )
    df["diverged"] = (
        _as_bool(df["diverged"], "diverged", source)
        if "diverged" in df.columns
        else pd.Series(False, index=df.index)
    )
    df["pruned"] = (
        _as_bool(df["pruned"], "pruned", source)
        if "pruned" in df.columns
        else pd.Series(False, index=df.index)
    )
    if "state" in df.columns:
        states = df["state"].fillna("complete").astype(str).str.strip().str.lower()
        bad = ~states.isin(_STATES)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{source}: column 'state', row {i + 2}: unknown state {df['state'].iloc[i]!r} "
                f"(expected one of {', '.join(_STATES)})"
            )
        df["state"] = states
        df.loc[states == "pruned", "pruned"] = True
        df.loc[states == "diverged", "diverged"] = True
    loss = df["loss"].to_numpy()
    # A non-pruned run whose loss is NaN/inf blew up even if nobody set the flag.
    blown = ~np.isfinite(loss) & ~df["pruned"].to_numpy()
    if "state" in df.columns:
        blown &= (df["state"] != "failed").to_numpy()
    df.loc[blown, "diverged"] = True
    bad = np.isfinite(loss) & (loss <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: column 'loss', row {i + 2}: must be positive, got {loss[i]!r}")
    if "state" not in df.columns:
        state = np.where(df["pruned"], "pruned", np.where(df["diverged"], "diverged", "complete"))
        df["state"] = state
    df["finished"] = (
        (df["state"] == "complete").to_numpy()
        & ~df["diverged"].to_numpy()
        & ~df["pruned"].to_numpy()
        & np.isfinite(loss)
    )
    if "flops" in df.columns:
        flops = pd.to_numeric(df["flops"], errors="coerce")
        df["flops"] = flops.where(flops > 0, 6.0 * df["n_params"] * df["tokens"])
    else:
        df["flops"] = 6.0 * df["n_params"] * df["tokens"]
    return df


def runs_sha256(runs: pd.DataFrame | str | os.PathLike) -> str:
    """sha256 of the runs table: of the file's bytes for a path, of its CSV text for a frame."""
    if isinstance(runs, (str, os.PathLike)):
        return hashlib.sha256(Path(runs).read_bytes()).hexdigest()
    text = runs.to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_csv_table(path: str | os.PathLike, what: str = "table") -> pd.DataFrame:
    """A CSV file as a DataFrame, or a one-line ValueError naming the file when it is missing,
    cannot be read, or is not CSV."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such {what} file")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot parse as CSV: {' '.join(str(exc).split())}") from exc
    except OSError as exc:  # a file we may not read
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_curves(path: str | os.PathLike) -> pd.DataFrame:
    """Read a curves CSV (contract 1: run_id, step, loss at the logged steps): a ValueError
    naming the file when it is missing, cannot be read, lacks a column or holds a step or loss
    that is not a number. A file the user names must be usable, not skipped with a warning."""
    df = read_csv_table(path, "curves")
    missing = [c for c in CURVES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: curves table is missing column(s) {', '.join(missing)}")
    for col in ("step", "loss"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & df[col].notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{path}: column {col!r}, row {i + 2}: expected a number, got {df[col].iloc[i]!r}"
            )
        df[col] = values
    df.attrs["source"] = str(path)
    return df


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a runs CSV and validate it (see `validate_runs`); errors name the file."""
    df = validate_runs(read_csv_table(path, "runs"), source=str(path))
    df.attrs["source"] = str(path)
    df.attrs["sha256"] = runs_sha256(path)
    return df
