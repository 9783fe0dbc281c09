# The two commands of a fresh machine: `make run` (the demo on the simulated fleet) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test setup setup-system lint typecheck unit bench schemas clean

run: setup                      ## set up, then run nebctl on manifests/examples/ against the simulated fleet
	@bash scripts/demo.sh

test: setup-system setup        ## set up everything (system packages too, as root), then lint, type-check, test
	@bash scripts/test.sh

setup: $(VENV)/.installed       ## the virtual environment with nebctl and its development tools

$(VENV)/.installed: pyproject.toml scripts/setup-venv.sh
	@bash scripts/setup-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

setup-system:                   ## Debian packages: libvirt, QEMU, dnsmasq, PostgreSQL, MariaDB (needs root)
	@bash scripts/setup-system.sh

lint:
	$(BIN)/ruff check nebctl tests bench
	$(BIN)/ruff format --check nebctl tests bench

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest tests/unit -q

bench: setup
	$(BIN)/python bench/run_all.py

schemas: setup                  ## regenerate the committed JSON Schemas
	$(BIN)/nebctl schema --out nebctl/schemas/json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
