# One-command set-up and checks. `make test` and `make demo` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-core
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test test-slow demo bench apt setup

# Debian packages listed in packages.apt: installed when missing (as root), else the command to run.
apt:
	@missing=$$(grep -v '^#' packages.apt | while read -r pkg; do \
	  [ -z "$$pkg" ] || dpkg -s "$$pkg" >/dev/null 2>&1 || echo "$$pkg"; done | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages; run as root:"; \
	    echo "  apt-get install -y --no-install-recommends $$missing"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[librispeech,dev,qwix]'
	touch $@

setup: apt $(STAMP)

# Two tiers: `make test` all but the tests marked slow (8 min 54 s on 2 idle cores); `make test-slow`
# those (the end-to-end ones: training runs, the recipes and README commands, the demo).
test: setup
	$(PY) -m pytest -q -ra -n auto -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -ra -n auto -m slow

demo: setup
	$(PY) scripts/demo.py

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[librispeech,dev,qwix,bench]'
	touch $@

bench: setup $(BENCH_STAMP)
	$(PY) benchmarks/quantizer.py
	$(PY) benchmarks/transducer_loss.py
	$(PY) benchmarks/synth.py
