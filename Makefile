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

## demo-model: regenerate the demo phantoms, run the full leave-one-center-out protocol on
## them (the README's commands; 5 to 8 hours on two CPU cores, resumable), fine-tune the
## center-D fold's model (trained on centers A-C) with Grad-CAM guidance, then with the
## pointing term too, on the same centers (about 40 minutes), score it on center D and ship it
## to resources/models/demo/
DEMO_ARGS = --input-size 128 --batch-size 32 --patience 6 --seed 0
DEMO_NOTES = The center-D fold of the demo leave-one-center-out run (trained on centers A-C), \
then 5 epochs at lr 2e-4 with --cam-guidance 2 on the same centers (train --init).
POINTING_NOTES = The center-D fold of the demo leave-one-center-out run (trained on centers \
A-C), then 5 epochs at lr 2e-4 with --cam-guidance 2, then 5 more with --cam-guidance 2 \
--cam-pointing 1, on the same centers (train --init).
demo-model: $(STAMP)
	test -f out/demo-phantoms/manifest.csv || $(BIN)/fetal-viewer phantoms --out out/demo-phantoms \
	    --patients-per-class 160 --centers 4 --seed 2026 --format png
	$(BIN)/fetal-viewer evaluate --manifest out/demo-phantoms/manifest.csv --out out/demo-loco \
	    --cv leave-one-center-out $(DEMO_ARGS) --epochs 16 --fp16 --name "fetal-viewer demo (phantoms)" \
	    --figures out/demo-loco/figures --resume
	awk -F, 'NR == 1 || $$4 != "D"' out/demo-phantoms/manifest.csv > out/demo-phantoms/manifest_ABC.csv
	awk -F, 'NR == 1 || $$4 == "D"' out/demo-phantoms/manifest.csv > out/demo-phantoms/manifest_D.csv
	$(BIN)/fetal-viewer train --manifest out/demo-phantoms/manifest_ABC.csv --out out/demo-guided \
	    --init out/demo-loco/folds/center_D/card.json $(DEMO_ARGS) --epochs 5 --lr 2e-4 \
	    --cam-guidance 2 --fp16 --resume --notes "$(DEMO_NOTES)" \
	    --name "fetal-viewer demo (phantoms), center D held out, Grad-CAM-guided fine-tune"
	$(BIN)/fetal-viewer train --manifest out/demo-phantoms/manifest_ABC.csv --out out/demo-pointing \
	    --init out/demo-guided/card.json $(DEMO_ARGS) --epochs 5 --lr 2e-4 \
	    --cam-guidance 2 --cam-pointing 1 --fp16 --resume --notes "$(POINTING_NOTES)" \
	    --name "fetal-viewer demo (phantoms), center D held out, Grad-CAM-guided fine-tune with the pointing term"
	$(BIN)/fetal-viewer evaluate --model out/demo-pointing/card.json \
	    --manifest out/demo-phantoms/manifest_D.csv --out out/demo-pointing/center_D \
	    --figures out/demo-pointing/center_D/figures --update-card out/demo-pointing/card.json
	mkdir -p resources/models/demo
	cp out/demo-pointing/card.json out/demo-pointing/weights.safetensors resources/models/demo/

## package: one-folder desktop bundle under dist/
package: $(STAMP)
	bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
