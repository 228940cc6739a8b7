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

## demo-model: retrain the demo model on phantoms and re-run its leave-one-center-out
## evaluation (the README's commands), then copy it to resources/models/demo/
DEMO_ARGS = --input-size 128 --epochs 16 --batch-size 32 --patience 6 --seed 0
demo-model: $(STAMP)
	$(BIN)/fetal-viewer phantoms --out out/demo-phantoms --patients-per-class 40 --centers 4 \
	    --seed 2026 --format png
	$(BIN)/fetal-viewer train --manifest out/demo-phantoms/manifest.csv --out out/demo-model \
	    $(DEMO_ARGS) --fp16 --name "fetal-viewer demo (phantoms)"
	$(BIN)/fetal-viewer evaluate --manifest out/demo-phantoms/manifest.csv --out out/demo-loco \
	    --cv leave-one-center-out $(DEMO_ARGS) --figures out/demo-loco/figures \
	    --update-card out/demo-model/card.json
	mkdir -p resources/models/demo
	cp out/demo-model/card.json out/demo-model/weights.safetensors resources/models/demo/

## package: one-folder desktop bundle under dist/
package: $(STAMP)
	bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
