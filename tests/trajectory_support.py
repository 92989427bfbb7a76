"""The runs-table row of a synthetic trajectory run, shared by the trajectory tests."""

from __future__ import annotations

from scaling.schedules import ScheduleSpec

PEAK_LR, STEPS, BATCH_TOKENS = 1e-2, 500, 4096


def run_row(run_id: str, n_params: float, spec: ScheduleSpec, loss: float) -> dict:
    """One finished run of STEPS steps at PEAK_LR and BATCH_TOKENS (contract 1 columns)."""
    return {
        "run_id": run_id,
        "n_params": n_params,
        "tokens": STEPS * BATCH_TOKENS,
        "lr": PEAK_LR,
        "batch_tokens": BATCH_TOKENS,
        "loss": loss,
        "steps": STEPS,
        "schedule": spec.name,
        "schedule_json": spec.to_json(),
        "diverged": False,
        "pruned": False,
        "state": "complete",
    }
