from __future__ import annotations

import numpy as np
import pytest

from scaling.schedules import SCHEDULES, ScheduleSpec, lr_schedule


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_warms_up_then_stays_within_peak(name):
    spec = ScheduleSpec(name=name, warmup_steps=10, final_lr_frac=0.1)
    lrs = spec.lrs(1e-2, 200)
    assert lrs.shape == (200,)
    assert np.all(np.isfinite(lrs)) and np.all(lrs > 0)
    assert np.allclose(lrs[:10], 1e-2 * np.arange(1, 11) / 10)
    assert lrs.max() == pytest.approx(1e-2)
    assert lrs[10] == pytest.approx(1e-2)


def test_shapes_of_the_decays():
    peak, steps = 1.0, 101
    cos = lr_schedule(ScheduleSpec("cosine", warmup_steps=0, final_lr_frac=0.1), peak, steps)
    assert cos[-1] == pytest.approx(0.1)
    assert cos[50] == pytest.approx(0.55)
    assert np.all(np.diff(cos) <= 1e-12)

    lin = lr_schedule(ScheduleSpec("linear", warmup_steps=0, final_lr_frac=0.0), peak, steps)
    assert lin[-1] == pytest.approx(0.0) and lin[50] == pytest.approx(0.5)

    wsd = lr_schedule(
        ScheduleSpec("wsd", warmup_steps=0, decay_frac=0.2, final_lr_frac=0.0), peak, steps
    )
    assert np.all(wsd[:80] == 1.0)  # stable for the first 80% of the run
    assert wsd[-1] == pytest.approx(0.0) and wsd[90] == pytest.approx(0.5)

    step = lr_schedule(
        ScheduleSpec("step", warmup_steps=0, milestones=(0.5,), gamma=0.1), peak, steps
    )
    assert set(np.round(step, 12)) == {1.0, 0.1}
    assert step[49] == 1.0 and step[50] == pytest.approx(0.1)


def test_spec_round_trips_through_json():
    spec = ScheduleSpec("step", warmup_steps=5, milestones=(0.3, 0.7), gamma=0.5)
    again = ScheduleSpec.from_json(spec.to_json())
    assert again == spec
    assert np.array_equal(again.lrs(3e-3, 77), spec.lrs(3e-3, 77))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "exponential"}, "schedule"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"final_lr_frac": 2.0}, "final_lr_frac"),
        ({"decay_frac": 0.0}, "decay_frac"),
        ({"milestones": (1.5,)}, "milestones"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ScheduleSpec(**kwargs)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="steps"):
        lr_schedule("cosine", 1e-3, 0)
    with pytest.raises(ValueError, match="peak_lr"):
        lr_schedule("cosine", float("nan"), 10)
    with pytest.raises(ValueError, match="unknown schedule setting"):
        ScheduleSpec.from_dict({"name": "cosine", "warmup": 3})
