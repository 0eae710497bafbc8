# Set-up and main entry points. Each target creates .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv clean data

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

test: $(STAMP) data
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build dist *.egg-info
