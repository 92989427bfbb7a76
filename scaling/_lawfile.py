"""Reading and checking law files (contract 2): every failure names the file and the field."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import LawFileError

__all__ = ["FORMAT_VERSION", "read_law_file", "validate_law_dict", "jsonable"]

FORMAT_VERSION = 1
LOSS_FORMS = (
    "E+A/N^alpha+B/D^beta",
    "E+A/N^alpha",
    "E+B/D^beta",
    "E+(A/N^alpha+B/D)^gamma",
    "kaplan",
)
FORMS = (*LOSS_FORMS, "power", "kaplan-critical-batch", "power-allocation")


def jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays converted, NaN/inf as null, tuples as lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (numbers.Integral,)):
        return int(obj)
    if isinstance(obj, (numbers.Real,)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field: str | None, problem: str):
        raise LawFileError(self.path, field, problem)

    def get(self, obj: dict, key: str, where: str, types, *, optional: bool = False):
        field = f"{where}.{key}" if where else key
        if key not in obj:
            if optional:
                return None
            self.fail(field, "is missing")
        value = obj[key]
        if value is None and optional:
            return None
        if types is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(float(value)):
                ok = False
            name = "a finite number"
        elif types is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            name = "an integer"
        else:
            ok = isinstance(value, types)
            name = {dict: "an object", list: "a list", str: "a string"}.get(types, str(types))
        if not ok:
            self.fail(field, f"must be {name}, got {type(value).__name__} {value!r:.60}")
        return value

    def number_map(self, obj: dict, where: str) -> None:
        for k, v in obj.items():
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            ):
                self.fail(f"{where}.{k}", f"must be a finite number or null, got {v!r:.60}")

    def interval_map(self, obj: dict, where: str) -> None:
        for k, v in obj.items():
            if v is None:
                continue
            if (
                not isinstance(v, list)
                or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            ):
                self.fail(f"{where}.{k}", f"must be [low, high] or null, got {v!r:.60}")

    def law(self, law: Any, where: str) -> None:
        if not isinstance(law, dict):
            self.fail(where, f"must be an object, got {type(law).__name__}")
        form = self.get(law, "form", where, str)
        if form not in FORMS:
            self.fail(f"{where}.form", f"unknown form {form!r} (known: {', '.join(FORMS)})")
        if form == "power-allocation":
            for key in ("n_params", "tokens"):
                self.law(self.get(law, key, where, dict), f"{where}.{key}")
            return
        params = self.get(law, "params", where, dict)
        self.number_map(params, f"{where}.params")
        intervals = self.get(law, "intervals", where, dict, optional=True)
        if intervals is not None:
            self.interval_map(intervals, f"{where}.intervals")
        if form == "power":
            variables = self.get(law, "variables", where, list)
            at_batch = where.endswith(".lr_at_batch")  # the one law in batch_tokens
            allowed = ("N", "D", "B") if at_batch else ("N", "D", "C")
            if not variables or any(v not in allowed for v in variables):
                self.fail(
                    f"{where}.variables", f"must list {', '.join(allowed)}, got {variables!r}"
                )
            if at_batch and "B" not in variables:
                self.fail(f"{where}.variables", f"must include B, got {variables!r}")
            self.get(law, "target", where, str)
            for key in ["coef", *[f"exp_{v}" for v in variables]]:
                if params.get(key) is None:
                    self.fail(f"{where}.params.{key}", "is missing")
            boot = self.get(law, "bootstrap", where, dict, optional=True)
            if boot is not None:
                samples = self.get(boot, "samples", f"{where}.bootstrap", list)
                if any(not isinstance(r, list) or len(r) != 1 + len(variables) for r in samples):
                    self.fail(f"{where}.bootstrap.samples", "rows must match the law's columns")
        elif form in LOSS_FORMS and form != "kaplan":
            needed = {
                "E+A/N^alpha+B/D^beta": "E A alpha B beta",
                "E+A/N^alpha": "E A alpha",
                "E+(A/N^alpha+B/D)^gamma": "E A alpha B beta gamma",
            }
            for key in needed.get(form, "E B beta").split():
                if params.get(key) is None:
                    self.fail(f"{where}.params.{key}", "is missing")
            boot = self.get(law, "bootstrap", where, dict, optional=True)
            if boot is not None:
                samples = self.get(boot, "samples", f"{where}.bootstrap", list)
                columns = self.get(boot, "columns", f"{where}.bootstrap", list, optional=True)
                width = len(columns) if columns is not None else 5
                if any(not isinstance(r, list) or len(r) != width for r in samples):
                    self.fail(f"{where}.bootstrap.samples", f"rows must have {width} columns")
        elif form == "kaplan":
            for key in ("Nc", "Dc", "alpha_N", "alpha_D"):
                if params.get(key) is None:
                    self.fail(f"{where}.params.{key}", "is missing")
        elif form == "kaplan-critical-batch":
            for key in ("B_star", "alpha_B"):
                if params.get(key) is None:
                    self.fail(f"{where}.params.{key}", "is missing")


def validate_law_dict(doc: Any, path: str = "<law dict>") -> dict:
    """Check a law-file document; raise LawFileError naming the path and the field."""
    c = _Checker(path)
    if not isinstance(doc, dict):
        c.fail(None, f"the top level must be a JSON object, got {type(doc).__name__}")
    version = c.get(doc, "format_version", "", int)
    if version > FORMAT_VERSION:
        c.fail(
            "format_version",
            f"format_version {version} is newer than this library reads ({FORMAT_VERSION}); "
            "upgrade the scaling package",
        )
    if version < 1:
        c.fail("format_version", f"unknown format_version {version}")
    c.get(doc, "id", "", str)
    kind = c.get(doc, "kind", "", str)
    if kind not in ("fitted", "preset"):
        c.fail("kind", f"must be 'fitted' or 'preset', got {kind!r}")
    par = c.get(doc, "parametrization", "", dict)
    pk = c.get(par, "kind", "parametrization", str)
    if pk not in ("mup", "sp", "unknown", "mixed"):
        c.fail("parametrization.kind", f"must be mup, sp, unknown or mixed, got {pk!r}")
    c.get(par, "base_width", "parametrization", float, optional=True)
    c.get(doc, "units", "", dict)
    fr = c.get(doc, "fitted_range", "", dict)
    for key, value in fr.items():
        if value is not None and (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        ):
            c.fail(f"fitted_range.{key}", f"must be [low, high] or null, got {value!r:.60}")
    laws = c.get(doc, "laws", "", dict)
    if not laws:
        c.fail("laws", "holds no law")
    for name, law in laws.items():
        c.law(law, f"laws.{name}")
    comp = c.get(doc, "compute", "", dict, optional=True)
    if comp is not None:
        definition = c.get(comp, "definition", "compute", str)
        if definition not in ("6ND", "deepseek"):
            c.fail("compute.definition", f"must be '6ND' or 'deepseek', got {definition!r}")
    if kind == "fitted":
        src = c.get(doc, "source", "", dict)
        c.get(src, "sweep", "source", str)
        c.get(src, "rows", "source", int)
        sha = c.get(src, "sha256", "source", str)
        if len(sha) != 64:
            c.fail("source.sha256", f"must be 64 hex digits, got {sha!r:.70}")
        c.get(doc, "cells", "", list)
        c.get(doc, "backtest", "", dict)
    else:
        c.get(doc, "citation", "", str)
    traj = c.get(doc, "trajectory", "", dict, optional=True)
    del traj
    c.get(doc, "warnings", "", list, optional=True)
    return doc


def read_law_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    text_path = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LawFileError(text_path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LawFileError(text_path, None, f"cannot be read: {exc}") from exc
    if not text.strip():
        raise LawFileError(text_path, None, "is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1
        what = "is truncated" if truncated else "is not valid JSON"
        # The last key before the error is the field being read when it broke.
        keys = re.findall(r'"([^"\\]{1,80})"\s*:', text[: exc.pos])
        field = keys[-1] if keys else None
        raise LawFileError(
            text_path, field, f"{what} (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return validate_law_dict(doc, text_path)
