# Backbone: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
JS_STAMP := tests/js/node_modules/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint fmt bench system-deps js-deps demo-data diagram clean

# Debian's python3 ships without ensurepip (package python3-venv): install it if needed.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "installing Debian package: python3-venv"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)

# `make run` needs the runtime only; `make test`/`lint`/`bench` the test and bench extras.
$(RUNTIME): pyproject.toml setup.py broker/log/_records.c | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml setup.py broker/log/_records.c | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[postgres,test,bench]'
	touch $(STAMP) $(RUNTIME)

# Debian packages the test suite uses: a PostgreSQL server, kcat, Node.js and npm,
# and Chromium for the console's browser tests (driven by Playwright, no browser download).
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The Node.js clients of the tests (kafkajs), exactly as tests/js/package-lock.json pins them.
js-deps: $(JS_STAMP)
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json | system-deps
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

# The demo database and folders the configs in configs/ expect under data/ (idempotent).
demo-data: $(RUNTIME)
	@$(BIN)/python configs/demo_data.py

run: $(RUNTIME) demo-data
	@echo "backbone is $(BIN)/backbone: '. $(BIN)/activate' puts it on PATH"
	$(BIN)/backbone run configs/quickstart.yaml

# The README's architecture picture, from docs/architecture.dot (Graphviz from Debian).
diagram: docs/architecture.svg
docs/architecture.svg: docs/architecture.dot
	@command -v dot >/dev/null 2>&1 || { echo "installing Debian package: graphviz"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq graphviz >/dev/null; }
	dot -Tsvg docs/architecture.dot -o docs/architecture.svg

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	@# import-linter reads the installed layout, which an editable install with
	@# package-dir mapping hides: check a regular install in a scratch folder.
	rm -rf build/lint-site && $(BIN)/pip install --quiet --no-deps --target build/lint-site . >/dev/null
	cd build && PYTHONPATH=lint-site ../$(BIN)/lint-imports ../pyproject.toml
	@# mypy on the same installed tree: strict for the gateway core, the SDK and the broker
	cd build && MYPYPATH=lint-site ../$(BIN)/mypy --config-file ../pyproject.toml -p backbone

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Test files run in parallel (pytest-xdist), each file whole on one worker: most tests
# wait on servers and subprocesses, so three workers overlap well on two cores.
TEST_WORKERS ?= 3
test: $(STAMP) system-deps js-deps lint
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache tests/js/node_modules
