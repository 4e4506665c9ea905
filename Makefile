# Two commands: `make run` serves the whole platform, `make test` runs the tests.
# Both need only Python 3.11; everything else is installed into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint deploy-lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	PORT=$(PORT) $(BIN)/python -m devstack.stack run

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The infrastructure template (deploy/wharf.yaml) through cfn-lint and checkov. checkov pins boto3
# and networkx below what Wharf and cfn-lint need, so it has a venv of its own in var/.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := var/checkov
$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

deploy-lint: $(VENV)/.installed $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	$(BIN)/cfn-lint deploy/wharf.yaml
	$(CHECKOV_VENV)/bin/checkov --file deploy/wharf.yaml --framework cloudformation --quiet --compact --skip-download

bench: $(VENV)/.installed
	$(BIN)/python -m bench $(NAME)

clean:
	rm -rf $(VENV) var
