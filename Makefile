.PHONY: help install serve test lint screenshot

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv with the gateway, the demo's extras and the development tools
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'

serve:  ## serve the demo (embedded PostgreSQL unless GATEWAY_DATABASE_URL is set)
	.venv/bin/gateway serve

test:  ## the whole suite, on the embedded PostgreSQL and on 127.0.0.1:5432 when reachable
	./scripts/test

lint:  ## ruff, mypy --strict and the import contracts
	.venv/bin/ruff check . && .venv/bin/ruff format --check gateway demo legacy_routes async_routes shared_models && .venv/bin/mypy && .venv/bin/lint-imports

screenshot:  ## the console's overview, taken in headless Chromium by its test, as docs/console.png
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pytest -q tests/test_console.py -k screenshot && cp test-artifacts/console/overview.png docs/console.png
