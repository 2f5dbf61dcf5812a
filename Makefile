# The two commands of a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## the main job end to end, against a local moto AWS and the embedded store
	$(BIN)/python scripts/demo.py

test: $(BIN)/.installed  ## the whole test suite (real sops, real age keys, moto, SQLite)
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

bench: $(BIN)/.installed  ## figures next to check-jsonschema and the sops binary
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/verify.py --provider azure
	$(BIN)/python bench/verify.py --provider gcp

clean:
	rm -rf $(VENV) .connsync build dist src/*.egg-info
