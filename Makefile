# Set-up and entry points. `make test` and `make demo` create .venv when missing, install
# torch 2.13.0 (CPU build) first, then the project pinned by constraints.txt (with pyspark, for
# the `spark` linkage engine). `make test` also installs Chromium (for tests/test_browser.py)
# and a Java runtime (for tests/test_spark_engine.py), Debian packages, when they are missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install chromium java test test-fast lint demo ui bench clean-state

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

chromium:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

java:
	command -v java >/dev/null || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless)

test: lint chromium java
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
