# One-command setup: every target creates .venv and installs what it needs (from only python3 and make).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# what each target needs, installed once per change of the package definition
BASE         := $(VENV)/.base
STAMP        := $(VENV)/.installed
STAMP_REPORT := $(VENV)/.installed-report
STAMP_DOCS   := $(VENV)/.installed-docs
DEFINITION   := pyproject.toml setup.py
KERNEL := $(VENV)/share/jupyter/kernels/carecall-eval/kernel.json
SAMPLE_CUSTOMERS := 4000
SAMPLE_SEED      := 20261122
# the showcase: a mid-sized simulated operator (about 35 MB of Parquet, generated, never committed), sized
# so that the pooled year's matched spending interval is within about +/-10 points (README, "The example")
EXAMPLE_CUSTOMERS := 30000
EXAMPLE_SEED      := 20261201
EXAMPLE_OPERATOR  := ExampleBet
EXAMPLE_DATA      := data/example
EXAMPLE_QUARTER   := 2025Q4
# the committed example report is rendered with this timestamp (SOURCE_DATE_EPOCH: 2026-01-15T00:00:00Z)
EXAMPLE_EPOCH     := 1768435200

.PHONY: setup test unit lint report example example-data readme-figures sample docs bench clean

$(BASE):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	touch $(BASE)

# everything a developer needs: the report, tests, Spark, lint, docs and wheel building
$(STAMP): $(BASE) $(DEFINITION)
	$(BIN)/python -m pip install --quiet -e '.[report,test,spark,lint,docs,build]'
	touch $(STAMP) $(STAMP_REPORT) $(STAMP_DOCS)

# only what `make report` needs (no Spark, no test or lint tools)
$(STAMP_REPORT): $(BASE) $(DEFINITION)
	$(BIN)/python -m pip install --quiet -e '.[report]'
	touch $(STAMP_REPORT)

# what `make docs` needs: the report stack (the walkthrough is executed) and the docs extra
$(STAMP_DOCS): $(BASE) $(DEFINITION)
	$(BIN)/python -m pip install --quiet -e '.[report,docs]'
	touch $(STAMP_DOCS) $(STAMP_REPORT)

# the Jupyter kernel for `jupyter lab` users (the renderer falls back to this interpreter without it)
$(KERNEL): $(STAMP_REPORT)
	$(BIN)/python -m ipykernel install --sys-prefix --name carecall-eval --display-name "Python (carecall-eval)"

setup: $(STAMP) $(KERNEL)

# the README's test command: the docs (which execute the research walkthrough on the sample), then every
# test not marked slow, including the wheel install check (tests/test_install.py: build the wheel, install it
# in a fresh virtual environment, run simulate, validate, evaluate, report, export and compare outside the
# checkout) and the committed example's figures (tests/test_example.py)
test: setup docs
	$(BIN)/python -m pytest -q -m "not slow"

# the unit tests only (no install check): for a quick loop while developing
unit: setup
	$(BIN)/python -m pytest -q -m "not slow and not install and not example"

# ruff (style, bugs, imports) and mypy (types), both configured in pyproject.toml; zero findings
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# quarterly report of the sample data's latest complete quarter into reports/latest/ (ignored by git;
# the committed example changes only through `make example`)
report: $(STAMP_REPORT)
	$(BIN)/carecall-eval report --data data/sample --quarter latest --out reports/latest

sample: $(STAMP_REPORT)
	$(BIN)/carecall-eval simulate data/sample --customers $(SAMPLE_CUSTOMERS) --seed $(SAMPLE_SEED)

# the showcase operator's data, simulated afresh each time (deterministic: the same files byte for byte, so the
# example always shows what today's simulator gives; not committed)
example-data: $(STAMP_REPORT)
	$(BIN)/carecall-eval simulate $(EXAMPLE_DATA) --customers $(EXAMPLE_CUSTOMERS) --seed $(EXAMPLE_SEED) \
	  --operator $(EXAMPLE_OPERATOR)

# the committed example report (reports/example/<operator>/<quarter>/), how it was made (example.json) and the
# README's figures
example: example-data
	rm -rf reports/example/$(EXAMPLE_OPERATOR)
	SOURCE_DATE_EPOCH=$(EXAMPLE_EPOCH) $(BIN)/carecall-eval report --data $(EXAMPLE_DATA) \
	  --quarter $(EXAMPLE_QUARTER) --out reports/example
	$(BIN)/python tools/example.py record --data $(EXAMPLE_DATA) --out reports/example \
	  --customers $(EXAMPLE_CUSTOMERS) --seed $(EXAMPLE_SEED) --operator $(EXAMPLE_OPERATOR) --quarter $(EXAMPLE_QUARTER)
	$(BIN)/python tools/readme_figures.py

# the README's figures from data/sample/truth.json and the committed example's metrics (no hand-typed numbers)
readme-figures: $(STAMP_REPORT)
	$(BIN)/python tools/readme_figures.py

# the documentation site into site/ (offline; every warning is an error); executes the research walkthrough
docs: $(STAMP_DOCS)
	$(BIN)/python docs/build_pages.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache site docs/generated
