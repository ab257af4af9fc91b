.PHONY: demo test bench venv

# Everything runs in a project virtual environment (stock Debian's python3 refuses system-wide pip installs).
# VENV can point elsewhere: .ci/run builds a fresh one in a temporary folder on every run.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# Start the whole system (listener, web, worker) with demo data: http://127.0.0.1:8000
demo: $(VENV)/.installed
	$(PY) manage.py demo

# Run the whole test suite (what CI runs)
test: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/test.sh -q

bench: $(VENV)/.installed
	$(PY) bench/run.py
