"""Train the small set of real curves behind results/trajectory-dev (CPU, ~15 min, 1 thread).

python results/trajectory-dev/make_runs.py [WIDTH ...]  ->  runs.csv, curves.csv next to this
file (e.g. runs-w16.csv, curves-w16.csv when widths are given, to train sizes in parallel; then
`make_runs.py --merge` joins every part into runs.csv and curves.csv).
Widths 16, 32, 64 (96 planned, dropped: too slow on the shared CPU). Depth 2, seq 128, batch 4096 tokens, 1.5M tokens, one LR, four schedules per width.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from scaling.schedules import ScheduleSpec
from sweeps.model import ModelConfig
from sweeps.train import TrainConfig, train

OUT = Path(__file__).resolve().parent
WIDTHS = (32, 64, 96)
SCHEDULES = ("constant", "cosine", "wsd", "step")
LR, BATCH_TOKENS, TOKENS, WARMUP = 0.01, 4096, 1_500_000, 20


def main(argv: list[str]) -> int:
    if argv == ["--merge"]:
        for table in ("runs", "curves"):
            parts = [pd.read_csv(p) for p in sorted(OUT.glob(f"{table}*.csv"))]
            merged = pd.concat(parts).drop_duplicates()
            merged.to_csv(OUT / f"{table}.csv", index=False)
        for p in OUT.glob("*-w*.csv"):
            p.unlink()
        return 0
    widths = tuple(int(w) for w in argv) or WIDTHS
    suffix = "-" + "-".join(f"w{w}" for w in widths) if argv else ""
    runs, curves = [], []
    for width in widths:
        for name in SCHEDULES:
            cfg = TrainConfig(
                # head_dim 32 (the default) where the width allows it, else 16 (width 16, 48)
                model=ModelConfig(
                    width=width, depth=2, seq_len=128, head_dim=32 if width % 32 == 0 else 16
                ),
                lr=LR,
                batch_tokens=BATCH_TOKENS,
                tokens=TOKENS,
                schedule=ScheduleSpec(name, warmup_steps=WARMUP),
                eval_every=10,
                eval_tokens=16_384,
                seed=0,
                device="cpu",
                threads=1,
            )
            started = time.time()
            result = train(cfg)
            run_id = f"w{width}-{name}"
            row = {"run_id": run_id, "sweep": "trajectory-dev", "cell": f"w{width}-d2"}
            row.update(result.to_row())
            row["pruned"] = False
            runs.append(row)
            c = result.curve.copy()
            c.insert(0, "run_id", run_id)
            curves.append(c)
            print(f"{run_id}: loss {result.loss:.4f} in {time.time() - started:.0f}s", flush=True)
            pd.DataFrame(runs).to_csv(OUT / f"runs{suffix}.csv", index=False)
            pd.concat(curves).to_csv(OUT / f"curves{suffix}.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
