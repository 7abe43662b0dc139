# footfall: `make run` runs the whole pipeline here, `make test` runs the whole suite.
# Both do all set-up on a fresh machine: virtual environment, Python packages, Kafka jars, storage format.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

# Installs come from uv.lock (every package, every extra, with hashes), so `make run`, `make test` and CI get the
# versions that were tested. uv itself is pinned by hash in deploy/requirements-uv.txt and lives in .tools/ (ignored).
# After a change to pyproject.toml's dependencies: `make lock` (keeps every other pin). To move to newer releases:
# `make lock-upgrade`. Commit uv.lock with the change.
UV_VERSION := 0.13.9
TOOLS  := .tools
UV     := $(TOOLS)/uv/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: help install lock lock-upgrade lock-uv validate-deploy dashboard kafka web browser run lint test test-unit test-integration test-faults broker-start broker-stop clean bench bench-processors bench-projector bench-report

help:
	@echo "make run    - the whole pipeline on this machine (broker included); Ctrl-C stops it all"
	@echo "make test   - lint and types (make lint), then the whole suite against a real Kafka broker and ClickHouse (chdb)"
	@echo "make lint   - ruff check, ruff format --check and mypy (strict on schemas/ and the pure cores)"
	@echo "make test-faults - the full fault suite: kill -9 every stage and restart the broker under load, several seeds"
	@echo "make bench  - every benchmark; writes bench/results/*.json and regenerates BENCHMARKS.md"
	@echo "make validate-deploy - check compose, the Helm chart, alert rules (promtool) and the dashboard (part of make test)"
	@echo "make lock   - update uv.lock after a change to pyproject.toml's dependencies (other pins kept)"
	@echo "make lock-upgrade - move every locked package to its newest release"
	@echo "make clean  - remove the virtual environment, broker state and local data"

$(UV): deploy/requirements-uv.txt
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet --require-hashes -r deploy/requirements-uv.txt
	touch $(UV)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --python $(PYTHON) || \
	  { echo "make: if uv said the lockfile needs to be updated, pyproject.toml changed: run 'make lock', commit uv.lock" >&2; exit 1; }
	touch $(STAMP)

lock: | $(UV)
	$(UV) lock --python $(PYTHON)

# After changing UV_VERSION: pins uv by hash for every platform it ships wheels for.
lock-uv:
	test -x $(UV) || { $(PYTHON) -m venv $(TOOLS)/uv && $(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION); }
	echo "uv==$(UV_VERSION)" | $(UV) pip compile - --generate-hashes --python-version 3.11 --no-header -q -o deploy/requirements-uv.txt

lock-upgrade: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

install: $(STAMP) kafka web

# Front-end assets from npm (web/package-lock.json): the console's CSS, htmx and Chart.js, and analytics-next's
# standalone bundle that the collector serves. footfall serves them itself; nothing is loaded from a CDN.
WEB_STAMP := web/node_modules/.installed-stamp
$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web: $(WEB_STAMP)

# The browser the console's tests drive: Debian's chromium (Playwright's own browser downloads are not used).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

kafka:
	deploy/kafka.sh fetch

run: install
	$(BIN)/footfall run

# Lint and types, before every test run: `make test` fails on a lint, format or type error.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint browser validate-deploy
	$(BIN)/pytest $(PYTEST_ARGS)

# Dockerfile-free checks of deploy/: compose against the compose spec, the Helm chart (lint, kubeconform with the
# Kubernetes and KEDA schemas), alert rules and their unit tests (promtool), the Grafana dashboard. The tools are
# built once into .tools/ by deploy/validate/tools.sh (Go module proxy); later runs take seconds.
validate-deploy: install
	deploy/validate/tools.sh
	deploy/validate/run.sh

# Regenerates deploy/helm/footfall/files/dashboards/footfall.json from deploy/monitoring/dashboard.py.
dashboard: install
	$(BIN)/python deploy/monitoring/dashboard.py

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install browser
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The fault suite of issue 8: the compact scenarios and the scale-out that `make test` runs too, plus five seeds x
# every fault (about 10 minutes in all). Each run appends to bench/results/faults.jsonl.
test-faults: install
	$(BIN)/pytest tests/faults -m "faults or integration" -s $(PYTEST_ARGS)

broker-start: kafka
	deploy/kafka.sh start

broker-stop:
	deploy/kafka.sh stop

clean:
	-deploy/kafka.sh stop
	rm -rf $(VENV) $(TOOLS) deploy/.kafka .footfall

# The collector's throughput against a null ASGI app (uvicorn, one worker pinned to CPU 0, wrk on CPU 1);
# starts its own broker unless KAFKA_BOOTSTRAP_SERVERS is set; writes bench/results/collector.json.
.PHONY: bench-collector
bench-collector: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.collector $(BENCH_ARGS)

bench-processors: install
	$(BIN)/python -m bench.processors $(BENCH_ARGS)

bench-projector: install
	$(BIN)/python -m bench.projector $(BENCH_ARGS)

# Deciding profile changes against the fold, and webhook deliveries against plain httpx posts; writes bench/results/webhooks.json.
.PHONY: bench-webhooks
bench-webhooks: install
	$(BIN)/python -m bench.webhooks $(BENCH_ARGS)

# The whole pipeline under stepped load, scaling 1 → 2 workers and a rebalance; writes bench/results/system.json + PNGs.
.PHONY: bench-system
bench-system: install
	$(BIN)/python -m bench.system $(BENCH_ARGS)

# CSV import rows/s against a plain csv read of the same file; writes bench/results/imports.json.
.PHONY: bench-imports
bench-imports: install
	$(BIN)/python -m bench.imports $(BENCH_ARGS)

# Dynamic configs: evaluation time for 50 configs, and POST /v1/configs against /v1/track on one worker; bench/results/configs.json.
.PHONY: bench-configs
bench-configs: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.configs $(BENCH_ARGS)

# Segment evaluation cost per segment shape against reading every person's id; writes bench/results/segments.json.
.PHONY: bench-segments
bench-segments: install
	$(BIN)/python -m bench.segments $(BENCH_ARGS)

# The console's pages over 1,000,000 persons and 10,000,000 events (generated in ClickHouse); writes bench/results/console.json.
.PHONY: bench-console
bench-console: install
	$(BIN)/python -m bench.console $(BENCH_ARGS)

# The management API: writes/s and p99, write-to-readable p50/p99, GET /api/v1/users over 1,000,000 persons; bench/results/api.json.
.PHONY: bench-api
bench-api: install
	$(BIN)/python -m bench.api $(BENCH_ARGS)

bench-report: install
	$(BIN)/python -m bench.report

bench: bench-collector bench-processors bench-projector bench-system bench-imports bench-configs bench-console bench-api bench-segments bench-webhooks
	$(BIN)/python -m bench.report
