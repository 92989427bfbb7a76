"""Curves of long runs: a run of any number of steps is drawn from blocks of steps, at one cost,
and agrees with the step-by-step sum (scaling.trajectory._Blocks)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import scaling
import scaling.trajectory as trajectory
from scaling.schedules import SCHEDULES, ScheduleSpec

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "results" / "quick" / "laws.json"

SPECS = [ScheduleSpec(name=name) for name in SCHEDULES] + [
    ScheduleSpec(name=name, warmup_steps=100, final_lr_frac=0.0) for name in SCHEDULES
]


@pytest.fixture(scope="module")
def law():
    return scaling.load(QUICK)._trajectory


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.warmup_steps}")
def test_lr_at_is_the_schedule_and_breaks_split_it_into_smooth_pieces(spec):
    n = 10_000
    lrs = spec.lrs(0.01, n)
    assert np.array_equal(spec.lr_at(0.01, n, np.arange(n)), lrs)
    breaks = spec.breaks(n)
    assert spec.n_warmup(n) in breaks
    jumps = np.flatnonzero(np.abs(np.diff(lrs)) > 0.01 * 0.05) + 1  # steps that move 5%+
    after = jumps[jumps > spec.n_warmup(n)]
    if spec.name == "step":
        assert list(after) == breaks[1:] and len(after) == len(spec.milestones)
    else:
        assert after.size == 0
    if spec.name == "wsd":  # the cooldown starts at its break
        start = breaks[1]
        assert lrs[start - 1] == lrs[spec.n_warmup(n)] > lrs[start + 1]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.warmup_steps}")
@pytest.mark.parametrize("n_params", [3.3e4, 5.4e5, 1e8])
def test_a_run_drawn_from_blocks_matches_the_step_by_step_sum(law, spec, n_params, monkeypatch):
    # Blocks from 4,096 steps on, 4,096 of them: 200,000 steps are blocks of 49 (in service,
    # blocks start at 2^18 steps and number 2^16).
    monkeypatch.setattr(trajectory, "_FINE_MAX_STEPS", 2**12)
    monkeypatch.setattr(trajectory, "_BLOCKS", 4096)
    n_steps, batch, lr = 200_000, 2048, 0.01
    frame = law.trajectory(n_params, n_steps * batch, lr=lr, batch_tokens=batch, schedule=spec)
    assert frame["step"].iloc[0] == 1 and frame["step"].iloc[-1] == n_steps
    assert frame["step"].is_monotonic_increasing
    assert len(frame) == 200
    lrs = spec.lrs(lr, n_steps)
    steps = frame["step"].to_numpy()
    assert np.array_equal(frame["lr"].to_numpy(), lrs[steps - 1])
    assert np.allclose(frame["tokens"].to_numpy(), steps * batch)
    loss, lo, hi = law.predict(n_params, lrs, batch, steps=steps, return_interval=True)
    alone = law.predict(n_params, lrs, batch, steps=steps, corrected=False)
    # Constant and step schedules are exact: their LR changes fall between blocks. Smooth ones
    # differ by what merging the LR's changes into groups costs either way (measured <= 3e-4).
    tol = 1e-9 if spec.name in ("constant", "step") else 1e-3
    assert np.max(np.abs(frame["loss"].to_numpy() / loss - 1)) < tol
    assert np.max(np.abs(frame["loss_law_alone"].to_numpy() / alone - 1)) < tol
    # The interval's quantiles come from bootstrap members, some far from the point fit, and a
    # member that follows an LR drop within a few steps feels the grouping more: within 10% of
    # the interval's width (measured: at most 6.2%, at N = 5.4e5; 0 where the loss is capped).
    slack = 0.1 * (hi - lo) + 1e-12
    assert np.all(np.abs(frame["loss_low"].to_numpy() - lo) <= slack)
    assert np.all(np.abs(frame["loss_high"].to_numpy() - hi) <= slack)


def test_a_hundred_million_step_curve_needs_no_per_step_arrays(law):
    """The step-by-step sum held several arrays of every step (3 GB here); blocks hold 2^16."""
    tracemalloc.start()
    try:
        frame = law.trajectory(7e9, 1e8 * 4096, lr=0.002, batch_tokens=4096, schedule="wsd")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame["step"].iloc[-1] == 100_000_000
    assert np.isfinite(frame[["loss", "loss_low", "loss_high"]].to_numpy()).all()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"
