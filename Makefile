.PHONY: help install serve test lint

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv with the gateway and its development tools
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'

serve:  ## run the gateway (embedded PostgreSQL unless GATEWAY_DATABASE_URL is set)
	.venv/bin/gateway serve

test:  ## the whole suite, on the embedded PostgreSQL and on 127.0.0.1:5432 when reachable
	./scripts/test

lint:  ## ruff and mypy --strict
	.venv/bin/ruff check . && .venv/bin/ruff format --check gateway legacy_routes async_routes shared_models && .venv/bin/mypy
