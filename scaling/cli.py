"""Command line: `python -m scaling fit RUNS.csv -o laws.json`, `predict` and `trajectory`.

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
    f.add_argument(
        "--bootstrap",
        type=_nonneg_int("--bootstrap"),
        default=1000,
        help="resamples for the intervals; the cell resamples also weight the LR and batch laws' "
        "cells, so fewer than ~1000 make those laws' point estimates depend on the seed "
        "(0: equal weights, no intervals)",
    )
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
    t = sub.add_parser(
        "trajectory",
        help="the predicted loss curve of a target run under one or more LR schedules",
    )
    t.add_argument("--laws", required=True, help="law file path (a fitted law with curves)")
    t.add_argument("--n-params", required=True, type=_positive("--n-params"))
    t.add_argument("--tokens", required=True, type=_positive("--tokens"))
    t.add_argument(
        "--schedule",
        default="cosine",
        help="schedule name, or several separated by commas to compare them "
        "(constant, cosine, wsd, linear, step)",
    )
    t.add_argument(
        "--warmup", type=_warmup, help="warmup steps (>= 1) or a fraction of the run (< 1)"
    )
    t.add_argument("--points", type=_positive("--points", int), default=200)
    t.add_argument("--lr", type=_positive("--lr"), help="peak LR (default: the recommended one)")
    t.add_argument(
        "--batch-tokens", type=_positive("--batch-tokens"), help="default: the recommended batch"
    )
    t.add_argument("--csv", help="write every point of every curve to this CSV file")
    t.add_argument("--plot", help="write a figure of the curves to this PNG file")
    t.add_argument("--rows", type=_nonneg_int("--rows"), default=10, help="rows printed per curve")
    sub.add_parser("presets", help="list the presets")
    return p


def _warmup(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--warmup must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"--warmup must be a step count or a fraction in [0, 1), got {text!r}"
        )
    return value


def _interval(iv) -> str:
    return f"  [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else ""


def _cmd_fit(args) -> int:
    from .laws import fit
    from .runs import read_curves, read_runs

    runs = read_runs(args.runs)
    # Read before fitting: a curves file given but unusable is an error (exit 2), not a
    # trajectory law skipped with a warning.
    curves = read_curves(args.curves) if args.curves else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            laws = fit(
                runs,
                curves,
                bootstrap=args.bootstrap,
                seed=args.seed,
                n_jobs=args.n_jobs,
                sweep=args.sweep,
                progress=True,
            )
        except ValueError:
            # The warnings say why each law could not be fitted: show them with the error.
            for msg in dict.fromkeys(str(w.message) for w in caught):
                print(f"warning: {msg}", file=sys.stderr)
            raise
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


def _cmd_trajectory(args) -> int:
    import numpy as np
    import pandas as pd

    from .laws import load
    from .schedules import SCHEDULES
    from .trajectory import MAX_TRAJECTORY_STEPS

    names = [n.strip() for n in args.schedule.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCHEDULES]
    if not names or unknown:
        raise ValueError(
            f"--schedule: unknown schedule {', '.join(unknown) or repr(args.schedule)}; "
            f"choose from {', '.join(SCHEDULES)}"
        )
    if args.points < 2:
        raise ValueError(f"--points must be at least 2, got {args.points}")
    laws = load(args.laws)
    frames = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # One recommendation for every schedule (and its extrapolation factors for the header).
        inputs = laws.trajectory_inputs(
            args.n_params, args.tokens, lr=args.lr, batch_tokens=args.batch_tokens
        )
        pred = inputs["prediction"] or laws.predict(args.n_params, args.tokens)
        for name in names:
            curve = laws.trajectory(
                args.n_params,
                args.tokens,
                schedule=name,
                warmup=args.warmup,
                points=args.points,
                max_steps=MAX_TRAJECTORY_STEPS,
                inputs=inputs,
            )
            curve.insert(0, "schedule", name)
            frames.append(curve)
    table = pd.concat(frames, ignore_index=True)
    print(
        f"law: {laws.id}; n_params {args.n_params:.4g}, tokens {args.tokens:.4g}; "
        f"peak lr {inputs['lr']:.4g} ({inputs['lr_source']}), batch {inputs['batch_tokens']:.4g} "
        f"tokens ({inputs['batch_tokens_source']})"
    )
    far = {k: v for k, v in pred.extrapolation.items() if v > 1.0}
    if far:
        print(
            "extrapolation beyond the fitted range: "
            + ", ".join(f"{k.removesuffix('_factor')} {v:.3g}x" for k, v in far.items())
        )
    for name, curve in zip(names, frames, strict=True):
        last = curve.iloc[-1]
        print(
            f"\n{name}: final loss {last['loss']:.4f} [{last['loss_low']:.4f}, "
            f"{last['loss_high']:.4f}] at step {int(last['step'])}"
        )
        rc = curve.attrs.get("residual_correction") or {}
        if rc.get("material"):
            sizes = ", ".join(f"{n:.4g}" for n in rc["n_params"])
            print(
                f"  residual map: support {rc['support']:.2f} from {rc['runs']} like fitted "
                f"run(s) at N = {sizes}; the trajectory law alone ends at "
                f"{last['loss_law_alone']:.4f}"
            )
        elif rc.get("applied"):
            print("  residual map: no fitted run is like this one; the trajectory law alone")
        if args.rows:
            idx = np.unique(np.linspace(0, len(curve) - 1, args.rows).round().astype(int))
            shown = curve.iloc[idx][["step", "tokens", "lr", "loss", "loss_low", "loss_high"]]
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"\nwrote {args.csv}")
    if args.plot:
        _plot_curves(frames, names, args, laws.id)
        print(f"wrote {args.plot}")
    messages = [str(w.message) for w in caught]
    messages += [m for f in frames for m in f.attrs.get("warnings", [])]
    for msg in dict.fromkeys(messages):
        print(f"warning: {msg}", file=sys.stderr)
    return 0


def _plot_curves(frames, names, args, law_id: str) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(
        2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for i, (name, curve) in enumerate(zip(names, frames, strict=True)):
        color = f"C{i}"
        ax.plot(curve["tokens"], curve["loss"], color=color, label=name)
        ax.fill_between(
            curve["tokens"], curve["loss_low"], curve["loss_high"], color=color, alpha=0.2
        )
        ax_lr.plot(curve["tokens"], curve["lr"], color=color)
    # The first tenth of the run (warmup, the initial drop) would flatten the rest.
    late = [c[c["step"] >= 0.1 * c["step"].max()] for c in frames]
    band = np.concatenate([c[["loss_low", "loss_high"]].to_numpy().ravel() for c in late])
    band = band[np.isfinite(band)]
    if band.size and band.max() > band.min():
        pad = 0.05 * (band.max() - band.min())
        ax.set_ylim(band.min() - pad, band.max() + pad)
    ax.set_ylabel("predicted loss (nats/token)")
    ax.set_title(f"{law_id}: N = {args.n_params:.3g}, D = {args.tokens:.3g} (95% band)")
    ax.legend()
    ax_lr.set_xlabel("tokens")
    ax_lr.set_ylabel("LR")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from ._errors import LawFileError, UnsupportedQuery

    try:
        args = _parser().parse_args(argv)
        if args.command == "fit":
            return _cmd_fit(args)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "trajectory":
            return _cmd_trajectory(args)
        from .presets import list_presets

        print("\n".join(list_presets()))
        return 0
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (LawFileError, UnsupportedQuery, ValueError, OSError) as exc:
        # OSError: a file that cannot be read or written (a missing folder for --csv).
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; ask for a shorter run or fewer points", file=sys.stderr)
        return 2
