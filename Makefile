# Two commands on a fresh machine with Python 3.11 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m redesdl.demo

test: $(BIN)/.installed
	$(BIN)/python -m ruff check redesdl tests benchmarks twisted
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/vs_aria2c.py

clean:
	rm -rf $(VENV) build *.egg-info demo-run bench-run
