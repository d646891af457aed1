# Two entry points for a fresh machine:
#   make demo   - the base install (no PyTorch) into .venv, then the main job (embed, verify, identify)
#   make test   - the full install (PyTorch and every extra) with test tools, then lint, types, tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/faces/gallery
CHECKED := src tests benchmarks

.PHONY: demo test test-latest lock install install-test browser lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Locked versions (requirements/lock.txt, made by `make lock`) so that every fresh machine,
# CI included, installs the same set; pyproject.toml's own ranges stay open for users.
LOCK := requirements/lock.txt
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c $(LOCK)

# The base install: dlib's network and detectors on ONNX Runtime, galleries, the service.
install: $(BIN)/python
	$(PIP_INSTALL) -e .

# Everything: PyTorch (training, timm backbones, GPUs), plots, PostgreSQL, and the test tools.
install-test: $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'

demo: install
	FACEVERIFY=$(BIN)/faceverify scripts/demo.sh $(IMAGES)

lint:
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

# The web page's tests drive Debian's Chromium (Playwright cannot download browsers here).
# Installed where this can be done (root with apt-get); elsewhere those tests skip, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: the page tests will skip (apt-get install chromium)"; fi; }

test: install-test browser lint
	$(BIN)/pytest

# The same suite against the newest releases pyproject.toml's ranges allow, in its own venv:
# upstream breakage shows up here first, without blocking a landing (not part of `make test`).
LATEST_VENV := .venv-latest
test-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST_VENV)/bin/pip freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/pytest -p no:cacheprovider

# Regenerate the lock from pyproject.toml's ranges and requirements/constraints.in (uv resolves
# from package metadata alone: seconds, no multi-GB download). Commit the result.
lock: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check 'uv>=0.5'
	$(BIN)/uv pip compile --quiet pyproject.toml --all-extras --constraint requirements/constraints.in \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --no-header --annotation-style line --output-file $(LOCK)

bench: install-test
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) out .pytest_cache .mypy_cache .ruff_cache
