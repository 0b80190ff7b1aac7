# GenCharge: `make run` starts the service on its embedded default; `make test` runs
# every check. Both bootstrap what they need (.venv, Python packages, buf from npm).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUF    := node_modules/.bin/buf
STAMP  := $(VENV)/.installed

.PHONY: run test fuzz lint generate check-generated bench bench-backup clean help

help:
	@echo "make run       start the service on 127.0.0.1:50051 with embedded databases"
	@echo "make test      lint, check generated code, run the test suite"
	@echo "make fuzz      property-based bad-input sweep: 10,000 requests per RPC (tests/README.md)"
	@echo "make generate  regenerate generated/ from protos/"
	@echo "make lint      ruff, mypy, import layering (lint-imports), buf lint, buf format"
	@echo "make bench     recharge throughput and latency against two ceilings (bench/README.md)"
	@echo "make bench-backup  backup, verify, restore and drill of 100,000 ledger rows: time, size, server memory"
	@echo "make clean     remove the venv, node_modules (also the TypeScript SDK's), build output and local data"

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The Python client SDK (clients/python), for its tests and docs examples.
	$(BIN)/python -m pip install --quiet -e ./clients/python
	touch $(STAMP)

# buf from npm without ever writing the committed lock (a fresh clone stays clean):
# `npm ci` installs exactly what package-lock.json records (buf's binary for every
# platform is in it) and never rewrites it. An npm that finds the lock out of step
# with package.json installs the same pinned versions with `--package-lock=false`,
# which neither reads nor writes the lock.
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error \
	  || npm install --no-audit --no-fund --loglevel=error --no-save --package-lock=false
	touch $(BUF)

# --- TypeScript SDK (clients/typescript) ---------------------------------------------
# Its toolchain (tsc, prettier, protoc-gen-es for tools/generate.py) and runtime deps,
# exactly as its package-lock.json records them (`npm ci` never rewrites the lock).
TS_DIR     := clients/typescript
TS_MODULES := $(TS_DIR)/node_modules

$(TS_MODULES): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(TS_MODULES)
# --- end TypeScript SDK -----------------------------------------------------------------

run: $(STAMP)
	GENCHARGE_LOG_FORMAT=$${GENCHARGE_LOG_FORMAT:-text} $(BIN)/gencharge serve

generate: $(STAMP) $(BUF) $(TS_MODULES)
	$(BIN)/python tools/generate.py

check-generated: $(STAMP) $(BUF) $(TS_MODULES)
	$(BIN)/python tools/generate.py --check

lint: $(STAMP) $(BUF) $(TS_MODULES)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/generate.py --lint
	cd $(TS_DIR) && node_modules/.bin/tsc -p tsconfig.json --noEmit && node_modules/.bin/prettier --check .

test: lint check-generated $(TS_MODULES)
	$(BIN)/python -m pytest

# Long: every implemented RPC gets GENCHARGE_FUZZ_EXAMPLES generated requests (10,000
# unless set); the seed is printed, GENCHARGE_FUZZ_SEED replays it.
fuzz: $(STAMP)
	GENCHARGE_FUZZ_EXAMPLES=$${GENCHARGE_FUZZ_EXAMPLES:-10000} $(BIN)/python -m pytest -s -q tests/rpc/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-backup: $(STAMP)
	$(BIN)/python -m bench.backup

clean:
	rm -rf $(VENV) node_modules build .data .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(TS_MODULES) $(TS_DIR)/dist

# Where a call's server CPU goes, by area (interceptors, auth, protobuf, logging,
# SQLAlchemy, grpc core, ...): py-spy samples the server under short loads (bench/profile.py).
.PHONY: profile
profile: $(STAMP)
	$(BIN)/python -m bench.profile
