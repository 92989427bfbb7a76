"""The fit report: report.md with the laws, the cell optima and the backtest, and figures/*.png.

Figures (matplotlib, Agg backend): loss-law fit and residuals, LR (and batch) landscape per cell
with the estimated optimum, LR and batch laws with their 95% bands and the cell optima, and the
trajectory law when one was fitted.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from .laws import ScalingLaws
from .loss_law import FORMS as LOSS_FORM_SPECS

__all__ = ["write_report"]


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, digits) for v in x) + "]"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _law_table(name: str, law: dict) -> list[str]:
    lines = [f"### {name}: `{law.get('expression', law['form'])}`", ""]
    lines += ["| parameter | value | 95% interval |", "| --- | --- | --- |"]
    for key, value in law.get("params", {}).items():
        if value is None:
            continue
        ci = (law.get("intervals") or {}).get(key)
        fixed = ci is None and key in LOSS_FORM_SPECS.get(law["form"], {}).get("fixed", {})
        lines.append(f"| {key} | {_fmt(value)} | {'fixed' if fixed else _fmt(ci)} |")
    sel = law.get("selection")
    if sel:
        errs = ", ".join(
            f"`{form}` {100 * v:.2f}%" for form, v in sel.get("loo_rmse_log", {}).items()
        )
        lines += [
            "",
            f"Form chosen by leave-one-out error (rms of log loss over the points, each predicted "
            f"by a fit without it): {errs}.",
        ]
    loo = law.get("loo_rmse_log")
    if loo is not None:
        lines += [
            "",
            f"Loss predictions carry a 95% interval: the bootstrap's spread widened in quadrature "
            f"by the law's leave-one-out error ({100 * loo:.2f}%, so at least "
            f"±{100 * float(ndtri(0.975)) * loo:.2f}% in log loss), what it missed on points it "
            "was not fitted on.",
        ]
    res = law.get("residuals")
    if res:
        lines += [
            "",
            f"Residuals ({res['kind']}): rmse {_fmt(res['rmse'])}, max {_fmt(res['max_abs'])}.",
        ]
    for note in law.get("notes", []):
        lines.append(f"\n> {note}")
    return lines + [""]


def _schedule_runs(runs, curves, n: float, d: float) -> list:
    """(label, ScheduleSpec, lr, batch_tokens, logged curve) of the runs at size n and d tokens
    that share the peak LR of its non-cosine schedule runs (or of its best run), one per
    schedule; [] when the tables do not have them."""
    from .schedules import ScheduleSpec

    if runs is None or curves is None or "schedule" not in runs.columns:
        return []
    sub = runs[np.isclose(runs["n_params"], n) & np.isclose(runs["tokens"], d)]
    if "state" in sub.columns:
        sub = sub[sub["state"].astype(str) == "complete"]
    if sub.empty:
        return []
    variants = sub[sub["schedule"].astype(str) != "cosine"]
    ref = variants if len(variants) else sub.nsmallest(1, "loss")
    lr = float(ref["lr"].iloc[0])
    sub = sub[np.isclose(sub["lr"], lr, rtol=0.05)].drop_duplicates("schedule")
    out = []
    for row in sub.itertuples():
        c = curves[curves["run_id"].astype(str) == str(row.run_id)].sort_values("step")
        if c.empty:
            continue
        sj = getattr(row, "schedule_json", None)
        has_json = isinstance(sj, str) and sj.strip()
        spec = ScheduleSpec.from_json(sj) if has_json else ScheduleSpec(name=str(row.schedule))
        out.append((str(row.schedule), spec, float(row.lr), float(row.batch_tokens), c))
    return out


def _figures(
    laws: ScalingLaws, runs: pd.DataFrame | None, out: Path, curves: pd.DataFrame | None = None
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    out.mkdir(parents=True, exist_ok=True)
    doc = laws.to_dict()
    made = []
    loss = doc["laws"].get("loss")
    if loss and loss.get("residuals", {}).get("points"):
        p = loss["residuals"]["points"]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        n, d, y = np.array(p["n_params"]), np.array(p["tokens"]), np.array(p["loss"])
        # One colour per budget: cells of one nominal budget differ by a few tokens (each
        # batch size rounds the budget to whole steps), so group to 3 significant digits.
        budget = np.array([float(f"{t:.3g}") for t in d])
        for tok, color in zip(np.unique(budget), plt.cm.tab10.colors * 3, strict=False):
            sel = budget == tok
            ax.scatter(n[sel], y[sel], color=color, label=f"D={tok:.3g}")
            grid = np.geomspace(n.min() / 2, n.max() * 4, 100)
            ax.plot(grid, laws.loss_law.predict(grid, np.full_like(grid, tok)), lw=1, color=color)
        ax.set(xscale="log", xlabel="n_params", ylabel="loss (cell optimum)", title="loss law")
        ax.legend(fontsize=7)
        ax2.scatter(np.array(p["predicted"]), np.array(p["residual"]))
        ax2.axhline(0, color="k", lw=0.8)
        ax2.set(xlabel="predicted loss", ylabel="log residual", title="loss-law residuals")
        fig.tight_layout()
        fig.savefig(out / "loss_law.png", dpi=110)
        plt.close(fig)
        made.append("loss_law.png")
    cells = pd.DataFrame(doc.get("cells") or [])
    if runs is not None and len(cells):
        keys = runs["cell"].astype(str) if "cell" in runs.columns else None
        k = len(cells)
        cols = min(5, k)
        rows = math.ceil(k / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
        for ax, (_, cell) in zip(axes.ravel(), cells.iterrows(), strict=False):
            if keys is not None:
                sub = runs[keys == cell["cell"]]
            else:
                sub = runs[
                    np.isclose(runs["n_params"], cell["n_params"])
                    & np.isclose(runs["tokens"], cell["tokens"])
                ]
            fin = sub[sub["finished"]]
            sc = ax.scatter(fin["lr"], fin["batch_tokens"], c=fin["loss"], cmap="viridis_r", s=18)
            div = sub[sub["diverged"]]
            ax.scatter(div["lr"], div["batch_tokens"], marker="x", color="red", s=18)
            ax.scatter([cell["lr_opt"]], [cell["batch_opt"]], marker="*", color="k", s=120)
            ax.set(
                xscale="log",
                yscale="log",
                title=str(cell["cell"]) + (" EDGE" if cell.get("edge") else ""),
            )
            ax.title.set_fontsize(8)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            fig.colorbar(sc, ax=ax)
        for ax in axes.ravel()[k:]:
            ax.axis("off")
        fig.supxlabel("lr")
        fig.supylabel("batch_tokens")
        fig.tight_layout()
        fig.savefig(out / "landscapes.png", dpi=100)
        plt.close(fig)
        made.append("landscapes.png")
    for key, law_obj, col, lo, hi in (
        ("lr", laws.lr_law, "lr_opt", "lr_low", "lr_high"),
        ("batch_tokens", laws.batch_law, "batch_opt", "batch_low", "batch_high"),
    ):
        if law_obj is None or not len(cells):
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for tok_ratio, sub in cells.groupby((cells["tokens"] / cells["n_params"]).round(1)):
            err = np.array([sub[col] - sub[lo], sub[hi] - sub[col]]).clip(min=0)
            bars = ax.errorbar(
                sub["n_params"], sub[col], yerr=err, fmt="o", label=f"D/N={tok_ratio:g}"
            )
            color = bars[0].get_color()
            grid = np.geomspace(sub["n_params"].min() / 2, sub["n_params"].max() * 10, 60)
            dgrid = grid * tok_ratio
            pred = law_obj.predict(grid, dgrid, 6 * grid * dgrid)
            ax.plot(grid, pred, lw=1, color=color)
            if law_obj.samples_ is not None:
                band = np.array(
                    [
                        law_obj.predict_interval(n, d, 6 * n * d)
                        for n, d in zip(grid, dgrid, strict=False)
                    ]
                )
                ax.fill_between(grid, band[:, 0], band[:, 1], alpha=0.15, color=color)
        ax.set(xscale="log", yscale="log", xlabel="n_params", ylabel=f"optimal {key}")
        ax.set_title(f"{key} law: {law_obj.expression} (95% band)", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{key}_law.png", dpi=110)
        plt.close(fig)
        made.append(f"{key}_law.png")
    if "trajectory" in laws.supports() and len(cells):
        try:
            n = float(cells["n_params"].max())
            d = float(cells.loc[cells["n_params"] == n, "tokens"].max())
            fig, ax = plt.subplots(figsize=(6, 4))
            observed = _schedule_runs(runs, curves, n, d)
            if observed:
                # The largest size's schedule runs (dots) and the law's curves for the same
                # schedule, LR and batch (lines): the fit quality at a glance.
                for i, (label, spec, lr, bt, c) in enumerate(observed):
                    curve = laws.trajectory(n, d, schedule=spec, lr=lr, batch_tokens=bt)
                    ax.plot(curve["tokens"], curve["loss"], color=f"C{i}", lw=1.2, label=label)
                    ax.plot(c["step"] * bt, c["loss"], "o", ms=3, color=f"C{i}", alpha=0.7)
                lr = observed[0][2]
                title = f"trajectory law (lines) vs runs (dots), N={n:.3g}, peak LR {lr:.3g}"
                # Zoom past the early transient (the first fifth of the run), where the
                # schedules differ.
                late = [c[c["step"] >= 0.2 * c["step"].max()]["loss"] for *_, c in observed]
                lo = min(float(x.min()) for x in late)
                hi = max(float(x.max()) for x in late)
                ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
            else:
                for schedule in ("cosine", "wsd", "constant"):
                    curve = laws.trajectory(n, d, schedule=schedule, points=200)
                    ax.plot(curve["tokens"], curve["loss"], label=schedule)
                title = f"trajectory law at the recommended LR, N={n:.3g}"
            ax.set(xlabel="tokens", ylabel="loss")
            ax.set_title(title, fontsize=8)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "trajectory.png", dpi=110)
            plt.close(fig)
            made.append("trajectory.png")
        except Exception as exc:  # a broken trajectory law must not sink the report
            import warnings

            warnings.warn(f"trajectory figure skipped: {exc}", RuntimeWarning, stacklevel=2)
    return made


def write_report(
    laws: ScalingLaws,
    report_dir: str | os.PathLike,
    runs: pd.DataFrame | None = None,
    curves: pd.DataFrame | str | os.PathLike | None = None,
) -> Path:
    """Write report.md and figures/ under report_dir; returns the report path.

    curves (a table or a CSV path; default report_dir/curves.csv when there is one) puts the
    logged curves of the largest size's schedule runs beside the trajectory law's."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    if curves is None and (report_dir / "curves.csv").is_file():
        curves = report_dir / "curves.csv"
    if curves is not None and not isinstance(curves, pd.DataFrame):
        try:
            curves = pd.read_csv(curves)
        except (OSError, ValueError):
            curves = None
    figures = _figures(laws, runs, report_dir / "figures", curves)
    doc = laws.to_dict()
    src = doc.get("source", {})
    lines = [
        f"# Scaling-law fit: {doc['id']}",
        "",
        f"Fitted from {src.get('rows')} runs ({src.get('n_finished')} finished, "
        f"{src.get('n_diverged')} diverged, {src.get('n_pruned')} pruned) in "
        f"{src.get('n_cells')} cells; runs table sha256 `{str(src.get('sha256'))[:16]}…`.",
        f"Parametrization: {doc['parametrization']['kind']}"
        + (
            f" (base width {doc['parametrization']['base_width']:g})"
            if doc["parametrization"].get("base_width")
            else ""
        )
        + f". Bootstrap: {doc.get('fit_settings', {}).get('bootstrap')} resamples, 95% intervals.",
        "",
        "## Laws",
        "",
    ]
    for name, law in doc["laws"].items():
        lines += _law_table(name, law)
    cells = pd.DataFrame(doc.get("cells") or [])
    if len(cells):
        lines += [
            "## Cell optima",
            "",
            "| cell | n_params | tokens | lr_opt [95%] | batch_opt [95%] | loss_opt | runs | diverged | pruned | edge | method |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for _, c in cells.iterrows():
            edges = [
                k.removeprefix("edge_")
                for k in ("edge_lr_low", "edge_lr_high", "edge_batch_low", "edge_batch_high")
                if c.get(k)
            ]
            lines.append(
                f"| {c['cell']} | {_fmt(c['n_params'])} | {_fmt(c['tokens'])} | "
                f"{_fmt(c['lr_opt'])} [{_fmt(c['lr_low'], 3)}, {_fmt(c['lr_high'], 3)}] | "
                f"{_fmt(c['batch_opt'])} [{_fmt(c['batch_low'], 3)}, {_fmt(c['batch_high'], 3)}] | "
                f"{_fmt(c['loss_opt'])} | {c['n_runs']} | {c['n_diverged']} | {c['n_pruned']} | "
                f"{', '.join(edges) or '-'} | {c['method']} |"
            )
        lines.append("")
    bt = doc.get("backtest") or {}
    lines += ["## Backtest (largest n_params held out)", ""]
    if "skipped" in bt:
        lines.append(f"Skipped: {bt['skipped']}")
    else:
        lines += [
            f"Held out n_params = {_fmt(bt.get('held_out_n_params'))}: mean |loss error| "
            f"{_fmt(bt.get('mean_abs_loss_error_pct'), 3)}% (max {_fmt(bt.get('max_abs_loss_error_pct'), 3)}%), "
            f"lr ratio predicted/observed geomean {_fmt(bt.get('geomean_lr_ratio'), 3)} "
            f"(worst {_fmt(bt.get('worst_lr_ratio'), 3)}), batch ratio geomean "
            f"{_fmt(bt.get('geomean_batch_ratio'), 3)} (worst {_fmt(bt.get('worst_batch_ratio'), 3)}).",
            "",
            "| cell | loss | predicted | error % | lr ratio | batch ratio |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in bt.get("cells", []):
            lines.append(
                f"| {r['cell']} | {_fmt(r.get('loss'))} | {_fmt(r.get('loss_pred'))} | "
                f"{_fmt(r.get('loss_error_pct'), 3)} | {_fmt(r.get('lr_ratio'), 3)} | "
                f"{_fmt(r.get('batch_ratio'), 3)} |"
            )
    lines.append("")
    if doc.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
