# Thin wrappers: every setting lives in experiments/*.py, never here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXP ?= crypto_intraday
WORKDIR ?=
DATA ?=
ARGS ?=
VARIANT ?=
# experiments/<EXP>.py, or a variant of it (VARIANT=smoke, paper, leaky, or combined: smoke,leaky).
CONFIG := experiments/$(EXP).py$(if $(VARIANT),:$(VARIANT),)
DATA_FLAG := $(if $(DATA),--config.data.path=$(DATA) --config.data.source=files,)
# Empty WORKDIR: the run picks runs/<name> (runs/<name>_SYNTHETIC on the synthetic market).
WORKDIR_FLAG := $(if $(WORKDIR),--workdir=$(WORKDIR),)

.PHONY: install test lint train eval compare seeds bench data null-test train-rl backtest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,parity]"
	touch $(STAMP)

install: $(STAMP)

# One pytest worker per core, each test file on one worker (files share module fixtures).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --durations=10 $(ARGS)

# ruff, configured in pyproject.toml: lint rules, then the formatter in check-only mode.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

train: $(STAMP)
	$(PY) -m lemjax.main --mode=train --config=$(CONFIG) $(WORKDIR_FLAG) $(DATA_FLAG) $(ARGS)

eval: $(STAMP)
	$(PY) -m lemjax.main --mode=eval --config=$(CONFIG) $(WORKDIR_FLAG) $(DATA_FLAG) $(ARGS)

# The causal run (runs/<name>) and its look-ahead twin (VARIANT=leaky, runs/<name>_LEAKY) beside the
# paper's published tables -> runs/<name>/paper_comparison.md (+ .csv).
compare: $(STAMP)
	$(PY) -m lemjax.main --mode=compare --config=$(CONFIG) $(WORKDIR_FLAG) $(DATA_FLAG) $(ARGS)

# Binance monthly klines for the experiment's symbols, interval and dates into data/binance/.
data: $(STAMP)
	$(PY) -m lemjax.data.download --config=experiments/$(EXP).py $(ARGS)

# Trains and evaluates SEEDS seeds into runs/<name>_seed<i>; across-seed tables in runs/<name>_seeds/.
SEEDS ?= 3
seeds: $(STAMP)
	$(PY) -m lemjax.main --mode=seeds --seeds=$(SEEDS) --config=$(CONFIG) $(WORKDIR_FLAG) $(DATA_FLAG) $(ARGS)

# PPO baseline on the experiment's training orders into <workdir>/rl/; `make eval` then adds a PPO row.
train-rl: $(STAMP)
	$(PY) -m lemjax.main --mode=train_rl --config=$(CONFIG) $(WORKDIR_FLAG) $(DATA_FLAG) $(ARGS)

# The trained LEM and every baseline over a file of orders, net of costs (lemjax/backtest.py):
# make backtest EXP=crypto_intraday ORDERS=orders.csv [WORKDIR=...] [DATA=folder] [ARGS=--skip-bad]
ORDERS ?=
backtest: $(STAMP)
	$(PY) -m lemjax.backtest --workdir=$(or $(WORKDIR),runs/$(EXP)) --orders=$(ORDERS) $(if $(DATA),--data=$(DATA),) $(ARGS)

null-test: $(STAMP)
	$(PY) -m lemjax.main --mode=null_test --config=experiments/null_test.py $(WORKDIR_FLAG) $(ARGS)

# Compile time, train-step throughput, peak memory, parameters, decision latency, input pipeline
# -> bench.json; ARGS="--peer" times the lems package beside it, ARGS="--scaling" sweeps N and B.
bench: $(STAMP)
	$(PY) -m lemjax.bench $(ARGS)

# Caches and the virtualenv only: trained models in runs/ stay.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
