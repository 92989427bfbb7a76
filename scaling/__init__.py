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
from .trajectory import CrossSizeTrajectoryLaw, TrajectoryLaw

__all__ = [
    "CrossSizeTrajectoryLaw",
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
