"""Command line: `python -m scaling fit RUNS.csv -o laws.json` and `python -m scaling predict`.

Bad arguments print one error line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def _positive(name: str, cast=float):
    def parse(text: str):
        try:
            value = cast(float(text)) if cast is int else cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive and finite, got {text!r}")
        return value

    return parse


def _nonneg_int(name: str):
    def parse(text: str):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {text!r}")
        return value

    return parse


def _parser() -> _Parser:
    p = _Parser(prog="python -m scaling", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    f = sub.add_parser("fit", help="fit laws to a runs table and write the law file and a report")
    f.add_argument("runs", help="runs table CSV (contract 1)")
    f.add_argument("--curves", help="curves CSV, to fit the trajectory law")
    f.add_argument("-o", "--output", required=True, help="law file to write (JSON)")
    f.add_argument("--report-dir", help="where report.md and figures/ go (default: next to -o)")
    f.add_argument("--no-report", action="store_true", help="write the law file only")
    f.add_argument("--bootstrap", type=_nonneg_int("--bootstrap"), default=1000)
    f.add_argument("--seed", type=_nonneg_int("--seed"), default=0)
    f.add_argument("--n-jobs", type=_positive("--n-jobs", int), default=2)
    f.add_argument("--sweep", help="name of the fitted laws (default: the runs' sweep column)")
    q = sub.add_parser("predict", help="lr, batch and loss for a target n_params and tokens")
    q.add_argument("--laws", required=True, help="law file path or preset name")
    q.add_argument("--n-params", required=True, type=_positive("--n-params"))
    q.add_argument("--tokens", required=True, type=_positive("--tokens"))
    q.add_argument("--width", type=_positive("--width", int))
    q.add_argument("--seq-len", type=_positive("--seq-len", int))
    q.add_argument(
        "--batch-tokens",
        type=_positive("--batch-tokens"),
        help="the batch you will train with: lr is then the optimum at that batch",
    )
    q.add_argument("--json", action="store_true", help="print the Prediction as JSON")
    sub.add_parser("presets", help="list the presets")
    return p


def _interval(iv) -> str:
    return f"  [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else ""


def _cmd_fit(args) -> int:
    from .laws import fit
    from .runs import read_runs

    runs = read_runs(args.runs)
    if args.curves and not Path(args.curves).is_file():
        raise ValueError(f"{args.curves}: no such curves file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        laws = fit(
            runs,
            args.curves,
            bootstrap=args.bootstrap,
            seed=args.seed,
            n_jobs=args.n_jobs,
            sweep=args.sweep,
            progress=True,
        )
    out = Path(args.output)
    doc = laws.save(out)
    print(f"wrote {out}")
    for name, law in doc["laws"].items():
        line = f"{name}: {law.get('expression', law['form'])}"
        sel = law.get("selection")
        if sel:
            errs = ", ".join(f"{f} {100 * v:.2f}%" for f, v in sel["loo_rmse_log"].items())
            line += f" (chosen by leave-one-out error: {errs})"
        print(line)
    if not args.no_report:
        from .report import write_report

        report_dir = Path(args.report_dir) if args.report_dir else out.parent
        path = write_report(laws, report_dir, runs)
        print(f"wrote {path}")
    seen = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)
    return 0


def _cmd_predict(args) -> int:
    from .laws import load

    laws = load(args.laws)
    pred = laws.predict(
        args.n_params,
        args.tokens,
        seq_len=args.seq_len,
        width=args.width,
        batch_tokens=args.batch_tokens,
    )
    if args.json:
        print(json.dumps(pred.to_dict(), indent=1))
        return 0
    print(f"law: {pred.law} ({laws.kind})")
    print(f"n_params {pred.n_params:.4g}, tokens {pred.tokens:.4g}, flops {pred.flops:.4g}")
    for name, value in (("lr", pred.lr), ("batch_tokens", pred.batch_tokens), ("loss", pred.loss)):
        shown = "-" if value is None else f"{value:.4g}"
        print(f"{name:>13}: {shown}{_interval(pred.intervals.get(name))}")
    if pred.batch_size is not None:
        print(f"{'batch_size':>13}: {pred.batch_size:.4g} sequences of {pred.seq_len}")
    print(f"       lr is: {pred.lr_kind}")
    if pred.lr_groups:
        for group, spec in pred.lr_groups["groups"].items():
            print(f"  {group:>16}: lr {spec['lr']:.4g}")
    ex = ", ".join(f"{k} {v:.3g}" for k, v in pred.extrapolation.items())
    print(f"extrapolation: {ex}")
    for w in pred.warnings:
        print(f"warning: {w}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ._errors import LawFileError, UnsupportedQuery

    try:
        args = _parser().parse_args(argv)
        if args.command == "fit":
            return _cmd_fit(args)
        if args.command == "predict":
            return _cmd_predict(args)
        from .presets import list_presets

        print("\n".join(list_presets()))
        return 0
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (LawFileError, UnsupportedQuery, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
