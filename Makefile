# One entry point for people and CI. `make dev` runs the local stack; `make test` runs the tests;
# `make check` is the whole quality gate (lint, format, types, template, tests).
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/layers/common:$(CURDIR)
export SAM_CLI_TELEMETRY := 0

# Every install reads a lock (`make lock` writes them from the `*.in` lists; buildtools/locks.py) and pip
# refuses any file whose hash the lock does not list.
PIP_LOCKED := -m pip install --quiet --disable-pip-version-check --require-hashes

.PHONY: help setup chromium dev test lint lock lock-check format typecheck validate check build bench smoke clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 20

setup: $(VENV)/.installed chromium ## the dev virtualenv from its lock, and Chromium for the browser tests

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here); the README's curl
# walk-through is run by a test too.
chromium:
	@{ command -v chromium && command -v curl; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium curl >/dev/null; \
	  else echo "Install Chromium and curl for the tests: sudo apt-get install chromium curl"; exit 1; fi; }

$(VENV)/.installed: requirements-dev.txt buildtools/pip.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_LOCKED) -r buildtools/pip.txt
	$(PY) $(PIP_LOCKED) -r requirements-dev.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt buildtools/pip.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python $(PIP_LOCKED) -r buildtools/pip.txt
	$(SAM_VENV)/bin/python $(PIP_LOCKED) -r requirements-sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt buildtools/pip.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python $(PIP_LOCKED) -r buildtools/pip.txt
	$(CHECKOV_VENV)/bin/python $(PIP_LOCKED) -r requirements-checkov.txt
	touch $@

# The local stack enforces template.yaml's IAM policies, expanded by SAM's translator (.venv-sam).
dev: $(VENV)/.installed $(SAM_VENV)/.installed ## run the whole service locally on 127.0.0.1 (ARGS='--port 3100 --fresh ...', CHECK_INTERVAL=2m)
	$(PY) -m devstack run $(if $(CHECK_INTERVAL),--check-interval $(CHECK_INTERVAL)) $(ARGS)

test: setup $(SAM_VENV)/.installed ## run the tests
	$(PY) -m pytest -n 2 -p no:cacheprovider

lint: setup lock-check ## the lock check, ruff lint and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# After editing a `*.in` list: resolve the locks again (versions already locked are kept where the lists
# allow them; `make lock UPGRADE=1` takes the newest allowed). Needs the package index.
lock: $(VENV)/.installed ## resolve the locks again after editing a *.in list (UPGRADE=1: newest allowed)
	$(PY) -m buildtools.locks $(if $(UPGRADE),--upgrade)

# No network: fails, naming the lock, when an input list changed without `make lock`, or when a function
# and one of its layers lock a package at two versions.
lock-check: $(VENV)/.installed ## fail when a lock is out of date with its lists (no network)
	$(PY) -m buildtools.locks --check

format: setup ## fix what ruff can fix, and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: setup ## mypy
	$(VENV)/bin/mypy

validate: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## the template: sam validate --lint, cfn-lint, checkov
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

check: lint typecheck validate test ## the whole quality gate

# What `sam deploy` ships: `sam build` (each artifact from its lock, hashes checked, arm64 wheels for
# Python 3.13) into .aws-sam/build, then the post-processing that makes it lean (bytecode for 3.13, no
# runtime-provided or duplicate packages). Needs only Python 3.13 and the SAM CLI's virtualenv (whose
# PyYAML the post-processing reads the built template with).
# The artifacts are installed by the locked pip (buildtools/pip.txt) run with Python 3.13 (LAMBDA_PIP).
build: $(SAM_VENV)/.installed ## what sam deploy ships, into .aws-sam/build (needs Python 3.13)
	@py313="$$(buildtools/find-python.sh 3.13)" && rm -rf .aws-sam/pip && \
	  "$$py313/python3.13" $(PIP_LOCKED) --target .aws-sam/pip -r buildtools/pip.txt && \
	  PATH="$$py313:$$PATH" LAMBDA_PIP="$(CURDIR)/.aws-sam/pip" $(SAM_VENV)/bin/sam build --region us-east-1 && \
	  $(SAM_VENV)/bin/python -m buildtools.postprocess .aws-sam/build --python "$$py313/python3.13"

bench: setup ## benchmarks that print figures
	$(PY) -m bench

# After a deploy: `SMOKE_TOKEN=<ID token of a test tenant> make smoke STACK=mailbox-onboarding-prod`
# (README: Deploy > Smoke test). CI runs the same script against the local stack (tests/devstack/test_smoke.py).
smoke: $(VENV)/.installed ## after a deploy: check the stack STACK=<name> works (SMOKE_TOKEN: a tenant's ID token)
	@test -n "$(STACK)" || { echo "make smoke STACK=<stack name> [REGION=<region>]"; exit 2; }
	$(PY) -m tools.smoke --stack-name $(STACK) $(if $(REGION),--region $(REGION)) $(SMOKE_ARGS)

clean: ## remove the virtualenvs, the local stack's saved state and the caches
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
