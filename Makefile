# Everything a fresh clone needs: `make serve` runs the server, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JS_TEST_DEPS := tests/js/node_modules/.installed
JS_DIR := client_js
JS_DEPS := $(JS_DIR)/node_modules/.installed
JS_BUNDLE := collab/static/build/collab-editor.js
JS_SOURCES := $(wildcard $(JS_DIR)/src/*.js) $(JS_DIR)/build.mjs
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data

.PHONY: install js serve cluster test test-fast lint format fuzz soak bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

$(JS_TEST_DEPS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(JS_DEPS): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(JS_BUNDLE): $(JS_DEPS) $(JS_SOURCES)
	cd $(JS_DIR) && node build.mjs

js: $(JS_BUNDLE)

serve: install js
	$(BIN)/collab serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --allowed-origins '*' 

REDIS_URL ?= redis://127.0.0.1:6379/0

# Three independent nodes on ports 8001-8003 sharing ./data and a Redis bus (Ctrl-C stops all).
cluster: install js
	trap 'kill 0' INT TERM EXIT; \
	for n in 1 2 3; do \
	  $(BIN)/collab serve --host $(HOST) --port 800$$n --data-dir $(DATA_DIR) \
	    --redis-url $(REDIS_URL) --node-id node$$n --advertise-url http://$(HOST):800$$n & \
	done; wait

test: install $(JS_TEST_DEPS) js
	$(BIN)/pytest
	node --test $(JS_DIR)/test/*.test.mjs
	node --test tests/browser/*.test.mjs

test-fast: install
	$(BIN)/pytest -m "not slow and not node"

lint: install
	$(BIN)/ruff check collab tests examples
	$(BIN)/ruff format --check collab tests examples

format: install
	$(BIN)/ruff format collab tests examples
	$(BIN)/ruff check --fix collab tests examples

# The long hostile-input run: 100,000 WebSocket frames, long-poll and API requests.
fuzz: install
	COLLAB_FUZZ_INPUTS=100000 COLLAB_FUZZ_EXAMPLES=5000 $(BIN)/pytest -p no:cacheprovider \
	  tests/integration/test_fuzz.py tests/integration/test_longpoll.py -k "fuzz" --timeout 3600

# Mixed load for SOAK_SECONDS (default 10 minutes), sampled; writes docs/reliability.md.
SOAK_SECONDS ?= 600
soak: install
	COLLAB_SOAK_SECONDS=$(SOAK_SECONDS) COLLAB_SOAK_REPORT=docs/reliability.md \
	  $(BIN)/pytest -p no:cacheprovider tests/integration/test_soak.py --timeout 7200

bench: install
	$(BIN)/collab bench report --output docs/benchmarks.md

clean:
	rm -rf $(VENV) tests/js/node_modules $(JS_DIR)/node_modules collab/static/build \
	  tests/browser/output .pytest_cache .ruff_cache
