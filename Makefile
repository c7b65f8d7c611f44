# One-command setup: every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := $(VENV)/share/jupyter/kernels/carecall-eval/kernel.json
SAMPLE_CUSTOMERS := 4000
SAMPLE_SEED      := 20261122

.PHONY: setup test lint report sample bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[report,test,spark,lint]'
	touch $(STAMP)

# the Jupyter kernel the report notebooks run in (papermill is given this name explicitly)
$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name carecall-eval --display-name "Python (carecall-eval)"

setup: $(STAMP) $(KERNEL)

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

# ruff (style, bugs, imports) and mypy (types), both configured in pyproject.toml; zero findings
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# quarterly report of the sample data's latest complete quarter: reports/SimSpel/<quarter>/report.html + metrics
report: setup
	$(BIN)/carecall-eval report --data data/sample --quarter latest --out reports

sample: setup
	$(BIN)/carecall-eval simulate data/sample --customers $(SAMPLE_CUSTOMERS) --seed $(SAMPLE_SEED)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
