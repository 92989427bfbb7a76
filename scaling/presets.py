"""Published laws shipped as presets: law files of kind "preset" under scaling/presets/*.json.

Each records its citation, units and the range its authors fitted on, and defines only what the
paper defines (a Prediction leaves the rest None and says so).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRESETS", "list_presets", "preset_path"]

_DIR = Path(__file__).with_name("presets")
PRESETS = ("step-law", "deepseek", "chinchilla-hoffmann", "chinchilla-epoch", "kaplan")


def list_presets() -> list[str]:
    return list(PRESETS)


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return _DIR / f"{name}.json"
