"""The throughput benchmark: it measures both models, keeps every measurement and judges
each one against issue 3's targets only where they apply."""

import json

from sweeps.bench import throughput, write_throughput


def _row(measured_at, plain, mup, machine="AMD EPYC, 2 cores", device="cpu"):
    return {
        "measured_at": measured_at, "machine": machine, "device": device, "dtype": "fp32",
        "threads": 2, "width": 128, "depth": 2, "seq_len": 128, "batch_tokens": 4096,
        "tokens_per_s": {"plain": plain, "mup": mup},
        "tokens_per_s_median": {"plain": plain, "mup": mup},
        "mup_overhead_pct": 100 * (plain / mup - 1), "mup_overhead_pct_median": 0.0,
        "load_average": [1.0],
    }  # fmt: skip


def test_history_is_kept_newest_first_and_each_row_is_judged(tmp_path):
    write_throughput([_row("2026-01-01T00:00:00", 37_000, 36_500)], tmp_path)
    text = write_throughput([_row("2026-01-02T00:00:00", 30_000, 29_900)], tmp_path)
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert [r["measured_at"] for r in rows] == ["2026-01-02T00:00:00", "2026-01-01T00:00:00"]
    table = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert table[0].endswith("| no |")  # 30k plain is more than 10% below 40k
    assert table[1].endswith("| yes |")


def test_overhead_over_five_percent_fails_and_other_machines_are_not_held_to_40k(tmp_path):
    text = write_throughput(
        [
            _row("2026-01-03T00:00:00", 40_000, 37_000),  # muP 8% slower
            _row("2026-01-04T00:00:00", 20_000, 19_900, machine="Xeon, 16 cores"),
        ],
        tmp_path,
        keep_history=False,
    )
    table = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert table[0].startswith("| 2026-01-04") and table[0].endswith("| yes |")
    assert table[1].endswith("| no |")


def test_the_core_count_field_decides_which_rows_are_held_to_40k(tmp_path):
    two = _row("2026-01-05T00:00:00", 20_000, 19_900, machine="Some CPU")
    two["cores"] = 2
    many = _row("2026-01-06T00:00:00", 20_000, 19_900, machine="Some CPU")
    many["cores"] = 16
    text = write_throughput([two, many], tmp_path, keep_history=False)
    table = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert table[0].startswith("| 2026-01-06") and table[0].endswith("| yes |")
    assert table[1].startswith("| 2026-01-05") and table[1].endswith("| no |")


def test_throughput_measures_both_models_on_real_batches():
    r = throughput(
        width=32, depth=1, seq_len=32, batch_tokens=256, steps=1, repeats=2, device="cpu"
    )
    assert r["device"] == "cpu" and r["dtype"] == "fp32"
    assert set(r["tokens_per_s"]) == {"plain", "mup"}
    assert all(len(v) == 2 and min(v) > 0 for v in r["tokens_per_s_all"].values())
    assert r["machine"].endswith(" cores") and r["cores"] >= 1
    # The machine's matmul speed is timed in the same run, and the plain step's share of it.
    assert r["matmul_gflops_median"] <= r["matmul_gflops"] and r["matmul_gflops"] > 0
    expected = 100 * r["tokens_per_s"]["plain"] * r["flops_per_token"] / (r["matmul_gflops"] * 1e9)
    # The result's GFLOP/s is rounded to 0.01, a large share of a tiny model's slow matmul.
    rounding = 0.005 / r["matmul_gflops"] + 0.001
    assert abs(r["plain_share_of_matmul_pct"] - expected) <= rounding * expected + 0.1


def test_rows_without_the_matmul_calibration_still_render(tmp_path):
    new = {**_row("2026-01-06T00:00:00", 30_000, 29_900), "flops_per_token": 2.6e6,
           "matmul_gflops": 100.0, "matmul_gflops_median": 90.0,
           "plain_share_of_matmul_pct": 78.0}  # fmt: skip
    text = write_throughput([new, _row("2026-01-05T00:00:00", 37_000, 36_500)], tmp_path)
    table = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert "| 100.0 | 78% |" in table[0]
    assert "| n/a | n/a |" in table[1]
