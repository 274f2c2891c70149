# Everything a person does with this project. On a fresh machine:
#   make load    # creates .venv, installs, initialises the embedded shards, loads data/incoming/
#   make test    # the test suite, against real PostgreSQL servers it starts itself
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INCOMING ?= data/incoming

EXPORTS ?= data/exports
ROWS ?= 1000000
ROUNDS ?= 3

.PHONY: venv init load extract report check bench status stop test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The package's bytecode, compiled as an installed package's is: with PYTHONDONTWRITEBYTECODE
# set, an editable install would compile every module at every command (0.1-0.15 s each).
venv: $(STAMP)
	$(BIN)/python -m compileall -q pipeline

init: venv
	$(BIN)/pipeline init

load: init
	$(BIN)/pipeline load $(INCOMING)

extract: venv
	$(BIN)/pipeline extract -o $(EXPORTS)/residents.csv

report: venv
	$(BIN)/pipeline report -o $(EXPORTS)/report.html

check: venv
	$(BIN)/pipeline check

bench: venv
	$(BIN)/python bench/run.py --rows $(ROWS) --rounds $(ROUNDS)

status: venv
	$(BIN)/pipeline status

stop: venv
	$(BIN)/pipeline embedded stop

test: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	-$(BIN)/pipeline embedded stop 2>/dev/null
	rm -rf $(VENV) .pipeline .pytest_cache .mypy_cache .ruff_cache
