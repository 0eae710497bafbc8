# Set-up and main entry points. Each target creates .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check venv clean data

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian, where apt is available and we are root (optional: loaders fall back).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || echo "dataset-fashion-mnist not installed; loaders fall back to the Keras cache"; fi

run: $(STAMP) data
	$(VENV)/bin/kerasnets-run $(RUN_FLAGS)

# One pytest run per test package: a single process over the whole suite accumulates
# converter and interpreter state, and once died in a native crash (SIGSEGV) inside the
# TFLite converter late in the run (CI, 2026-11-30) on a test that passes alone and in reruns.
# Each run spreads its test files over two worker processes (pytest-xdist; a file's tests stay
# together, so class fixtures and shared caches keep working), one per core of the build machine.
# Every package still runs; the target fails when any of them fails.
XDIST := -n 2 --dist loadfile
test: $(STAMP) data
	@status=0; for pkg in $$(dirname tests/*/__init__.py); do \
	  echo "== pytest $$pkg"; $(PY) -m pytest -q $(XDIST) --durations=25 $$pkg || status=1; done; exit $$status

# The fast tier: every module, no test marked slow (under 5 minutes on 2 cores).
check: $(STAMP) data
	$(PY) -m pytest -q $(XDIST) -m "not slow" -p no:cacheprovider tests

clean:
	rm -rf $(VENV) build dist *.egg-info
