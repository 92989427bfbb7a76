"""The coordinate check: how the size of every layer's activations changes with width over
the first training steps. Under muP it stays flat across widths; under SP it grows.

The result is data (a DataFrame) and a numeric verdict: for each parametrization, the
largest |slope| of log(activation size) against log(width) over layers and steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sweeps.data import Corpus, load_corpus
from sweeps.model import ModelConfig, Transformer, build_model, make_optimizer

__all__ = ["DEFAULT_TOLERANCE", "check", "run", "slopes", "write"]

# muP passes when no layer's activation size grows or shrinks faster than width**0.25 (a 4x
# wider model would change it by at most 1.41x); SP's logits grow roughly like width**1.
DEFAULT_TOLERANCE = 0.25


def _hooked_layers(model: Transformer) -> dict[str, torch.nn.Module]:
    layers = {"embedding": model.token_embedding}
    for i, block in enumerate(model.blocks):
        layers[f"block{i}.attn"] = block.attn
        layers[f"block{i}.mlp"] = block.mlp
        layers[f"block{i}"] = block
    layers["logits"] = model.readout
    return layers


def _recorder(sizes: dict[str, float], name: str):
    def hook(_module, _inputs, output: torch.Tensor) -> None:
        sizes[name] = output.detach().abs().mean().item()

    return hook


def run(
    widths: Sequence[int] = (64, 128, 256),
    *,
    steps: int = 4,
    lr: float = 0.01,
    seeds: int = 2,
    depth: int = 2,
    head_dim: int = 32,
    batch_size: int = 16,
    seq_len: int = 64,
    parametrizations: Sequence[str] = ("mup", "sp"),
    corpus: Corpus | None = None,
    base_width: int = 64,
) -> pd.DataFrame:
    """Train each (parametrization, width, seed) for `steps` steps at a constant `lr`, and
    record the mean |activation| of every layer at every step (before that step's update).

    Returns columns parametrization, width, step, layer, size (averaged over seeds).
    """
    corpus = corpus or load_corpus()
    rows = []
    for seed in range(seeds):
        gen = np.random.default_rng(seed)
        batches = [corpus.batch("train", batch_size, seq_len, gen) for _ in range(steps)]
        for parametrization in parametrizations:
            for width in widths:
                cfg = ModelConfig(
                    width=width, depth=depth, head_dim=head_dim, seq_len=seq_len, vocab_size=corpus.vocab_size,
                    parametrization=parametrization, base_width=base_width,
                )  # fmt: skip
                torch.manual_seed(seed)
                model = build_model(cfg)
                optimizer = make_optimizer(model, lr, weight_decay=0.0)
                sizes: dict[str, float] = {}
                hooks = [
                    module.register_forward_hook(_recorder(sizes, name))
                    for name, module in _hooked_layers(model).items()
                ]
                for step, (x, y) in enumerate(batches):
                    loss = model.loss(x, y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    rows += [
                        {"parametrization": parametrization, "width": width, "step": step,
                         "layer": layer, "seed": seed, "size": size}
                        for layer, size in sizes.items()
                    ]  # fmt: skip
                for hook in hooks:
                    hook.remove()
    frame = pd.DataFrame(rows)
    keys = ["parametrization", "width", "step", "layer"]
    return frame.groupby(keys, sort=False, as_index=False)["size"].mean()


def slopes(sizes: pd.DataFrame) -> pd.DataFrame:
    """Slope of log(size) against log(width), per parametrization, layer and step.

    Layers that are exactly zero at every width (muP's logits at step 0, with the readout
    zero-initialized) are flat by definition and get slope 0.
    """
    rows = []
    for (parametrization, layer, step), group in sizes.groupby(
        ["parametrization", "layer", "step"]
    ):
        size = group["size"].to_numpy()
        if np.all(size == 0):
            slope = 0.0
        else:
            x = np.log(group["width"].to_numpy(dtype=float))
            slope = float(np.polyfit(x, np.log(np.maximum(size, 1e-30)), 1)[0])
        rows.append({"parametrization": parametrization, "layer": layer, "step": step,
                     "slope": slope})  # fmt: skip
    return pd.DataFrame(rows)


def check(sizes: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, dict]:
    """Per parametrization: {"passed", "max_abs_slope", "worst_layer", "worst_step"}."""
    verdict = {}
    for parametrization, group in slopes(sizes).groupby("parametrization"):
        worst = group.loc[group["slope"].abs().idxmax()]
        verdict[parametrization] = {
            "passed": bool(abs(worst["slope"]) <= tolerance),
            "max_abs_slope": float(abs(worst["slope"])),
            "worst_layer": str(worst["layer"]),
            "worst_step": int(worst["step"]),
            "tolerance": tolerance,
        }
    return verdict


def write(sizes: pd.DataFrame, out: str | Path, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """coordcheck.csv, coordcheck.png and coordcheck.md under `out`; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes.to_csv(out / "coordcheck.csv", index=False)
    verdict = check(sizes, tolerance)
    params = list(dict.fromkeys(sizes["parametrization"]))
    layers = list(dict.fromkeys(sizes["layer"]))
    fig, axes = plt.subplots(
        len(params), len(layers), figsize=(2.6 * len(layers), 2.6 * len(params)),
        squeeze=False, sharex=True,
    )  # fmt: skip
    for i, parametrization in enumerate(params):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            part = sizes[(sizes["parametrization"] == parametrization) & (sizes["layer"] == layer)]
            for step, curve in part.groupby("step"):
                ax.plot(curve["width"], curve["size"], marker="o", label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_title(f"{parametrization}: {layer}", fontsize=8)
            if i == len(params) - 1:
                ax.set_xlabel("width")
            if j == 0:
                ax.set_ylabel("mean |activation|")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Coordinate check: activation size by width over the first steps")
    fig.tight_layout()
    fig.savefig(out / "coordcheck.png", dpi=110)
    plt.close(fig)
    widths = sorted(sizes["width"].unique())
    lines = [
        "# Coordinate check",
        "",
        f"Widths {', '.join(map(str, widths))}; steps 0-{sizes['step'].max()}; table in "
        "coordcheck.csv, figure in coordcheck.png.",
        f"Pass: every layer's |slope| of log(size) vs log(width) <= {tolerance}.",
        "",
        "| parametrization | passed | max abs slope | worst layer | worst step |",
        "| --- | --- | --- | --- | --- |",
    ]
    for parametrization, v in verdict.items():
        lines.append(
            f"| {parametrization} | {v['passed']} | {v['max_abs_slope']:.3f} | "
            f"{v['worst_layer']} | {v['worst_step']} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "coordcheck.md").write_text(text)
    return text
