# lyapcert: `make demo` sets everything up on a fresh machine and runs the demo;
# `make test` runs the whole test suite (slow soundness tier included).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu: PyTorch's CPU wheels (on a machine whose
# package index would otherwise give a CUDA build); empty: the configured index
TORCH_INDEX ?=
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-fast lint bench clean browser

setup: $(STAMP)

# The CPU build of PyTorch is installed first (a plain `pip install torch` pulls a multi-GB CUDA
# build); pyproject's range `torch>=2.4,<3` is then already satisfied. A torch the environment
# already has (a venv made with --system-site-packages, or installed by hand) is kept.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else $(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"; fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/lyapcert bench --systems vanderpol,pendulum --methods quadratic,sos,neural-roa \
		--out lyapcert-demo --workers 2
	$(BIN)/lyapcert report lyapcert-demo
	@echo "report: $(CURDIR)/lyapcert-demo/report.html"

# Best effort: Debian's chromium for the headless test of the report (skipped without it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium \
	    || echo "chromium not installed: the headless report test will be skipped"; \
	  else echo "no apt-get: install chromium yourself; the headless report test will be skipped"; fi; }

test: setup browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

test-fast: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/roa_speed.py

clean:
	rm -rf $(VENV) lyapcert-out .pytest_cache .ruff_cache
