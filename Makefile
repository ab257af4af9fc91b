.PHONY: demo test bench venv

# Everything runs in a project virtual environment (stock Debian's python3 refuses system-wide pip installs).
# VENV can point elsewhere: .ci/run builds a fresh one in a temporary folder on every run.
VENV ?= .venv
PYTHON3 ?= python3
PY := $(VENV)/bin/python

# requirements-test.txt = the runtime (requirements.txt) + what the tests and benchmarks import.
# Stock Debian ships `python3 -m venv` in the python3-venv package: installed here when run as root, else explained.
$(VENV)/.installed: requirements.txt requirements-test.txt
	@$(PYTHON3) -m venv $(VENV) >/dev/null 2>&1 || { \
	  [ -f $(VENV)/pyvenv.cfg ] && rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "python3 -m venv failed: installing python3-venv (apt-get)"; \
	    (apt-get update -qq && apt-get install -y -qq python3-venv) >/tmp/dosereg-apt-venv.log 2>&1 \
	      || { echo "apt-get install python3-venv failed (see /tmp/dosereg-apt-venv.log)"; exit 1; }; \
	    $(PYTHON3) -m venv $(VENV); \
	  else \
	    echo "'$(PYTHON3) -m venv $(VENV)' failed. On Debian/Ubuntu install the venv module first:"; \
	    echo "    sudo apt-get install python3-venv"; \
	    echo "then run make again (or point PYTHON3= at another Python 3.11)."; \
	    exit 1; \
	  fi; }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
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
