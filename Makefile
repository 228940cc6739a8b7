# fetal-viewer: the targets a newcomer needs. Everything runs from a local .venv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint bench package demo-model clean

# set up once (and again when pyproject.toml changes)
$(STAMP): pyproject.toml
	@bash packaging/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: open the viewer on the bundled demo studies with the demo model
run: $(STAMP)
	$(BIN)/fetal-viewer --demo

## test: lint, type-check the core, check layering, run every test offscreen
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: every benchmark; each prints its figures as a JSON last line
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## package: one-folder desktop bundle under dist/
package: $(STAMP)
	bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
