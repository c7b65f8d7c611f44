# One-command setup: every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE_CUSTOMERS := 4000
SAMPLE_SEED      := 20261122

.PHONY: setup test report sample bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[report,test]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

report: setup
	$(BIN)/carecall-eval evaluate data/sample --out reports/sample/metrics.json

sample: setup
	$(BIN)/carecall-eval simulate data/sample --customers $(SAMPLE_CUSTOMERS) --seed $(SAMPLE_SEED)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
