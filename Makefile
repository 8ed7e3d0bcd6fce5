# Thin wrappers: every setting lives in experiments/*.py, never here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXP ?= crypto_intraday
WORKDIR ?= runs/$(EXP)
DATA ?=
ARGS ?=
DATA_FLAG := $(if $(DATA),--config.data.path=$(DATA),)

.PHONY: install test train eval bench data null-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,parity]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q $(ARGS)

train: $(STAMP)
	$(PY) -m lemjax.main --mode=train --config=experiments/$(EXP).py --workdir=$(WORKDIR) $(DATA_FLAG) $(ARGS)

eval: $(STAMP)
	$(PY) -m lemjax.main --mode=eval --config=experiments/$(EXP).py --workdir=$(WORKDIR) $(DATA_FLAG) $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
