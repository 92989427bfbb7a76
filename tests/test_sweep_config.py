"""Sweep configs: the shipped ones load, their cells are what they say, and every unknown key
or bad value is a ValueError naming it and the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.schedules import ScheduleSpec
from sweeps.config import CONFIG_DIR, format_tokens, load_config

REPO = Path(__file__).resolve().parents[1]


def _refusal(path: Path) -> str:
    """The message load_config refuses the config at `path` with."""
    with pytest.raises(ValueError) as info:
        load_config(path)
    return str(info.value)


MINIMAL = """
[model]
widths = [32, 64]
head_dim = 16
base_width = 32

[budget]
tokens = [1e5, 4e5]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
def test_shipped_configs_load(name):
    cfg = load_config(name)
    cells = cfg.cells()
    assert cfg.name == name
    assert len({c.name for c in cells}) == len(cells)
    assert cfg.n_planned() == sum(c.n_trials for c in cells)
    for cell in cells:
        if cell.is_variant:
            assert cell.base in {c.name for c in cells if not c.is_variant}


def test_quick_has_three_sizes_and_schedule_variants():
    cfg = load_config("quick")
    search = [c for c in cfg.cells() if not c.is_variant]
    variants = [c for c in cfg.cells() if c.is_variant]
    assert len({c.width for c in search}) >= 3
    assert len({c.tokens for c in search}) >= 2
    assert len({c.schedule.name for c in variants} | {cfg.schedule.name}) >= 3


def test_minimal_config_defaults_and_cells(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.name == "sweep"
    assert cfg.sampler.name == "tpe" and cfg.pruner.name == "none"
    assert [c.name for c in cfg.cells()] == [
        "w32-d2-t1e5",
        "w32-d2-t4e5",
        "w64-d2-t1e5",
        "w64-d2-t4e5",
    ]
    assert all(c.n_trials == cfg.trials_per_cell for c in cfg.cells())
    assert cfg.default_storage_url() == "sqlite:///results/sweep/storage.db"


def test_tokens_per_param_scales_with_size(tmp_path):
    from sweeps.model import count_params

    text = MINIMAL.replace("tokens = [1e5, 4e5]", "tokens_per_param = [10, 20]")
    cfg = load_config(write(tmp_path, text))
    for cell in cfg.cells():
        n_params, _ = count_params(cfg.model_config(cell.width, cell.depth))
        assert cell.tokens in (round(10 * n_params), round(20 * n_params))


def test_variants_and_grid(tmp_path):
    text = (
        'sampler = "grid"\n'
        + MINIMAL.replace(
            "[budget]", "[search]\ngrid_points = 3\nbatch_tokens = [1024, 2048]\n\n[budget]"
        )
        + """
[[variants]]
schedule = { name = "wsd", decay_frac = 0.3 }
widths = [64]
budgets = [4e5]
lr_factors = [0.5, 1.0, 2.0]

[[variants]]
schedule = "constant"
lr = 0.01
batch_tokens = 1024
"""
    )
    cfg = load_config(write(tmp_path, text))
    cells = cfg.cells()
    assert all(c.n_trials == 6 for c in cells if not c.is_variant)  # 3 LRs x 2 batch sizes
    wsd = [c for c in cells if c.schedule.name == "wsd"]
    assert [c.name for c in wsd] == ["w64-d2-t4e5-wsd"]
    assert wsd[0].n_trials == 3 and wsd[0].base == "w64-d2-t4e5"
    assert wsd[0].schedule == ScheduleSpec(name="wsd", decay_frac=0.3)
    constant = [c for c in cells if c.schedule.name == "constant"]
    assert len(constant) == 4 and all(c.lr == 0.01 and c.batch_tokens == 1024 for c in constant)
    assert wsd[0].seeds == () and wsd[0].slot_settings(2, cfg.seed) == (2.0, cfg.seed)


def test_variant_seeds_are_replicates_of_every_lr_factor(tmp_path):
    text = (
        MINIMAL
        + """
[[variants]]
schedule = "wsd"
lr_factors = [0.5, 2.0]
seeds = [0, 3, 4]
"""
    )
    cfg = load_config(write(tmp_path, text))
    wsd = [c for c in cfg.cells() if c.schedule.name == "wsd"][0]
    assert wsd.seeds == (0, 3, 4) and wsd.n_trials == 6
    settings = [wsd.slot_settings(slot, cfg.seed) for slot in range(6)]
    assert settings == [(0.5, 0), (2.0, 0), (0.5, 3), (2.0, 3), (0.5, 4), (2.0, 4)]
    for bad, needle in (("[1, 1]", "must not repeat"), ("[-1]", "seeds[0]"), ("[]", "seeds")):
        path = write(tmp_path, text.replace("[0, 3, 4]", bad))
        with pytest.raises(ValueError, match=re.escape(needle)):
            load_config(path)


def test_grid_seeds_replicate_every_grid_point(tmp_path):
    """search.seeds: each grid point once per seed, seeds varying slowest, so the first seed's
    slots are the grid of the sweep without replicates."""
    from sweeps._worker import grid_point_key, grid_points

    grid = '[sampler]\nname = "grid"\n[search]\nbatch_tokens = [512, 1024]\ngrid_points = 3\n'
    plain = load_config(write(tmp_path, MINIMAL + grid))
    cfg = load_config(write(tmp_path, MINIMAL + grid + "seeds = [0, 5]\n"))
    assert cfg.search.seeds == (0, 5) and cfg.grid_seeds == (0, 5) and plain.grid_seeds == (0,)
    cell = cfg.cells()[0]
    assert cell.n_trials == 12 and plain.cells()[0].n_trials == 6
    points = grid_points(cfg, cell)
    assert [p["seed"] for p in points] == [0] * 6 + [5] * 6
    assert points[:6] == grid_points(plain, plain.cells()[0])
    assert [grid_point_key(p)[:2] for p in points[6:]] == [
        grid_point_key(p)[:2] for p in points[:6]
    ]
    assert len({grid_point_key(p) for p in points}) == 12
    for bad, needle in (
        ("[2, 2]", "search.seeds must not repeat a seed, got [2, 2]"),
        ("[-1]", "search.seeds[0]"),
        ("[]", "search.seeds must be a non-empty list"),
    ):
        with pytest.raises(ValueError, match=re.escape(needle)):
            load_config(write(tmp_path, MINIMAL + grid + f"seeds = {bad}\n"))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "search.seeds (replicates of grid points) "
            "needs sampler.name = 'grid', got sampler.name = 'tpe'"
        ),
    ):
        load_config(write(tmp_path, MINIMAL + "[search]\nseeds = [0, 1]\n"))
    with pytest.raises(ValueError, match="trials_per_cell=6 disagrees with the grid size 12"):
        load_config(write(tmp_path, "trials_per_cell = 6\n" + MINIMAL + grid + "seeds = [0, 5]\n"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("learning_rate = 3\n", "learning_rate"),
        ("[model]\nwidth = [1]\n", "width"),  # a typo'd key inside a table
        ("[search]\nlr = [0.1, 0.01]\n", "search.lr"),
        ("[search]\nlr = [0, 0.01]\n", "search.lr"),
        ("[search]\nbatch_tokens = [100]\n", "100"),  # not whole sequences of seq_len
        ('[sampler]\nname = "bayes"\n', "bayes"),
        ('[pruner]\nname = "asha"\n', "asha"),
        ('[schedule]\nname = "exp"\n', "exp"),
        ("[schedule]\nwarmup_frac = 1.5\n", "warmup_frac"),
        ("[schedule]\ncooldown = 0.2\n", "cooldown"),
        ("trials_per_cell = 0\n", "trials_per_cell"),
        ("trials_per_cell = 2.5\n", "trials_per_cell"),
        ('seed = "zero"\n', "seed"),
        ("[storage]\nheartbeat_interval = 60\ngrace_period = 30\n", "grace_period"),
        ("[train]\neval_every = -1\n", "train.eval_every"),
        ('[[variants]]\nschedule = "wsd"\nwidths = [128]\n', "128"),
        ('[[variants]]\nschedule = "wsd"\nbudgets = [3e5]\n', "variants[0].budgets entry 300000"),
        ("[[variants]]\nwidths = [32]\n", "schedule"),
        ('[[variants]]\nschedule = "wsd"\nlr = "worst"\n', "lr"),
    ],
)
def test_bad_key_or_value_names_it_and_the_file(tmp_path, change, named):
    # Top-level keys go before the tables; table edits replace or extend MINIMAL's.
    if change.startswith("["):
        table = change.split("]")[0] + "]"
        text = MINIMAL.replace(table, change.rstrip("\n")) if table in MINIMAL else MINIMAL + change
    else:
        text = change + MINIMAL
    path = write(tmp_path, text)
    message = _refusal(path)
    assert str(path) in message
    assert named in message


def test_widths_must_hold_whole_heads(tmp_path):
    with pytest.raises(ValueError, match=r"widths entry 40 .*head_dim=16"):
        load_config(write(tmp_path, MINIMAL.replace("[32, 64]", "[32, 40]")))


def test_budget_needs_exactly_one_kind(tmp_path):
    text = MINIMAL.replace("tokens = [1e5, 4e5]", "tokens = [1e5]\ntokens_per_param = [20]")
    with pytest.raises(ValueError, match="exactly one of"):
        load_config(write(tmp_path, text))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(write(tmp_path, "[model\nwidths = 1"))
    with pytest.raises(ValueError, match="not found.*tiny"):
        load_config("no-such-sweep")


def test_format_tokens():
    assert format_tokens(5_000_000) == "5e6"
    assert format_tokens(2_500_000) == "2.5e6"
    assert format_tokens(131072) == "1.311e5"


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        # An absolute budget below the largest searched batch (the default set is [4096]).
        ("tokens = [1e5, 4e5]", "tokens = [2048, 4e5]", "budget.tokens entry 2048"),
        # A batch range: its top end must fit in every budget too.
        ("[budget]", "[search]\nbatch_tokens_range = [1024, 8192]\n\n[budget]",
         "search.batch_tokens_range"),
        # Budgets per parameter: the smallest model's budget is what falls short.
        ("tokens = [1e5, 4e5]", "tokens_per_param = [0.01, 20]",
         "budget.tokens_per_param entry 0.01"),
    ],
)  # fmt: skip
def test_budget_below_one_batch_is_refused(tmp_path, old, new, named):
    text = MINIMAL.replace(old, new)
    if "batch_tokens_range" in new:
        text = text.replace("tokens = [1e5, 4e5]", "tokens = [4096, 4e5]")
    path = write(tmp_path, text)
    message = _refusal(path)
    assert str(path) in message and named in message and "\n" not in message
    assert "one batch" in message


def test_variant_batch_above_its_budget_is_refused(tmp_path):
    text = MINIMAL.replace("[budget]", "[search]\nbatch_tokens = [1024]\n\n[budget]")
    text = text.replace("tokens = [1e5, 4e5]", "tokens = [2048, 4e5]")
    assert load_config(write(tmp_path, text)).cells()  # 1024-token batches fit in 2048
    path = write(tmp_path, text + '\n[[variants]]\nschedule = "wsd"\nbatch_tokens = 4096\n')
    with pytest.raises(
        ValueError, match=r"budget.tokens entry 2048 .*one batch .*variants\[0\]\.batch_tokens=4096"
    ):
        load_config(path)
    # The same variant restricted to the big budget is fine.
    path = write(tmp_path, text + '\n[[variants]]\nschedule = "wsd"\nbatch_tokens = 4096\n'
                 "budgets = [4e5]\n")  # fmt: skip
    assert load_config(path).variants[0].batch_tokens == 4096


@pytest.mark.parametrize("key", ["weight_decay", "grad_clip"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5"])
def test_train_weight_decay_and_grad_clip_must_be_finite_and_not_negative(tmp_path, key, value):
    path = write(tmp_path, MINIMAL + f"\n[train]\n{key} = {value}\n")
    message = _refusal(path)
    assert f"train.{key}" in message and value.lstrip("+") in message and "\n" not in message


def test_bin_corpus_vocab_size_sizes_the_model(tmp_path):
    text = 'corpus = "data/tokens.bin"\ncorpus_vocab_size = 50257\n' + MINIMAL
    cfg = load_config(write(tmp_path, text))
    assert (cfg.corpus_vocab_size, cfg.corpus_dtype) == (50257, None)
    assert cfg.model.vocab_size == cfg.model_config(32, 2).vocab_size == 50257
    # model.vocab_size may repeat it; a per-parameter budget counts the readout at that size.
    text = text.replace(
        "corpus_vocab_size = 50257\n", 'corpus_vocab_size = 1000\ncorpus_dtype = "uint32"\n'
    )
    text = text.replace("[model]", "[model]\nvocab_size = 1000")
    text = text.replace("tokens = [1e5, 4e5]", "tokens_per_param = [20]")
    cfg = load_config(write(tmp_path, text))
    assert cfg.corpus_dtype == "uint32"
    from sweeps.model import count_params

    n_params, _ = count_params(cfg.model_config(32, 2))
    assert cfg.cells()[0].tokens == 20 * n_params
    assert load_config(write(tmp_path, MINIMAL)).corpus_vocab_size is None


@pytest.mark.parametrize(
    ("head", "named"),
    [
        ('corpus = "tokens.bin"\n', "corpus='tokens.bin' is a pre-tokenized .bin file: "
         "corpus_vocab_size is required"),
        ('corpus = "tokens.bin"\ncorpus_dtype = "uint16"\n', "corpus_vocab_size is required"),
        ('corpus = "text.txt"\ncorpus_vocab_size = 1000\n',
         "corpus_vocab_size=1000 is only for a pre-tokenized .bin corpus; corpus='text.txt'"),
        ("corpus_vocab_size = 1000\n", "corpus_vocab_size=1000 is only for a pre-tokenized .bin "
         "corpus; the default corpus"),
        ('corpus = "prepared"\ncorpus_dtype = "uint16"\n', "corpus_dtype='uint16' is only for"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = 0\n', "corpus_vocab_size must be an integer "
         ">= 2, got 0"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = "50257"\n', "corpus_vocab_size must be an "
         "integer >= 2, got '50257'"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = 1e10\n', "corpus_vocab_size must be at most "
         "2**32, got 10000000000"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = 100000\ncorpus_dtype = "uint16"\n',
         "corpus_vocab_size=100000 does not fit corpus_dtype='uint16' (ids below 65536)"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = 1000\ncorpus_dtype = "int8"\n',
         "corpus_dtype must be one of uint16, uint32, got 'int8'"),
        ('corpus = "tokens.bin"\ncorpus_vocab_size = 1000\n[model]\nvocab_size = 256\n',
         "model.vocab_size=256 disagrees with corpus_vocab_size=1000"),
    ],
)  # fmt: skip
def test_bin_corpus_keys_are_checked(tmp_path, head, named):
    if "[model]" in head:
        top, model = head.split("[model]\n")
        text = top + MINIMAL.replace("[model]", "[model]\n" + model.rstrip("\n"))
    else:
        text = head + MINIMAL
    path = write(tmp_path, text)
    message = _refusal(path)
    assert str(path) in message and named in message and "\n" not in message


def test_a_bare_toml_name_is_found_in_the_configs_folder_and_out_dir_follows_name(
    tmp_path, monkeypatch
):
    """`CONFIG=my.toml` (the README's form) finds sweeps/configs/my.toml, and the Makefile's
    output folder is the config's results_dir/name, not results/my.toml."""
    from sweeps.config import config_out_dir, resolve_config_path

    monkeypatch.chdir(tmp_path)
    assert (
        resolve_config_path("quick.toml").resolve()
        == (REPO / "sweeps" / "configs" / "quick.toml").resolve()
    )
    assert load_config("quick.toml").name == "quick"
    assert config_out_dir("quick.toml") == Path("results/quick")
    # A file in the working directory wins over a shipped one of the same name.
    (tmp_path / "quick.toml").write_text('name = "mine"\nresults_dir = "out"\n')
    assert resolve_config_path("quick.toml") == Path("quick.toml")
    assert config_out_dir("quick.toml") == Path("out/mine")
    out = subprocess.run(
        [sys.executable, "-m", "sweeps.config", "out-dir", "quick.toml"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.stdout.strip() == "out/mine"
