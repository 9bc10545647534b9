# The two commands a new user runs: `make demo` and `make test`.
# Both create the virtual environment and install what they need on a machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit browser vendor bench clean-var clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chargeledger demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# the browser tests' Chromium and a CJK font, from Debian (never `playwright install`: nothing but apt and PyPI)
browser:
	@command -v chromium >/dev/null 2>&1 && dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || \
		(apt-get update && apt-get install -y chromium fonts-wqy-microhei)

# refresh the console's vendored browser libraries from adapters/web/vendor/package-lock.json (needs Node;
# nothing else does): npm ci --ignore-scripts in a temporary folder, minified files and licences copied
vendor:
	sh adapters/web/vendor/vendor.sh

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
	$(BIN)/python bench/console_orders.py
	$(BIN)/python bench/console_screen.py
	$(BIN)/python bench/interconnect.py
	$(BIN)/python bench/cluster.py

clean-var:
	rm -rf var/

clean: clean-var
	rm -rf $(VENV) *.egg-info
