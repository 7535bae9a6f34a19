# Set-up is part of every target: a fresh machine needs nothing but python3.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: the local CPU wheel. GPU machines: put your CUDA torch into .venv first
# (any torch already importable there is kept), or run `make TORCH=torch`.
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench schema
demo: $(VENV)/.installed
	$(BIN)/cycleseg sweep search_spaces/demo.yaml

test: $(VENV)/.installed
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py --threads 1 --markdown --with-ray-overhead

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

schema: $(VENV)/.installed
	$(BIN)/python -c "from cycleseg.sweep.planning.space import schema_json; print(schema_json(), end='')" > search_spaces/schema.json
	$(BIN)/python -c "from cycleseg.model.config import fields_markdown; print(fields_markdown(), end='')" > docs/config.md
