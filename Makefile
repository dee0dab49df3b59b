# Two entry points: `make demo` (set up, then the traffic example end to end) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test examples bench lint clean

$(STAMP): pyproject.toml runtime/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e runtime -e '.[onnx,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/traffic/run.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

examples: $(STAMP)
	$(BIN)/python examples/traffic/run.py
	$(BIN)/python examples/weather/run.py
	$(BIN)/python examples/finance/run.py

bench: $(STAMP)
	$(BIN)/python benchmarks/x86_compare.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) examples/*/out benchmarks/out
