# Two entry points for a fresh machine:
#   make demo   - install into .venv and run the main job (embed a folder, verify pairs)
#   make test   - install with test tools into .venv and run lint, types and the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/faces/gallery
CHECKED := src tests benchmarks

.PHONY: demo test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	FACEVERIFY=$(BIN)/faceverify scripts/demo.sh $(IMAGES)

lint:
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

test: install-test lint
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
