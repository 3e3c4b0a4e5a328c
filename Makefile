# Two entry points for a fresh machine with only Python >= 3.11 (see README):
#   make demo   install into .venv and run the demo (store + agent + fault schedule)
#   make test   install into .venv and run lint, type check and the whole test suite
#   make bench  benchmarks vs blackbox_exporter and prometheus-client (README "Performance")
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/storewatch demo

lint: $(BIN)/.installed
	$(BIN)/ruff check agent classifier tests

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest -q

test: lint typecheck unit

# Installs Debian nginx-light and prometheus-blackbox-exporter when missing (as root); < 10 min.
bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,browser,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
