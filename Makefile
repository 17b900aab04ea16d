# Two commands on a fresh machine with Python 3.11+ and make: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test eval eval-tune intent-model bench compiled uncompiled lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[embedded,lab,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/detector demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check detector detector_lab tests
	$(BIN)/ruff format --check detector detector_lab tests
	$(BIN)/mypy detector detector_lab
	$(BIN)/pytest $(ARGS)

# Detection quality as the README reports it: the held-out `test` suite -> docs/evaluation/
# (report.md, report.json, heatmaps; each draw's events, labels and alerts in out/eval-test/).
# Thresholds are never chosen here: that is what `make eval-tune` is for. The suite's 28 draws
# are four passes over its plan of families and variants; about 7 minutes on 2 cores.
eval: $(STAMP)
	rm -f docs/evaluation/*.png docs/evaluation/report.md docs/evaluation/report.json
	$(BIN)/detector eval --suite test --out docs/evaluation --data out/eval-test $(ARGS)

# The same matrix on the `tune` suite, where thresholds are chosen -> out/eval-tune/.
eval-tune: $(STAMP)
	$(BIN)/detector eval --suite tune --out out/eval-tune $(ARGS)

# The intent model's weights from the simulator's tune phrase half (seeded: the same file every
# time, about a minute), with its measurement on the test half -> docs/evaluation/intent-model.md.
intent-model: $(STAMP)
	$(BIN)/python -m detector_lab.training.intent --out detector/features/intent_model.npz $(ARGS)

# Throughput, latency and Redis cost beside the Kafka ceiling -> docs/benchmarks.md and .json
# (events and worker logs in out/bench/). ARGS="--events 1000000" for the memory-flatness run.
bench: $(STAMP)
	$(BIN)/detector bench --repeat 3 --json docs/benchmarks.json --markdown docs/benchmarks.md $(ARGS)

# Optional: the per-event hot path (detector/native.py) compiled with mypyc, in place: about a
# quarter less CPU per event; the build takes under a minute. `make uncompiled` goes back.
compiled: $(STAMP)
	$(BIN)/python -m detector.native --build

uncompiled: $(STAMP)
	rm -f $$($(BIN)/python -m detector.native --built)

lint: $(STAMP)
	$(BIN)/ruff check detector detector_lab tests

format: $(STAMP)
	$(BIN)/ruff format detector detector_lab tests
	$(BIN)/ruff check --fix detector detector_lab tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
