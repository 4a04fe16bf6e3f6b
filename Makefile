# One place for the commands people and CI run.
SHELL := /bin/bash
VENV := $(shell bash deploy/bootstrap.sh)
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-unit lint format check schemas kafka-start kafka-stop bench

install:  ## create the environment (done by every target on first use)
	@echo "environment: $(VENV)"

demo:  ## start Kafka, Milvus Lite, worker and API; replay shoppers; show personalization
	$(VENV)/bin/streamrec demo

test:  ## the whole test suite: unit tests and integration tests on the real broker
	$(PY) -m pytest -rP tests streamrec streams encoders ranker online_learning

test-unit:  ## unit tests only (no broker)
	$(PY) -m pytest -m "not integration and not chaos" tests/unit streamrec streams encoders ranker online_learning

lint:  ## formatting, lint and strict typing
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test  ## what CI runs

bench:  ## the stream worker on the real broker: ingest vs a bare consumer, freshness, restarts, memory (bench/results/)
	$(PY) bench/stream.py $(BENCH_ARGS)

schemas:  ## regenerate the published JSON Schemas of the events
	$(VENV)/bin/streamrec schemas --out streams/schemas

kafka-start:  ## a local broker on 127.0.0.1:9092 for development
	bash deploy/kafka/kafka-local.sh start

kafka-stop:
	bash deploy/kafka/kafka-local.sh stop

.PHONY: dashboard test-ops

dashboard:  ## regenerate deploy/grafana/streamrec.json from deploy/grafana/dashboard.py
	$(PY) deploy/grafana/dashboard.py

test-ops:  ## dashboard, alert rules (promtool check/test) and Helm chart (lint, render, schemas); no broker
	$(PY) -m pytest tests/ops
