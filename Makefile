# One entry point for people and CI. `make dev` runs the local stack; `make test` runs the tests;
# `make check` is the whole quality gate (lint, format, types, template, tests).
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/layers/common:$(CURDIR)
export SAM_CLI_TELEMETRY := 0

REQUIREMENTS := requirements-dev.txt layers/common/requirements.txt layers/credentials/requirements.txt \
	functions/verify_mailbox/requirements.txt

.PHONY: setup chromium dev test lint format typecheck validate check build bench clean

setup: $(VENV)/.installed chromium

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Chromium for the browser tests: sudo apt-get install chromium"; exit 1; fi; }

$(VENV)/.installed: $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

# The local stack enforces template.yaml's IAM policies, expanded by SAM's translator (.venv-sam).
dev: $(VENV)/.installed $(SAM_VENV)/.installed
	$(PY) -m devstack run $(ARGS)

test: setup $(SAM_VENV)/.installed
	$(PY) -m pytest -n 2 -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: setup
	$(VENV)/bin/mypy

validate: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

check: lint typecheck validate test

# What `sam deploy` ships: `sam build` (Python 3.13, arm64 wheels) into .aws-sam/build, then the
# post-processing that makes it lean (bytecode for 3.13, no runtime-provided or duplicate packages).
build: $(SAM_VENV)/.installed $(VENV)/.installed
	@py313="$$(buildtools/find-python.sh 3.13)" && \
	  PATH="$$py313:$$PATH" $(SAM_VENV)/bin/sam build --region us-east-1 && \
	  $(PY) -m buildtools.postprocess .aws-sam/build --python "$$py313/python3.13"

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(SAM_VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
