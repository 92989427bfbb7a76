"""Sweep configs: TOML files in sweeps/configs/, validated on load into dataclasses.

A config names a model family, token budgets, a search space and the search settings; its
`cells()` are the (N, D) cells, one Optuna study each, plus the schedule-variant cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from scaling.schedules import SCHEDULES, ScheduleSpec

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CONFIG_DIR",
    "PRUNERS",
    "SAMPLERS",
    "TOKEN_DTYPES",
    "BudgetConfig",
    "Cell",
    "ModelFamily",
    "PrunerConfig",
    "SamplerConfig",
    "SearchSpace",
    "StorageConfig",
    "SweepConfig",
    "TrainSettings",
    "VariantConfig",
    "format_tokens",
    "load_config",
    "resolve_config_path",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SAMPLERS = ("tpe", "grid", "cmaes", "random")
PRUNERS = ("none", "median", "successive-halving", "hyperband")
# Token dtypes of a pre-tokenized .bin corpus and how many ids each holds (sweeps.data reads
# them; not imported from there, which would import torch to read a config).
TOKEN_DTYPES = {"uint16": 1 << 16, "uint32": 1 << 32}


class _Invalid(ValueError):
    """A bad key or value at a dotted path; load_config adds the file name."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _pos_int(where: str, v: Any, *, minimum: int = 1) -> int:
    # TOML writes big counts as 1e6 (a float); accept those when they are whole numbers.
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if not _is_int(v) or v < minimum:
        raise _Invalid(f"{where} must be an integer >= {minimum}, got {v!r}")
    return v


def _pos_float(where: str, v: Any) -> float:
    if not _is_num(v) or v <= 0:
        raise _Invalid(f"{where} must be a positive number, got {v!r}")
    return float(v)


def _frac(where: str, v: Any, lo: float = 0.0, hi: float = 1.0) -> float:
    if not _is_num(v) or not (lo <= v <= hi):
        raise _Invalid(f"{where} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _choice(where: str, v: Any, options: tuple[str, ...]) -> str:
    if v not in options:
        raise _Invalid(f"{where} must be one of {', '.join(options)}, got {v!r}")
    return v


def _list(where: str, v: Any, item, *, nonempty: bool = True) -> tuple:
    if not isinstance(v, list) or (nonempty and not v):
        raise _Invalid(f"{where} must be a non-empty list, got {v!r}")
    return tuple(item(f"{where}[{i}]", x) for i, x in enumerate(v))


def _table(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Invalid(f"{where} must be a table, got {v!r}")
    return v


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise _Invalid(
            f"unknown key {prefix}{unknown[0]!r}; allowed keys here: {', '.join(sorted(allowed))}"
        )


def format_tokens(tokens: float) -> str:
    """Compact token count for cell names: 5000000 -> '5e6', 2500000 -> '2.5e6'."""
    mantissa, exponent = f"{float(tokens):.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class ModelFamily:
    widths: tuple[int, ...] = (64, 128)
    depths: tuple[int, ...] = (2,)
    head_dim: int = 32
    seq_len: int = 128
    vocab_size: int = 256
    mlp_ratio: int = 4
    base_width: int = 64
    parametrization: str = "mup"

    @classmethod
    def parse(cls, t: dict[str, Any]) -> ModelFamily:
        _check_keys("model", t, {f.name for f in fields(cls)})
        kw: dict[str, Any] = {}
        if "widths" in t:
            kw["widths"] = _list("model.widths", t["widths"], _pos_int)
        if "depths" in t:
            kw["depths"] = _list("model.depths", t["depths"], _pos_int)
        for name in ("head_dim", "seq_len", "vocab_size", "mlp_ratio", "base_width"):
            if name in t:
                kw[name] = _pos_int(f"model.{name}", t[name])
        if "parametrization" in t:
            kw["parametrization"] = _choice(
                "model.parametrization", t["parametrization"], ("mup", "sp")
            )
        family = cls(**kw)
        for w in family.widths:
            if w % family.head_dim:
                raise _Invalid(
                    f"model.widths entry {w} is not a multiple of model.head_dim={family.head_dim}"
                )
        if family.parametrization == "mup" and family.base_width % family.head_dim:
            raise _Invalid(
                f"model.base_width={family.base_width} is not a multiple of "
                f"model.head_dim={family.head_dim}"
            )
        return family


@dataclass(frozen=True)
class BudgetConfig:
    """Token budgets: absolute `tokens`, or `tokens_per_param` times each size's n_params."""

    tokens: tuple[int, ...] = ()
    tokens_per_param: tuple[float, ...] = ()

    @property
    def values(self) -> tuple[float, ...]:
        return self.tokens or self.tokens_per_param

    @classmethod
    def parse(cls, t: dict[str, Any]) -> BudgetConfig:
        _check_keys("budget", t, {"tokens", "tokens_per_param"})
        if ("tokens" in t) == ("tokens_per_param" in t):
            raise _Invalid("budget needs exactly one of budget.tokens or budget.tokens_per_param")
        if "tokens" in t:
            return cls(tokens=_list("budget.tokens", t["tokens"], _pos_int))
        return cls(
            tokens_per_param=_list("budget.tokens_per_param", t["tokens_per_param"], _pos_float)
        )


@dataclass(frozen=True)
class SearchSpace:
    """Log-uniform peak LR; batch tokens as a set or a log-uniform range (whole sequences)."""

    lr: tuple[float, float] = (1e-3, 3e-2)
    batch_tokens: tuple[int, ...] = (4096,)
    batch_tokens_range: tuple[int, int] | None = None
    grid_points: int = 5  # LR values per batch size for the grid sampler
    # Grid replicates: every grid point run once per seed; empty: the sweep's seed alone. With
    # one seed, every run of a width shares its initialization (and, per batch size, its data
    # order), so that width's luck moves all its runs together: at 2-4x the best LR, seeds
    # differ by 2-4% over whole curves (results/reference/README.md, session 20), and a law
    # fitted across sizes reads each width's luck as a size effect. Seeds vary slowest: the
    # first seed's runs are the grid of a sweep without replicates (give the sweep's `seed`
    # first and an existing sweep is extended, keeping its runs).
    seeds: tuple[int, ...] = ()

    @classmethod
    def parse(cls, t: dict[str, Any], seq_len: int) -> SearchSpace:
        _check_keys(
            "search", t, {"lr", "batch_tokens", "batch_tokens_range", "grid_points", "seeds"}
        )
        kw: dict[str, Any] = {}
        if "lr" in t:
            lr = _list("search.lr", t["lr"], _pos_float)
            if len(lr) != 2 or not lr[0] < lr[1]:
                raise _Invalid(f"search.lr must be [low, high] with low < high, got {t['lr']!r}")
            kw["lr"] = lr
        if "batch_tokens" in t and "batch_tokens_range" in t:
            raise _Invalid(
                "give search.batch_tokens (a set) or search.batch_tokens_range, not both"
            )
        if "batch_tokens" in t:
            kw["batch_tokens"] = _list("search.batch_tokens", t["batch_tokens"], _pos_int)
        if "batch_tokens_range" in t:
            rng = _list("search.batch_tokens_range", t["batch_tokens_range"], _pos_int)
            if len(rng) != 2 or not rng[0] < rng[1]:
                raise _Invalid(
                    "search.batch_tokens_range must be [low, high] with low < high, "
                    f"got {t['batch_tokens_range']!r}"
                )
            kw["batch_tokens_range"] = rng
            kw["batch_tokens"] = ()
        if "grid_points" in t:
            kw["grid_points"] = _pos_int("search.grid_points", t["grid_points"])
        if "seeds" in t:
            kw["seeds"] = _seed_list("search.seeds", t["seeds"])
        space = cls(**kw)
        for b in space.batch_tokens + (space.batch_tokens_range or ()):
            if b % seq_len:
                raise _Invalid(f"batch tokens {b} is not a multiple of model.seq_len={seq_len}")
        return space


def _seed_list(where: str, v: Any) -> tuple[int, ...]:
    seeds = _list(where, v, lambda w, x: _pos_int(w, x, minimum=0))
    if len(set(seeds)) < len(seeds):
        raise _Invalid(f"{where} must not repeat a seed, got {v!r}")
    return seeds


def _parse_schedule(where: str, v: Any) -> ScheduleSpec:
    if isinstance(v, str):
        v = {"name": v}
    t = dict(_table(where, v))
    allowed = {f.name for f in fields(ScheduleSpec)} - {"extra"}
    _check_keys(where, t, allowed)
    if "name" in t:
        _choice(f"{where}.name", t["name"], SCHEDULES)
    if "warmup_steps" in t:
        t["warmup_steps"] = _pos_int(f"{where}.warmup_steps", t["warmup_steps"], minimum=0)
    if "milestones" in t:
        t["milestones"] = _list(f"{where}.milestones", t["milestones"], _pos_float)
    for key in ("warmup_frac", "final_lr_frac", "decay_frac", "gamma"):
        if key in t and not _is_num(t[key]):
            raise _Invalid(f"{where}.{key} must be a number, got {t[key]!r}")
    try:
        return ScheduleSpec.from_dict(t)
    except ValueError as exc:
        raise _Invalid(f"{where}: {exc}") from None


@dataclass(frozen=True)
class TrainSettings:
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50  # optimizer steps between validation evaluations
    eval_tokens: int = 65536
    log_every: int = 10
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16

    @classmethod
    def parse(cls, t: dict[str, Any]) -> TrainSettings:
        _check_keys("train", t, {f.name for f in fields(cls)})
        kw: dict[str, Any] = {}
        if "weight_decay" in t:
            kw["weight_decay"] = _frac("train.weight_decay", t["weight_decay"], 0.0, 10.0)
        if "grad_clip" in t:
            kw["grad_clip"] = _frac("train.grad_clip", t["grad_clip"], 0.0, 1e6)
        for key in ("eval_every", "eval_tokens", "log_every"):
            if key in t:
                kw[key] = _pos_int(f"train.{key}", t[key])
        if "device" in t:
            if not isinstance(t["device"], str) or not t["device"]:
                raise _Invalid(f"train.device must be a device string, got {t['device']!r}")
            kw["device"] = t["device"]
        if "precision" in t:
            from sweeps.train import PRECISIONS

            if t["precision"] not in PRECISIONS:
                raise _Invalid(
                    f"train.precision must be one of {PRECISIONS}, got {t['precision']!r}"
                )
            kw["precision"] = t["precision"]
        return cls(**kw)


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"
    n_startup_trials: int = 5  # tpe: random trials before the model kicks in

    @classmethod
    def parse(cls, v: Any) -> SamplerConfig:
        t = {"name": v} if isinstance(v, str) else _table("sampler", v)
        _check_keys("sampler", t, {"name", "n_startup_trials"})
        kw: dict[str, Any] = {}
        if "name" in t:
            kw["name"] = _choice("sampler.name", t["name"], SAMPLERS)
        if "n_startup_trials" in t:
            kw["n_startup_trials"] = _pos_int(
                "sampler.n_startup_trials", t["n_startup_trials"], minimum=0
            )
        return cls(**kw)


@dataclass(frozen=True)
class PrunerConfig:
    name: str = "none"
    n_startup_trials: int = 3  # median: finished trials before pruning starts
    n_warmup_steps: int = 0  # median: steps before a trial can be pruned
    min_resource: int | str = "auto"  # successive-halving / hyperband, in optimizer steps
    reduction_factor: int = 3

    @classmethod
    def parse(cls, v: Any) -> PrunerConfig:
        t = {"name": v} if isinstance(v, str) else _table("pruner", v)
        _check_keys("pruner", t, {f.name for f in fields(cls)})
        kw: dict[str, Any] = {}
        if "name" in t:
            kw["name"] = _choice("pruner.name", t["name"], PRUNERS)
        for key in ("n_startup_trials", "n_warmup_steps"):
            if key in t:
                kw[key] = _pos_int(f"pruner.{key}", t[key], minimum=0)
        if "min_resource" in t:
            if t["min_resource"] != "auto":
                kw["min_resource"] = _pos_int("pruner.min_resource", t["min_resource"])
        if "reduction_factor" in t:
            kw["reduction_factor"] = _pos_int(
                "pruner.reduction_factor", t["reduction_factor"], minimum=2
            )
        return cls(**kw)


@dataclass(frozen=True)
class StorageConfig:
    url: str = ""  # empty: sqlite:///results/<sweep>/storage.db
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a RUNNING trial silent this long is failed and retried
    max_retry: int = 3  # re-runs of a killed worker's trial (same parameters)
    poll_seconds: float = 5.0  # idle workers re-check for work this often

    @classmethod
    def parse(cls, v: Any) -> StorageConfig:
        t = {"url": v} if isinstance(v, str) else _table("storage", v)
        _check_keys("storage", t, {f.name for f in fields(cls)})
        kw: dict[str, Any] = {}
        if "url" in t:
            if not isinstance(t["url"], str):
                raise _Invalid(f"storage.url must be a string, got {t['url']!r}")
            kw["url"] = t["url"]
        for key in ("heartbeat_interval", "grace_period"):
            if key in t:
                kw[key] = _pos_int(f"storage.{key}", t[key])
        if "max_retry" in t:
            kw["max_retry"] = _pos_int("storage.max_retry", t["max_retry"], minimum=0)
        if "poll_seconds" in t:
            kw["poll_seconds"] = _pos_float("storage.poll_seconds", t["poll_seconds"])
        cfg = cls(**kw)
        if cfg.grace_period <= cfg.heartbeat_interval:
            raise _Invalid(
                f"storage.grace_period={cfg.grace_period} must exceed "
                f"storage.heartbeat_interval={cfg.heartbeat_interval}"
            )
        return cfg


@dataclass(frozen=True)
class VariantConfig:
    """Extra runs with another schedule at some sizes and budgets (annealing data)."""

    schedule: ScheduleSpec
    widths: tuple[int, ...] = ()  # empty: every width of the family
    depths: tuple[int, ...] = ()
    budgets: tuple[float, ...] = ()  # values from [budget]; empty: every budget
    lr: float | str = "best"  # "best": the best LR found in the matching search cell
    lr_factors: tuple[float, ...] = (1.0,)  # one run per factor, at lr * factor
    batch_tokens: int | str = "best"
    # Replicates: one run per seed (for each LR factor); empty: the sweep's seed alone. The
    # runs of one schedule differ between seeds by up to a few tenths of a percent
    # (results/reference/README.md), about what a held-out-schedule test aims at; averaged over
    # seeds, that scatter shrinks.
    seeds: tuple[int, ...] = ()

    @classmethod
    def parse(cls, where: str, t: Any, family: ModelFamily, budget: BudgetConfig) -> VariantConfig:
        t = _table(where, t)
        _check_keys(where, t, {f.name for f in fields(cls)})
        if "schedule" not in t:
            raise _Invalid(f"{where}.schedule is required")
        kw: dict[str, Any] = {"schedule": _parse_schedule(f"{where}.schedule", t["schedule"])}
        if "widths" in t:
            kw["widths"] = _list(f"{where}.widths", t["widths"], _pos_int)
            for w in kw["widths"]:
                if w not in family.widths:
                    raise _Invalid(f"{where}.widths entry {w} is not in model.widths")
        if "depths" in t:
            kw["depths"] = _list(f"{where}.depths", t["depths"], _pos_int)
            for d in kw["depths"]:
                if d not in family.depths:
                    raise _Invalid(f"{where}.depths entry {d} is not in model.depths")
        if "budgets" in t:
            kw["budgets"] = _list(f"{where}.budgets", t["budgets"], _pos_float)
            for b in kw["budgets"]:
                if not any(math.isclose(b, v) for v in budget.values):
                    raise _Invalid(f"{where}.budgets entry {b:g} is not one of the [budget] values")
        if "lr" in t:
            kw["lr"] = "best" if t["lr"] == "best" else _pos_float(f"{where}.lr", t["lr"])
        if "lr_factors" in t:
            kw["lr_factors"] = _list(f"{where}.lr_factors", t["lr_factors"], _pos_float)
        if "batch_tokens" in t:
            b = t["batch_tokens"]
            kw["batch_tokens"] = "best" if b == "best" else _pos_int(f"{where}.batch_tokens", b)
            if kw["batch_tokens"] != "best" and kw["batch_tokens"] % family.seq_len:
                raise _Invalid(f"{where}.batch_tokens={b} is not a multiple of model.seq_len")
        if "seeds" in t:
            kw["seeds"] = _seed_list(f"{where}.seeds", t["seeds"])
        return cls(**kw)


@dataclass(frozen=True)
class Cell:
    """One Optuna study: a model shape, a token budget, a schedule, and how many trials."""

    name: str
    width: int
    depth: int
    tokens: int
    schedule: ScheduleSpec
    n_trials: int
    base: str | None = None  # variants: the search cell whose best LR/batch they reuse
    lr: float | str | None = None  # variants: fixed LR or "best"
    lr_factors: tuple[float, ...] = ()
    batch_tokens: int | str | None = None
    seeds: tuple[int, ...] = ()  # variants: one run per seed and LR factor; empty: the sweep's

    @property
    def is_variant(self) -> bool:
        return self.base is not None

    def slot_settings(self, slot: int, sweep_seed: int) -> tuple[float, int]:
        """A variant trial's (LR factor, seed) from its slot: the factors vary fastest."""
        n = len(self.lr_factors)
        seeds = self.seeds or (sweep_seed,)
        return self.lr_factors[slot % n], seeds[min(slot // n, len(seeds) - 1)]


@dataclass(frozen=True)
class SweepConfig:
    name: str
    path: Path
    model: ModelFamily
    budget: BudgetConfig
    search: SearchSpace = field(default_factory=SearchSpace)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    train: TrainSettings = field(default_factory=TrainSettings)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    variants: tuple[VariantConfig, ...] = ()
    trials_per_cell: int = 8
    seed: int = 0
    corpus: str | None = None
    # A pre-tokenized .bin corpus: its vocabulary size (the model's embedding and readout,
    # model.vocab_size follows it) and token dtype (default: uint16 up to 65536 ids).
    corpus_vocab_size: int | None = None
    corpus_dtype: str | None = None
    results_dir: str = "results"

    @property
    def out_dir(self) -> Path:
        return Path(self.results_dir) / self.name

    def default_storage_url(self) -> str:
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{self.out_dir / 'storage.db'}"

    def model_config(self, width: int, depth: int):
        from sweeps.model import ModelConfig

        m = self.model
        return ModelConfig(
            width=width,
            depth=depth,
            head_dim=m.head_dim,
            seq_len=m.seq_len,
            vocab_size=m.vocab_size,
            mlp_ratio=m.mlp_ratio,
            parametrization=m.parametrization,
            base_width=m.base_width,
        )

    def _tokens_for(self, width: int, depth: int, value: float) -> int:
        if self.budget.tokens:
            return int(value)
        from sweeps.model import count_params

        n_params, _ = count_params(self.model_config(width, depth))
        return int(round(value * n_params))

    def search_trials(self) -> int:
        if self.sampler.name == "grid":
            return self.search.grid_points * len(self.search.batch_tokens) * len(self.grid_seeds)
        return self.trials_per_cell

    @property
    def grid_seeds(self) -> tuple[int, ...]:
        """The seeds each grid point is run at (search.seeds, or the sweep's seed alone)."""
        return self.search.seeds or (self.seed,)

    def cells(self) -> list[Cell]:
        """Search cells (smallest first), then variant cells."""
        out: list[Cell] = []
        search: dict[tuple[int, int, float], Cell] = {}
        for depth in self.model.depths:
            for width in self.model.widths:
                for value in self.budget.values:
                    tokens = self._tokens_for(width, depth, value)
                    name = f"w{width}-d{depth}-t{format_tokens(tokens)}"
                    cell = Cell(name, width, depth, tokens, self.schedule, self.search_trials())
                    search[(width, depth, value)] = cell
                    out.append(cell)
        seen = {c.name for c in out}
        for i, v in enumerate(self.variants):
            for depth in v.depths or self.model.depths:
                for width in v.widths or self.model.widths:
                    for value in v.budgets or self.budget.values:
                        key = next(
                            k
                            for k in search
                            if k[:2] == (width, depth) and math.isclose(k[2], value)
                        )
                        base = search[key]
                        name = f"{base.name}-{v.schedule.name}"
                        if name in seen:
                            name = f"{name}-v{i}"
                        seen.add(name)
                        out.append(
                            Cell(
                                name,
                                width,
                                depth,
                                base.tokens,
                                v.schedule,
                                len(v.lr_factors) * max(1, len(v.seeds)),
                                base=base.name,
                                lr=v.lr,
                                lr_factors=v.lr_factors,
                                batch_tokens=v.batch_tokens,
                                seeds=v.seeds,
                            )
                        )
        return out

    def n_planned(self) -> int:
        return sum(c.n_trials for c in self.cells())


_TOP_KEYS = {
    "name",
    "seed",
    "trials_per_cell",
    "corpus",
    "corpus_vocab_size",
    "corpus_dtype",
    "results_dir",
    "model",
    "budget",
    "search",
    "schedule",
    "train",
    "sampler",
    "pruner",
    "storage",
    "variants",
}


def _check_budgets_hold_a_batch(cfg: SweepConfig) -> None:
    """Every run gets at least one batch of its budget: a budget below the largest batch a cell
    can be given would otherwise train one step on more tokens than the budget says."""
    family, per_param = cfg.model, bool(cfg.budget.tokens_per_param)

    def check(batch: int, batch_name: str, depths, widths, values) -> None:
        for depth in depths:
            for width in widths:
                for value in values:
                    tokens = cfg._tokens_for(width, depth, value)
                    if tokens >= batch:
                        continue
                    entry = (
                        f"budget.tokens_per_param entry {value:g} ({tokens} tokens at width "
                        f"{width}, depth {depth})"
                        if per_param
                        else f"budget.tokens entry {tokens}"
                    )
                    raise _Invalid(f"{entry} is less than one batch ({batch_name})")

    space = cfg.search
    if space.batch_tokens_range is not None:
        largest, name = space.batch_tokens_range[1], "search.batch_tokens_range"
    else:
        largest, name = max(space.batch_tokens), "search.batch_tokens"
    check(largest, f"{name} up to {largest}", family.depths, family.widths, cfg.budget.values)
    for i, v in enumerate(cfg.variants):
        if v.batch_tokens != "best":  # "best": a batch of the search space, checked above
            check(
                v.batch_tokens,
                f"variants[{i}].batch_tokens={v.batch_tokens}",
                v.depths or family.depths,
                v.widths or family.widths,
                v.budgets or cfg.budget.values,
            )


def _parse_token_corpus(raw: dict[str, Any], family: ModelFamily) -> dict[str, Any]:
    """corpus_vocab_size and corpus_dtype: required for, and only for, a .bin corpus (a text
    corpus or a prepared folder brings its own vocabulary). The model's vocab_size follows
    corpus_vocab_size; a model.vocab_size that disagrees is an error."""
    corpus = raw.get("corpus")
    is_bin = isinstance(corpus, str) and Path(corpus).suffix == ".bin"  # as load_corpus
    kw: dict[str, Any] = {}
    if "corpus_vocab_size" in raw:
        vocab = _pos_int("corpus_vocab_size", raw["corpus_vocab_size"], minimum=2)
        if vocab > max(TOKEN_DTYPES.values()):
            raise _Invalid(f"corpus_vocab_size must be at most 2**32, got {vocab}")
        kw["corpus_vocab_size"] = vocab
    if "corpus_dtype" in raw:
        kw["corpus_dtype"] = _choice("corpus_dtype", raw["corpus_dtype"], tuple(TOKEN_DTYPES))
    if not is_bin:
        for key in ("corpus_vocab_size", "corpus_dtype"):
            if key in kw:
                what = f"corpus={corpus!r}" if corpus else "the default corpus"
                raise _Invalid(
                    f"{key}={kw[key]!r} is only for a pre-tokenized .bin corpus; {what} brings "
                    "its own vocabulary (model.vocab_size must match it)"
                )
        return kw
    if "corpus_vocab_size" not in kw:
        raise _Invalid(
            f"corpus={corpus!r} is a pre-tokenized .bin file: corpus_vocab_size is required (its "
            "vocabulary size, which sizes the model's embedding and readout)"
        )
    vocab, dtype = kw["corpus_vocab_size"], kw.get("corpus_dtype")
    if dtype is not None and vocab > TOKEN_DTYPES[dtype]:
        raise _Invalid(
            f"corpus_vocab_size={vocab} does not fit corpus_dtype={dtype!r} (ids below "
            f"{TOKEN_DTYPES[dtype]})"
        )
    if "vocab_size" in raw["model"] and family.vocab_size != vocab:
        raise _Invalid(
            f"model.vocab_size={family.vocab_size} disagrees with corpus_vocab_size={vocab}; "
            "drop model.vocab_size (it follows corpus_vocab_size)"
        )
    return kw


def _parse(raw: dict[str, Any], path: Path) -> SweepConfig:
    _check_keys("", raw, _TOP_KEYS)
    for required in ("model", "budget"):
        if required not in raw:
            raise _Invalid(f"missing table [{required}]")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\: "):
        raise _Invalid(f"name must be a non-empty string without '/', ':' or spaces, got {name!r}")
    family = ModelFamily.parse(_table("model", raw["model"]))
    budget = BudgetConfig.parse(_table("budget", raw["budget"]))
    for key in ("corpus", "results_dir"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise _Invalid(f"{key} must be a non-empty string, got {raw[key]!r}")
    token_corpus = _parse_token_corpus(raw, family)
    if "corpus_vocab_size" in token_corpus:
        family = replace(family, vocab_size=token_corpus["corpus_vocab_size"])
    kw: dict[str, Any] = {"name": name, "path": path, "model": family, "budget": budget}
    kw.update(token_corpus)
    kw["search"] = SearchSpace.parse(_table("search", raw.get("search", {})), family.seq_len)
    if "schedule" in raw:
        kw["schedule"] = _parse_schedule("schedule", raw["schedule"])
    kw["train"] = TrainSettings.parse(_table("train", raw.get("train", {})))
    kw["sampler"] = SamplerConfig.parse(raw.get("sampler", {}))
    kw["pruner"] = PrunerConfig.parse(raw.get("pruner", {}))
    kw["storage"] = StorageConfig.parse(raw.get("storage", {}))
    if "variants" in raw:
        if not isinstance(raw["variants"], list):
            raise _Invalid("variants must be an array of tables ([[variants]])")
        kw["variants"] = tuple(
            VariantConfig.parse(f"variants[{i}]", v, family, budget)
            for i, v in enumerate(raw["variants"])
        )
    if "trials_per_cell" in raw:
        kw["trials_per_cell"] = _pos_int("trials_per_cell", raw["trials_per_cell"])
    if "seed" in raw:
        kw["seed"] = _pos_int("seed", raw["seed"], minimum=0)
    for key in ("corpus", "results_dir"):
        if key in raw:
            kw[key] = raw[key]
    if kw["sampler"].name == "grid" and kw["search"].batch_tokens_range is not None:
        raise _Invalid("sampler 'grid' needs search.batch_tokens as a set, not a range")
    if kw["search"].seeds and kw["sampler"].name != "grid":
        raise _Invalid(
            f"search.seeds (replicates of grid points) needs sampler.name = 'grid', got "
            f"sampler.name = {kw['sampler'].name!r}"
        )
    cfg = SweepConfig(**kw)
    _check_budgets_hold_a_batch(cfg)
    if (
        cfg.sampler.name == "grid"
        and "trials_per_cell" in raw
        and cfg.trials_per_cell != cfg.search_trials()
    ):
        raise _Invalid(
            f"trials_per_cell={cfg.trials_per_cell} disagrees with the grid size "
            f"{cfg.search_trials()} (search.grid_points x len(search.batch_tokens) x "
            "len(search.seeds)); drop it"
        )
    return cfg


def resolve_config_path(name_or_path: str | Path) -> Path:
    """`quick` -> sweeps/configs/quick.toml; anything with a suffix or a slash is a path, and a
    bare `my.toml` that is not in the working directory is sweeps/configs/my.toml."""
    p = Path(name_or_path)
    if len(p.parts) > 1:
        return p
    if p.suffix == ".toml":
        return p if p.is_file() or not (CONFIG_DIR / p).is_file() else CONFIG_DIR / p
    return CONFIG_DIR / f"{p}.toml"


def config_out_dir(name_or_path: str | Path) -> Path:
    """Where a config's sweep writes (results_dir/name, as SweepConfig.out_dir), read from the
    TOML alone: quick, and without importing torch, for the Makefile. The file's name when the
    config cannot be read (loading it then reports the problem)."""
    path = resolve_config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    name, results = raw.get("name", path.stem), raw.get("results_dir", "results")
    if not (isinstance(name, str) and name and isinstance(results, str) and results):
        name, results = path.stem, "results"
    return Path(results) / name


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sweeps.config")
    sub = parser.add_subparsers(dest="command", required=True)
    out = sub.add_parser("out-dir", help="print where a config's sweep writes (results/<name>)")
    out.add_argument("config", help="a config name (sweeps/configs/<name>.toml) or a path")
    args = parser.parse_args(argv)
    print(config_out_dir(args.config))
    return 0


def load_config(name_or_path: str | Path, **overrides: Any) -> SweepConfig:
    """Load and validate a sweep config; any problem is a ValueError naming the key and file.

    `overrides` replace top-level fields after validation (tests use results_dir=...).
    """
    path = resolve_config_path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise ValueError(f"sweep config {str(path)!r} not found (configs shipped: {known})")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    try:
        cfg = _parse(raw, path)
    except _Invalid as exc:
        raise ValueError(f"{path}: {exc}") from None
    if overrides:
        cfg = replace(cfg, **overrides)
    return cfg


if __name__ == "__main__":
    raise SystemExit(_main())
