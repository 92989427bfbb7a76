"""Scaling laws and hyperparameter prediction: fit laws to proxy sweeps, load presets, predict.

`fit(runs)` -> ScalingLaws; `load(path_or_preset)`; `ScalingLaws.predict(n_params, tokens)`.
"""

from __future__ import annotations

from ._errors import LawFileError, UnsupportedQuery
from .hparam_laws import PowerLaw
from .laws import Prediction, ScalingLaws, fit, load
from .loss_law import LossLaw
from .optimum import cell_optima
from .presets import list_presets
from .runs import read_runs

__all__ = [
    "LawFileError",
    "LossLaw",
    "PowerLaw",
    "Prediction",
    "ScalingLaws",
    "TrajectoryLaw",
    "UnsupportedQuery",
    "cell_optima",
    "fit",
    "list_presets",
    "load",
    "read_runs",
]


def __getattr__(name: str):
    # The trajectory law lives in scaling/trajectory.py (written separately); import it lazily
    # so the rest of the package works without it.
    if name == "TrajectoryLaw":
        from .trajectory import TrajectoryLaw

        return TrajectoryLaw
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
