# The two commands a new user runs: `make demo` and `make test`.
# Both create the virtual environment and install what they need on a machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit bench clean-var clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chargeledger demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the domain, the codec and the layout's rules alone: no server started, well under 30 s
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/pile_link.py
	$(BIN)/python bench/projections.py
	$(BIN)/python bench/driver_flow.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/login_flood.py
	$(BIN)/python bench/interconnect.py

clean-var:
	rm -rf var/

clean: clean-var
	rm -rf $(VENV) *.egg-info
