# The two commands of a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Airflow in a virtualenv of its own (its pins clash with ours): tests/test_airflow.py reads
# connsync's Secrets Manager records with it. Made once; remade when the pins change.
AIRFLOW_VENV ?= .venv-airflow

.PHONY: demo demo-clean local-aws test lint bench faults clean browser

# One virtualenv, .venv, made on first use and brought up to date when pyproject.toml changes.
# The demo installs only what it runs (the 'demo' extra); the tests install the 'test' extra.
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/.installed: pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(BIN)/.installed-demo

$(BIN)/.installed-demo: pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
	touch $@

$(AIRFLOW_VENV)/bin/.installed: tests/airflow/requirements.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/airflow/requirements.txt
	touch $@

demo: $(BIN)/.installed-demo  ## the main job end to end, against a local moto AWS and the embedded store
	$(BIN)/python scripts/demo.py $(if $(KEEP),--keep)

demo-clean:  ## remove what 'make demo KEEP=1' (or an interrupted demo) left in the temp directory
	rm -rf "$${TMPDIR:-/tmp}"/connsync-demo-*

local-aws: $(BIN)/.installed-demo  ## a local AWS (moto) for the Quick start; prints what to export
	$(BIN)/python scripts/local_aws.py $(if $(PORT),--port $(PORT))

test: $(BIN)/.installed browser $(AIRFLOW_VENV)/bin/.installed  ## the whole suite (sops, age keys, moto, SQLite, Chromium, Airflow)
	$(BIN)/python -m pytest -q

# The report's browser test drives Debian's chromium through Playwright (whose own browser
# download is not used). Nothing to do when chromium is already there.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		echo "Installing Debian's chromium for the report's browser test (apt-get)"; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

bench: $(BIN)/.installed  ## figures next to check-jsonschema and the sops binary
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/awssm.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/verify.py --provider azure
	$(BIN)/python bench/verify.py --provider gcp
	$(BIN)/python bench/faults.py $(FAULTS_ARGS)
	$(BIN)/python bench/report.py

faults: $(BIN)/.installed  ## faults injected into PostgreSQL, Secrets Manager (moto), OpenBao and SQLite mid-apply
	$(BIN)/python bench/faults.py $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .connsync build dist src/*.egg-info
