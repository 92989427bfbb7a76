"""The coordinate check: activation sizes stay flat across width under muP, not under SP."""

from __future__ import annotations

import pytest
import torch

from sweeps import coordcheck
from sweeps.data import load_corpus


@pytest.fixture(scope="module")
def sizes():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and robust to a busy machine
    try:
        return coordcheck.run(
            widths=(32, 64, 128), steps=4, lr=0.01, seeds=1, head_dim=16, base_width=32,
            batch_size=8, seq_len=32, corpus=load_corpus(),
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous)


def test_coordcheck_passes_for_mup_and_fails_for_sp(sizes):
    verdict = coordcheck.check(sizes)
    assert verdict["mup"]["passed"], verdict["mup"]
    assert not verdict["sp"]["passed"], verdict["sp"]
    # SP's activations grow with width: a clear margin, not a borderline failure.
    assert verdict["sp"]["max_abs_slope"] > 2 * coordcheck.DEFAULT_TOLERANCE


def test_coordcheck_table_has_every_width_step_and_layer(sizes):
    assert list(sizes.columns) == ["parametrization", "width", "step", "layer", "size"]
    assert set(sizes["width"]) == {32, 64, 128}
    assert set(sizes["step"]) == {0, 1, 2, 3}
    per_cell = sizes.groupby(["parametrization", "width", "step"]).size()
    assert (per_cell == 8).all()  # embedding, 2 x (attn, mlp, block), logits


def test_coordcheck_writes_table_figure_and_verdict(sizes, tmp_path):
    text = coordcheck.write(sizes, tmp_path)
    assert (tmp_path / "coordcheck.csv").stat().st_size > 0
    assert (tmp_path / "coordcheck.png").read_bytes()[:4] == b"\x89PNG"
    assert "| mup | True |" in text and "| sp | False |" in text
