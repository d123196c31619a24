# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit emulator-check browser seed serve bench clean node console console-build deploy-prep test-exec

$(STAMP): requirements-dev.txt functions/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# The console (TypeScript, Firebase JS SDK, uPlot) and firebase-tools, pinned by package-lock.json.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: Node.js 20+ with npm is needed for the console and firebase-tools (apt-get install nodejs npm)"; exit 3; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

node: $(NODE_STAMP)

console/dist/app.js: $(NODE_STAMP) $(wildcard console/src/*.ts) $(wildcard console/static/*) console/tsconfig.json
	npm run --silent typecheck
	npm run --silent build

console-build: console/dist/app.js

# The demo's data on the Firebase emulator suite, with the console, until Ctrl-C.
console: $(STAMP) emulator-check console-build
	$(PY) scripts/demo.py --keep

# What `firebase deploy` needs before it reads the functions (firebase.json's predeploy hooks run these):
# firebase-tools looks for the functions' Python in functions/venv, a link to .venv.
deploy-prep: $(STAMP)
	@test -e functions/venv || ln -s ../.venv functions/venv

# The emulator tests inside `firebase emulators:exec` (the suite's Firestore, with firestore.rules), as a
# Firebase developer runs tests; `make test` starts its own emulator instead, which is faster.
test-exec: $(STAMP) emulator-check console-build
	$(PY) scripts/suite.py exec --free-ports -- sh -c 'OPSLOOP_TEST_EMULATOR=$$FIRESTORE_EMULATOR_HOST $(PY) -m pytest -q tests/emulator'

emulator-check: $(STAMP)
	@$(PY) scripts/emulator.py check >/dev/null

demo: $(STAMP) emulator-check console-build
	$(PY) scripts/demo.py $(if $(KEEP),--keep)

# Headless Chromium for the report's rendering test (Debian's package; root or sudo installs it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report rendering test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || { echo "error: could not install chromium (apt-get install chromium)"; exit 3; }; }

test: $(STAMP) emulator-check browser console-build lint typecheck
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check functions scripts tests

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP) emulator-check
	$(PY) bench/perf.py --sizes 10000 30000 100000
	$(PY) bench/quantiles.py
	$(PY) bench/rollout_sim.py
	$(PY) bench/canary_sim.py
	$(PY) bench/load_test.py
	$(PY) bench/tuning_sim.py
	for w in degrades improves recovers drift3; do \
	  $(PY) bench/tuning_sim.py --windows 24h --steps-per-hour 4 --world $$w --out bench/results/tuning_sim_$$w.json || exit 1; \
	done
	$(PY) bench/autoscaler_sim.py
	$(PY) bench/export_mem.py
	$(PY) bench/feedback_cost.py
	$(PY) bench/whatif_speed.py
	$(PY) bench/backfill_speed.py
	$(PY) bench/feedback_http.py
	$(PY) bench/quality_sim.py
	$(PY) bench/propagation.py
	$(PY) bench/quiet_components.py
	$(PY) bench/shards.py  # 100k backlog, K = 1, 2, 4: ~40 min

unit: $(STAMP)
	$(PY) -m pytest tests/unit

seed: $(STAMP)
	$(PY) scripts/seed.py $(if $(EMULATOR),--emulator $(EMULATOR))

serve: $(STAMP)
	PYTHONPATH=functions $(PY) scripts/serve.py

clean:
	rm -rf $(VENV) .emulator-logs .pytest_cache .mypy_cache .ruff_cache node_modules console/dist .emulators
