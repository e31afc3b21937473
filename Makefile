# Set-up and entry points. `make test` and `make demo` create .venv when missing, install
# torch 2.13.0 (CPU build) first, then the project pinned by constraints.txt. `make test` also
# installs Chromium (Debian package, for tests/test_browser.py) when it is missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install chromium test test-fast lint demo ui bench clean-state

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

chromium:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: lint chromium
	$(BIN)/pytest

# the tests that need no database (pure functions), in well under a minute
test-fast: lint
	$(BIN)/pytest --fast

demo: $(STAMP)
	$(BIN)/recon demo

ui: $(STAMP)
	$(BIN)/recon ui

clean-state:
	-$(BIN)/recon db down
	rm -rf .recon
