# Set-up and entry points. `make test` and `make demo` create .venv when missing, install
# torch 2.13.0 (CPU build) first, then the project pinned by constraints.txt.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo ui bench clean-state

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/recon demo

ui: $(STAMP)
	$(BIN)/recon ui

clean-state:
	-$(BIN)/recon db down
	rm -rf .recon
