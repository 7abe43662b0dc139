# footfall: `make run` runs the whole pipeline here, `make test` runs the whole suite.
# Both do all set-up on a fresh machine: virtual environment, Python packages, Kafka jars, storage format.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install kafka run test test-unit test-integration test-faults broker-start broker-stop clean bench bench-processors bench-projector bench-report

help:
	@echo "make run    - the whole pipeline on this machine (broker included); Ctrl-C stops it all"
	@echo "make test   - the whole suite against a real Kafka broker and ClickHouse (chdb)"
	@echo "make test-faults - the full fault suite: kill -9 every stage and restart the broker under load, several seeds"
	@echo "make bench  - every benchmark; writes bench/results/*.json and regenerates BENCHMARKS.md"
	@echo "make clean  - remove the virtual environment, broker state and local data"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP) kafka

kafka:
	deploy/kafka.sh fetch

run: install
	$(BIN)/footfall run

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install
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
	rm -rf $(VENV) deploy/.kafka .footfall

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

# The whole pipeline under stepped load, scaling 1 → 2 workers and a rebalance; writes bench/results/system.json + PNGs.
.PHONY: bench-system
bench-system: install
	$(BIN)/python -m bench.system $(BENCH_ARGS)

# CSV import rows/s against a plain csv read of the same file; writes bench/results/imports.json.
.PHONY: bench-imports
bench-imports: install
	$(BIN)/python -m bench.imports $(BENCH_ARGS)

bench-report: install
	$(BIN)/python -m bench.report

bench: bench-collector bench-processors bench-projector bench-system bench-imports
	$(BIN)/python -m bench.report
