# edge: the two quick-start targets are `make up` and `make test` (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYPKGS := edge spectrum cdn resolver certs

.PHONY: up test lint typecheck unit fast bench-dns bench-cdn bench-spectrum clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install the venv module (Debian: apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

## Start the emulator on its built-in default config (Ctrl-C stops it).
up: $(STAMP)
	$(BIN)/edge up $(ARGS)

## Install everything the tests need, then lint, type-check and run the whole suite.
test: $(STAMP)
	@bash scripts/system-deps.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(PYPKGS) tests bench
	$(BIN)/mypy $(PYPKGS)

fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

bench-dns: $(STAMP)
	bash bench/dns/run.sh

bench-cdn: $(STAMP)
	bash bench/cdn/run.sh

bench-spectrum: $(STAMP)
	bash bench/spectrum/run.sh

clean:
	rm -rf $(VENV) .edge .mypy_cache .ruff_cache .pytest_cache .hypothesis
