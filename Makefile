# The two README commands: `make demo` and `make test`. Both create the
# virtual environment and install driftline on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench infra-up infra-down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,rocksdb,test]'
	touch $@

## demo: set up, start the embedded Kafka and Elasticsearch, run driftline's job on them
demo: $(VENV)/.installed
	$(BIN)/driftline demo

## test: the whole suite; integration tests start their own servers (or use DRIFTLINE_KAFKA_BOOTSTRAP / DRIFTLINE_ES_URL)
test: $(VENV)/.installed
	$(BIN)/python -m pytest

## bench: the producer benchmark (caller latency and throughput vs the bare encode+produce floor)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/producer_latency.py

infra-up: $(VENV)/.installed
	$(BIN)/driftline infra up

infra-down: $(VENV)/.installed
	$(BIN)/driftline infra down

clean:
	-$(BIN)/driftline infra down
	rm -rf $(VENV) .driftline *.egg-info
