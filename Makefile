# live-viewer-profiles — the two commands a newcomer needs:
#   make up     set up, then run the whole stack on embedded defaults (broker, DynamoDB, services)
#   make test   set up (incl. Chromium and the AWS CLI from Debian), then run every test
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
SUDO     := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup setup-system up test test-fast lint checkov bench clean compose-env

setup: $(VENV)/.installed node_modules/.installed tracker-frontend/dist/index.html

# The modules setup.py compiles with mypyc (lvp/compiled.py): an edit of one builds them again.
COMPILED_SRC := $(shell $(PY) lvp/compiled.py)

$(VENV)/.installed: pyproject.toml setup.py lvp/compiled.py $(COMPILED_SRC)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

tracker-frontend/dist/index.html: $(wildcard tracker-frontend/src/*) tracker-frontend/package-lock.json
	@if [ -f tracker-frontend/package.json ]; then \
	  cd tracker-frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build; \
	else mkdir -p tracker-frontend/dist && touch $@; fi

# Debian packages the tests need: Chromium (browser tests), Java (DynamoDB Local), AWS CLI.
setup-system:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/java ] || [ ! -x /usr/bin/aws ] || [ ! -x /usr/bin/valgrind ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium fonts-dejavu-core default-jre-headless awscli valgrind >/dev/null; \
	fi

up: setup
	LVP_DEV=$${LVP_DEV:-1} $(BIN)/lvp up

test: setup setup-system
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests that need no service (no broker, DynamoDB, Chromium, server process, benchmark run):
# a check in about a minute before `make test`. tests/conftest.py marks the others `services`.
test-fast: setup
	$(BIN)/python -m pytest -m "not services" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy lvp collector profiles viewer

# Secrets of the docker compose stack (localstack/docker-compose.yml has no defaults): generated
# once into localstack/.env (mode 0600), which compose reads; an existing file is kept.
compose-env: localstack/.env

localstack/.env:
	@umask 077 && $(PY) -c 'import secrets; t = secrets.token_hex; print("\n".join(f"{k}={t(32)}" for k in ("LVP_PSEUDONYM_KEY", "LVP_API_TOKENS", "LVP_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD")))' > $@
	@echo "wrote $@ (the live page's token is LVP_API_TOKENS there)"

# terraform/ static analysis; checkov lives in its own .tools-venv (bootstrapped by the script).
checkov:
	scripts/checkov.sh

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .tools-venv node_modules tracker-frontend/node_modules tracker-frontend/dist .lvp test-output build
	find . -name '*.so' -not -path './node_modules/*' -not -path './.venv/*' -delete
