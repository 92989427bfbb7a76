"""One sweep worker: claim a trial in some cell, train the proxy, record its row and curve.

Claiming happens under the sweep's planning lock, so the number of trials that hold a place
in a cell (COMPLETE, PRUNED, RUNNING or WAITING) never exceeds the cell's planned count, by
any number of workers. A trial whose worker died goes stale, is failed by heartbeat and
re-enqueued with its parameters (RetryFailedTrialCallback); FAIL trials hold no place.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from sweeps._storage import StorageSpec, fail_stale_journal_trials, journal_heartbeat
from sweeps.config import Cell, SweepConfig

# Optuna cannot store NaN or inf as an objective value: a diverged run reports this instead
# (its runs-table row keeps loss = NaN and diverged = true).
DIVERGED_OBJECTIVE = 1e3

HOLDING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def study_name(cfg: SweepConfig, cell: Cell) -> str:
    return f"{cfg.name}:{cell.name}"


def make_sampler(cfg: SweepConfig, cell: Cell, n_existing: int) -> optuna.samplers.BaseSampler:
    # Reseeded per trial: concurrent workers asking at the same history must not propose
    # the same point, yet a sweep replayed by one worker is reproducible.
    seed = zlib.crc32(f"{cfg.seed}:{cell.name}:{n_existing}".encode())
    if is_grid(cfg, cell):
        return _SlotGridSampler(grid_points(cfg, cell))
    name = "random" if cell.is_variant else cfg.sampler.name
    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=cfg.sampler.n_startup_trials, seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            n_startup_trials=cfg.sampler.n_startup_trials,
            seed=seed,
            warn_independent_sampling=False,
        )
    return optuna.samplers.RandomSampler(seed=seed)


def is_grid(cfg: SweepConfig, cell: Cell) -> bool:
    return cfg.sampler.name == "grid" and not cell.is_variant


def grid_points(cfg: SweepConfig, cell: Cell) -> list[dict[str, Any]]:
    """The cell's grid as a list of points (LR, batch tokens, seed), in an order shuffled by
    the sweep's seed (so that a partly run sweep covers the grid evenly) and repeated for each
    of search.seeds, the seeds varying slowest; a trial's slot indexes this list."""
    space = grid_space(cfg)
    points = [{"lr": lr, "batch_tokens": bt} for lr in space["lr"] for bt in space["batch_tokens"]]
    order = np.random.default_rng(zlib.crc32(f"{cfg.seed}:{cell.name}".encode())).permutation(
        len(points)
    )
    return [points[i] | {"seed": seed} for seed in cfg.grid_seeds for i in order]


def grid_point_key(params: dict[str, Any], seed: int | None = None) -> tuple | None:
    """(log LR, batch tokens, seed) of a grid point, a trial's parameters or a run's row; the
    seed is `params`' own (points and rows have one) or else `seed`."""
    if "lr" not in params or "batch_tokens" not in params:
        return None
    s = params.get("seed", seed)
    return (
        round(math.log(float(params["lr"])), 9),
        int(params["batch_tokens"]),
        None if s is None else int(s),
    )


def trial_point_keyer(cfg: SweepConfig, cell: Cell) -> Callable[[FrozenTrial], tuple | None] | None:
    """For a grid cell, a function giving the grid point a trial holds: its parameters (or,
    claimed a moment ago and not sampled yet, its slot's point) at its seed (its row's; else
    its slot's; else, for a trial from before slots, the sweep's); None where that is not a
    point of the grid (a seed since dropped from search.seeds: such a run is exported, but it
    does not stand in for a point of the grid). None for other cells."""
    if not is_grid(cfg, cell):
        return None
    points = grid_points(cfg, cell)
    keys = {grid_point_key(p) for p in points}

    def key(t: FrozenTrial) -> tuple | None:
        slot = t.user_attrs.get("slot")
        at = points[int(slot) % len(points)] if slot is not None else None
        seed = (t.user_attrs.get("row") or {}).get("seed")
        if seed is None:
            seed = at["seed"] if at is not None else cfg.seed
        k = grid_point_key(_trial_params(t) or at or {}, seed)
        return k if k in keys else None

    return key


def _trial_params(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, or for a WAITING retry the ones it will be given."""
    return t.params or t.system_attrs.get("fixed_params") or {}


class _SlotGridSampler(optuna.samplers.BaseSampler):
    """Grid search that takes each trial's point from its slot, which the worker assigns
    under the planning lock among the points no holding trial covers. (Optuna's GridSampler
    counts a FAIL trial's point as visited: after an interrupted sweep it repeated covered
    points and never ran the failed ones.)"""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        self.points = points

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        slot = trial.user_attrs.get("slot")
        if slot is None:
            raise RuntimeError("grid trial without a slot")
        return self.points[int(slot) % len(self.points)][param_name]


def grid_space(cfg: SweepConfig) -> dict[str, list]:
    lo, hi = cfg.search.lr
    n = cfg.search.grid_points
    lrs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)] if n > 1 else [math.sqrt(lo * hi)]
    return {"lr": lrs, "batch_tokens": list(cfg.search.batch_tokens)}


def make_pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1 if p.min_resource == "auto" else p.min_resource,
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def cell_progress(
    trials: list[FrozenTrial], point_key: Callable[[FrozenTrial], tuple | None] | None = None
) -> dict[str, int]:
    """Trial counts by state, plus `holding` and `finished`. With `point_key` (grid cells:
    trial_point_keyer), `holding` and `finished` count the distinct grid points trials hold (a
    storage written by Optuna's GridSampler may repeat one)."""
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1

    def count(states) -> int:
        if point_key is not None:
            return len({point_key(t) for t in trials if t.state in states} - {None})
        return sum(1 for t in trials if t.state in states)

    counts["holding"] = count(HOLDING)
    counts["finished"] = count(FINISHED)
    return counts


def best_run(trials: list[FrozenTrial]) -> dict[str, Any] | None:
    """The finished, non-diverged run with the lowest final loss in a cell. Where a point (LR,
    batch) was run at several seeds (search.seeds), points are ranked by the geometric mean
    of their seeds' final losses (one lucky seed does not pick the point), a point where a
    seed diverged after every point where none did; the point's best run is returned, its
    `loss` that mean and `seeds` how many runs it holds."""
    rows = [
        t.user_attrs["row"]
        for t in trials
        if t.state == TrialState.COMPLETE and "row" in t.user_attrs
    ]
    points: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        points.setdefault(grid_point_key(r)[:2], []).append(r)
    ranked = []
    for runs in points.values():
        ok = [r for r in runs if not r["diverged"] and r["loss"] is not None]
        if ok:
            mean = math.exp(sum(math.log(r["loss"]) for r in ok) / len(ok))
            ranked.append((len(runs) - len(ok), mean, ok))
    if not ranked:
        return None
    _, mean, ok = min(ranked, key=lambda x: x[:2])
    best = min(ok, key=lambda r: r["loss"])
    return best if len(ok) == 1 else best | {"loss": mean, "seeds": len(ok)}


def _json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def compact_curve(curve) -> dict[str, list]:
    """Columnar JSON (NaN as null) for a trial user attribute."""
    return {
        col: [int(v) if col in ("step", "tokens") else _json_float(v) for v in curve[col].tolist()]
        for col in ("step", "tokens", "lr", "loss", "train_loss")
    }


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


class Worker:
    """Pulls trials from every cell of a sweep until each holds its planned finished runs."""

    def __init__(
        self,
        cfg: SweepConfig,
        storage_url: str,
        *,
        threads: int | None = None,
        corpus=None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.spec = StorageSpec.parse(storage_url)
        s = cfg.storage
        self.storage = self.spec.open(
            heartbeat_interval=None if self.spec.kind == "journal" else s.heartbeat_interval,
            grace_period=s.grace_period,
            max_retry=s.max_retry,
        )
        self.lock = self.spec.plan_lock(cfg.name)
        self.cells = cfg.cells()
        self.threads = threads
        self.corpus = corpus
        self.log = log or (lambda message: None)
        self.pruner = make_pruner(cfg)
        self._studies: dict[str, optuna.Study] = {}
        self.trials_run = 0
        self._current: tuple[optuna.Study, int] | None = None  # (study, trial number) running
        # The study this worker is creating a trial in, under the planning lock: between
        # optuna's ask (the trial exists, RUNNING) and the objective naming it in _current.
        self._claiming: optuna.Study | None = None
        # Set once an interrupt has reached the running trial: optuna then writes its FAIL,
        # which the repeated SIGINTs of a stopping sweep must not cut short (see
        # `interrupt_now`, which the SIGINT handler of a worker process asks).
        self.stopping = False
        self._writing = False  # inside one of the running trial's storage writes
        self._held = False  # a SIGINT arrived during that write, raised at its end

    def interrupt_now(self) -> bool:
        """For a worker process's SIGINT handler: whether to raise KeyboardInterrupt now.

        Not once the trial has taken one: optuna is writing its FAIL. Not inside one of the
        trial's storage writes either: the interrupt is held and raised when the write ends.
        A write cut short can leave the trial RUNNING, with SQLite's lock held against the
        FAIL write that follows (measured: 5 of 173 places in optuna's `tell`)."""
        if self.stopping:
            return False
        if self._writing:
            self._held = True
            return False
        return True

    @contextmanager
    def _trial_write(self) -> Iterator[None]:
        """One storage write of the running trial, not to be cut short by an interrupt."""
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
            if self._held:
                self._held = False
                raise KeyboardInterrupt

    def study(self, cell: Cell) -> optuna.Study:
        if cell.name not in self._studies:
            study = optuna.create_study(
                storage=self.storage,
                study_name=study_name(self.cfg, cell),
                direction="minimize",
                pruner=self.pruner,
                load_if_exists=True,
            )
            self._studies[cell.name] = study
        return self._studies[cell.name]

    def _fail_stale(self, study: optuna.Study) -> None:
        if self.spec.kind == "journal":
            s = self.cfg.storage
            fail_stale_journal_trials(study, s.grace_period, s.max_retry)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)

    def run(self, max_trials: int | None = None) -> int:
        """Work until the sweep is done (or `max_trials` ran here); returns trials run."""
        by_name = {c.name: c for c in self.cells}
        try:
            while max_trials is None or self.trials_run < max_trials:
                all_done, claimed = True, False
                for cell in self.cells:
                    self.lock.acquire()
                    try:
                        study = self.study(cell)
                        self._fail_stale(study)
                        trials = study.get_trials(deepcopy=False)
                        counts = cell_progress(trials, trial_point_keyer(self.cfg, cell))
                        if counts["finished"] >= cell.n_trials and not (
                            counts["running"] or counts["waiting"]
                        ):
                            continue
                        all_done = False
                        if cell.is_variant and not self._base_done(by_name[cell.base]):
                            continue
                        if counts["waiting"] == 0 and counts["holding"] >= cell.n_trials:
                            continue  # every place is taken by a running trial elsewhere
                        study.sampler = make_sampler(self.cfg, cell, len(trials))
                        claimed = True
                        self._claiming = study
                        self._run_one(study, cell, by_name)  # releases the lock once claimed
                        self._claiming = None  # (kept on an interrupt, for the handler)
                    finally:
                        self.lock.release()
                    break
                if all_done:
                    return self.trials_run
                if not claimed:
                    # Others hold the remaining trials: wait for them to finish, or for a dead
                    # worker's heartbeat to go stale so its trial can be re-run here.
                    time.sleep(self.cfg.storage.poll_seconds)
            return self.trials_run
        finally:
            self.lock.close()

    def _base_done(self, base: Cell) -> bool:
        counts = cell_progress(self.study(base).get_trials(deepcopy=False))
        return counts["finished"] >= base.n_trials and not (counts["running"] or counts["waiting"])

    def _run_one(self, study: optuna.Study, cell: Cell, by_name: dict[str, Cell]) -> None:
        def objective(trial: optuna.Trial) -> float:
            self._current, self._claiming = (study, trial.number), None
            try:
                try:
                    with self._trial_write():
                        slot = self._assign_slot(study, trial, cell)
                finally:
                    self.lock.release()
                if self.spec.kind == "journal":
                    with journal_heartbeat(
                        self.storage, trial._trial_id, self.cfg.storage.heartbeat_interval
                    ):
                        return self._train_trial(trial, cell, slot, by_name)
                return self._train_trial(trial, cell, slot, by_name)
            except KeyboardInterrupt:
                self.stopping = True
                raise

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
        self._current = None
        self.trials_run += 1

    def fail_running_trial(self) -> None:
        """After an interrupt: mark the trial this worker was running FAIL (re-run on resume)
        unless optuna already has (a second interrupt can cut its own FAIL write short)."""
        if self._current is None:
            self._fail_claim_in_progress()
            return
        study, number = self._current
        self._current = None
        for attempt in range(3):  # a busy database (another worker's write) gets two retries
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "already finished": optuna got there first
                    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                return
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(1.0)

    def _fail_claim_in_progress(self) -> None:
        """An interrupt inside optuna's ask: the new trial is RUNNING but not yet ours by
        number. This worker holds the planning lock, and only a trial being created under it
        has no slot yet (retries keep theirs), so those are the one to fail."""
        study, self._claiming = self._claiming, None
        if study is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if "slot" not in t.user_attrs:
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)

    def _assign_slot(self, study: optuna.Study, trial: optuna.Trial, cell: Cell) -> int:
        """The trial's place in the cell's plan, kept by its retries. On a grid: the first
        point (in the cell's shuffled order) that no holding trial covers; otherwise the
        lowest place 0..n_trials-1 that no holding trial has."""
        if "slot" in trial.user_attrs:
            return int(trial.user_attrs["slot"])
        held = study.get_trials(deepcopy=False, states=HOLDING)
        others = [t for t in held if t.number != trial.number]
        if is_grid(self.cfg, cell):
            points = grid_points(self.cfg, cell)
            # (A trial claimed a moment ago has no parameters yet, they are drawn after the
            # planning lock is released, but its slot's point is taken all the same.)
            taken = set(map(trial_point_keyer(self.cfg, cell), others))
            free = [i for i, p in enumerate(points) if grid_point_key(p) not in taken]
            # A retry from before slots has fixed parameters: it takes its own point's slot.
            fixed = [_trial_params(t) for t in held if t.number == trial.number]
            own = grid_point_key(fixed[0], self.cfg.seed) if fixed and fixed[0] else None
            mine = [i for i in free if grid_point_key(points[i]) == own]
            slot = (mine or free)[0] if free else len(taken) % len(points)
        else:
            used = {int(t.user_attrs["slot"]) for t in others if "slot" in t.user_attrs}
            slot = next(i for i in range(cell.n_trials + len(used) + 1) if i not in used)
        trial.set_user_attr("slot", slot)
        return slot

    def _hyperparameters(
        self, trial: optuna.Trial, cell: Cell, slot: int, by_name: dict[str, Cell]
    ) -> tuple[float, int, int]:
        """The trial's (LR, batch tokens, seed)."""
        cfg = self.cfg
        if not cell.is_variant:
            lr = trial.suggest_float("lr", *cfg.search.lr, log=True)
            if cfg.search.batch_tokens_range is not None:
                lo, hi = (b // cfg.model.seq_len for b in cfg.search.batch_tokens_range)
                batch_tokens = trial.suggest_int("batch_seqs", lo, hi, log=True) * cfg.model.seq_len
            else:
                batch_tokens = trial.suggest_categorical(
                    "batch_tokens", list(cfg.search.batch_tokens)
                )
            seed = cfg.seed
            if is_grid(cfg, cell):
                points = grid_points(cfg, cell)
                seed = points[slot % len(points)]["seed"]
            return lr, int(batch_tokens), seed
        best = best_run(self.study(by_name[cell.base]).get_trials(deepcopy=False))
        lo, hi = cfg.search.lr
        if cell.lr == "best":
            # No finished run in the base cell (all diverged): the middle of the LR range.
            base_lr = best["lr"] if best else math.sqrt(lo * hi)
        else:
            base_lr = float(cell.lr)
        if cell.batch_tokens == "best":
            batch_tokens = (
                best["batch_tokens"]
                if best
                else cfg.search.batch_tokens[0]
                if cfg.search.batch_tokens
                else cfg.search.batch_tokens_range[0]
            )
        else:
            batch_tokens = int(cell.batch_tokens)
        factor, seed = cell.slot_settings(slot, cfg.seed)
        trial.set_user_attr("lr_source", f"{cell.lr}:{cell.base}" if cell.lr == "best" else "fixed")
        return base_lr * factor, int(batch_tokens), seed

    def _train_config(self, cell: Cell, lr: float, batch_tokens: int, seed: int):
        from sweeps.train import TrainConfig

        t = self.cfg.train
        return TrainConfig(
            model=self.cfg.model_config(cell.width, cell.depth),
            lr=lr,
            batch_tokens=batch_tokens,
            tokens=cell.tokens,
            schedule=cell.schedule,
            weight_decay=t.weight_decay,
            grad_clip=t.grad_clip,
            eval_every=t.eval_every,
            eval_tokens=t.eval_tokens,
            seed=seed,
            device=t.device,
            precision=t.precision,
            corpus=self.cfg.corpus,
            corpus_vocab_size=self.cfg.corpus_vocab_size,
            corpus_dtype=self.cfg.corpus_dtype,
            log_every=t.log_every,
            threads=self.threads,
        )

    def _base_row(self, trial: optuna.Trial, cell: Cell, tc) -> dict[str, Any]:
        from sweeps.model import count_params

        n_params, n_params_total = count_params(tc.model)
        m, steps = tc.model, tc.steps
        return {
            "run_id": f"{self.cfg.name}-{cell.name}-t{trial.number}",
            "sweep": self.cfg.name,
            "cell": cell.name,
            "n_params": n_params,
            "n_params_total": n_params_total,
            "tokens": steps * tc.batch_size * m.seq_len,
            "lr": tc.lr,
            "batch_tokens": tc.batch_size * m.seq_len,
            "width": m.width,
            "depth": m.depth,
            "n_heads": m.width // m.head_dim,
            "seq_len": m.seq_len,
            "vocab_size": m.vocab_size,
            "steps": steps,
            "schedule": tc.schedule.name,
            "schedule_json": tc.schedule.to_json(),
            "warmup_steps": tc.schedule.n_warmup(steps),
            "weight_decay": tc.weight_decay,
            "seed": tc.seed,
            "flops": 6.0 * n_params * steps * tc.batch_size * m.seq_len,
            "parametrization": m.parametrization,
            "base_width": m.base_width if m.parametrization == "mup" else None,
            "trial_number": trial.number,
            "variant": cell.is_variant,
            "corpus": self.cfg.corpus or "default",
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }

    def _check_grid_point(self, cell: Cell, slot: int, row: dict[str, Any]) -> None:
        """A grid trial must train at its slot's point. Progress counts a grid point by what its
        runs recorded, so a run elsewhere would leave the point open and the planning loop would
        make trials for it without end: stop with the mismatch instead."""
        points = grid_points(self.cfg, cell)
        want = points[slot % len(points)]
        if grid_point_key(row) != grid_point_key(want):
            raise RuntimeError(
                f"grid cell {cell.name!r}: trial {row['trial_number']} holds grid slot {slot} "
                f"(lr={want['lr']:.6g}, batch_tokens={want['batch_tokens']}, "
                f"seed={want['seed']}) but would train at lr={row['lr']:.6g}, "
                f"batch_tokens={row['batch_tokens']}, seed={row['seed']}; the sweep stops "
                "rather than plan the point again"
            )

    def _train_trial(
        self, trial: optuna.Trial, cell: Cell, slot: int, by_name: dict[str, Cell]
    ) -> float:
        from sweeps.train import resolve_device, train

        with self._trial_write():  # (suggesting a parameter writes it)
            lr, batch_tokens, seed = self._hyperparameters(trial, cell, slot, by_name)
        tc = self._train_config(cell, lr, batch_tokens, seed)
        base = self._base_row(trial, cell, tc)
        if is_grid(self.cfg, cell):
            self._check_grid_point(cell, slot, base)
        steps = tc.steps
        lrs = tc.schedule.lrs(tc.lr, steps)
        evals: list[tuple[int, int, float]] = []
        started = time.perf_counter()
        prunable = self.cfg.pruner.name != "none" and not cell.is_variant

        def callback(step: int, tokens: int, val_loss: float) -> None:
            evals.append((step, tokens, val_loss))
            if step >= steps:
                return  # the final evaluation: a finished run is never pruned
            with self._trial_write():
                trial.report(val_loss if math.isfinite(val_loss) else DIVERGED_OBJECTIVE, step)
                prune = prunable and trial.should_prune()
            if prune:
                row = base | {
                    "loss": val_loss,
                    "diverged": False,
                    "pruned": True,
                    "state": "pruned",
                    "wall_seconds": time.perf_counter() - started,
                    "device": str(resolve_device(tc.device)),
                    "pruned_at_step": step,
                }
                curve = {
                    "step": [e[0] for e in evals],
                    "tokens": [e[1] for e in evals],
                    "lr": [float(lrs[e[0] - 1]) for e in evals],
                    "loss": [_json_float(e[2]) for e in evals],
                    "train_loss": [None for _ in evals],
                }
                with self._trial_write():
                    trial.set_user_attr("row", _row_json(row))
                    trial.set_user_attr("curve", curve)
                raise optuna.TrialPruned(f"pruned at step {step} of {steps}")

        self.log(f"trial {trial.number} of {cell.name}: lr={lr:.3g} batch_tokens={batch_tokens}")
        with warnings.catch_warnings():
            # A run longer than the corpus repeats data: worth a note, not an error.
            warnings.simplefilter("ignore", UserWarning)
            result = train(tc, callback, corpus=self.corpus)
        row = base | result.to_row() | {"pruned": False, "run_id": base["run_id"]}
        row["state"] = "diverged" if result.diverged else "complete"
        with self._trial_write():
            trial.set_user_attr("row", _row_json(row))
            trial.set_user_attr("curve", compact_curve(result.curve))
        if result.diverged or not math.isfinite(result.loss):
            return DIVERGED_OBJECTIVE
        return float(result.loss)


def row_and_curve(trial: FrozenTrial) -> tuple[dict[str, Any], dict[str, list]] | None:
    """A finished trial's runs-table row and curve (None for trials without one)."""
    if trial.state not in FINISHED or "row" not in trial.user_attrs:
        return None
    row = dict(trial.user_attrs["row"])
    if trial.state == TrialState.PRUNED:
        row.update(pruned=True, state="pruned", diverged=False)
    if row.get("loss") is None:
        row["loss"] = math.nan
    return row, trial.user_attrs.get("curve") or {}


def dumps_compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
