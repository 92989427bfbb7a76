"""Learning-rate schedules: the one function that gives the LR at every optimizer step.

The trainer uses it to set the LR, the runs table records its settings, and the trajectory
law rebuilds every run's per-step LR from those settings (contract 1), so all three agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["SCHEDULES", "ScheduleSpec", "lr_at", "lr_schedule"]

SCHEDULES = ("constant", "cosine", "wsd", "linear", "step")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule by name and settings; `lrs(peak_lr, steps)` gives the LR of every step.

    - warmup_steps: linear warmup from peak_lr/warmup_steps to peak_lr (absolute step count),
      or warmup_frac of the run when warmup_steps is None.
    - final_lr_frac: the LR the decay ends at, as a fraction of the peak (cosine, wsd, linear).
    - decay_frac: the share of the run spent in the final cooldown (wsd only).
    - milestones / gamma: the LR is multiplied by gamma at each milestone, given as fractions of
      the run (step only).
    """

    name: str = "cosine"
    warmup_steps: int | None = None
    warmup_frac: float = 0.02
    final_lr_frac: float = 0.1
    decay_frac: float = 0.2
    milestones: tuple[float, ...] = (0.6, 0.85)
    gamma: float = 0.316
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.warmup_steps is not None and (
            not isinstance(self.warmup_steps, (int, np.integer)) or self.warmup_steps < 0
        ):
            raise ValueError(
                f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}"
            )
        if not (0.0 <= self.warmup_frac < 1.0):
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        if not (0.0 <= self.final_lr_frac <= 1.0):
            raise ValueError(f"final_lr_frac must be in [0, 1], got {self.final_lr_frac!r}")
        if not (0.0 < self.decay_frac <= 1.0):
            raise ValueError(f"decay_frac must be in (0, 1], got {self.decay_frac!r}")
        if not (0.0 < self.gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if any(not (0.0 < m < 1.0) for m in self.milestones):
            raise ValueError(f"milestones must be fractions in (0, 1), got {self.milestones!r}")

    def n_warmup(self, steps: int) -> int:
        if self.warmup_steps is not None:
            return min(int(self.warmup_steps), steps)
        return min(int(round(self.warmup_frac * steps)), steps)

    def lrs(self, peak_lr: float, steps: int) -> np.ndarray:
        return lr_schedule(self, peak_lr, steps)

    def lr_at(self, peak_lr: float, steps: int, s: Any) -> np.ndarray:
        return lr_at(self, peak_lr, steps, s)

    def breaks(self, steps: int) -> list[int]:
        """The steps (0-based) where a run of `steps` steps starts a new piece of its formula:
        the end of warmup, the WSD cooldown, and each of a step schedule's drops. Between two
        breaks the LR is smooth."""
        n_warm = self.n_warmup(steps)
        span = max(steps - n_warm - 1, 1)
        fracs = {"wsd": [1.0 - self.decay_frac], "step": list(self.milestones)}
        out = {n_warm}
        for m in fracs.get(self.name, []):
            # the first step whose progress (computed as lr_at computes it) reaches m
            s = math.ceil(n_warm + m * span)
            while s > n_warm and (s - 1 - n_warm) / span >= m:
                s -= 1
            while (s - n_warm) / span < m:
                s += 1
            out.add(s)
        return sorted(b for b in out if 0 < b < steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScheduleSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown schedule setting(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ScheduleSpec:
        return cls.from_dict(json.loads(text))


def lr_schedule(spec: ScheduleSpec | str, peak_lr: float, steps: int) -> np.ndarray:
    """The LR at optimizer steps 0..steps-1 (float64 array of length `steps`)."""
    return lr_at(spec, peak_lr, steps, np.arange(steps, dtype=np.float64))


def lr_at(spec: ScheduleSpec | str, peak_lr: float, steps: int, s: Any) -> np.ndarray:
    """The LR of a run of `steps` optimizer steps at step indices `s` (0-based; fractional
    indices read the same formula between steps), without the run's whole array: the
    trajectory law samples runs of billions of steps this way."""
    if isinstance(spec, str):
        spec = ScheduleSpec(name=spec)
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (math.isfinite(peak_lr) and peak_lr > 0):
        raise ValueError(f"peak_lr must be a positive finite number, got {peak_lr!r}")
    s = np.asarray(s, dtype=np.float64)
    n_warm = spec.n_warmup(steps)
    floor = spec.final_lr_frac
    # Progress through the post-warmup part of the run, 0 at its first step, 1 at the last.
    span = max(steps - n_warm - 1, 1)
    t = np.clip((s - n_warm) / span, 0.0, 1.0)
    if spec.name == "constant":
        factor = np.ones_like(s)
    elif spec.name == "cosine":
        factor = floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * t))
    elif spec.name == "linear":
        factor = 1.0 - (1.0 - floor) * t
    elif spec.name == "wsd":
        start = 1.0 - spec.decay_frac
        u = np.clip((t - start) / spec.decay_frac, 0.0, 1.0)
        factor = 1.0 - (1.0 - floor) * u
    else:  # step
        factor = np.ones_like(s)
        for m in spec.milestones:
            factor = np.where(t >= m, factor * spec.gamma, factor)
    if n_warm > 0:
        warm = (s + 1.0) / n_warm
        factor = np.where(s < n_warm, warm, factor)
    return peak_lr * factor
