# The two commands of a fresh machine: `make run` (the demo on the simulated fleet) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run run-libvirt test setup setup-system test-image lint typecheck unit bench schemas clean

run: setup                      ## set up, then run nebctl on manifests/examples/ against the simulated fleet
	@bash scripts/demo.sh

run-libvirt: setup              ## as root: libvirtd (throwaway machines only), the images, then apply examples-libvirt/
	@bash scripts/run-libvirt.sh

test: setup-system setup test-image  ## set up everything (system packages and the guest image too, as root), then test
	@bash scripts/test.sh

setup: $(VENV)/.installed       ## the virtual environment with nebctl and its development tools

$(VENV)/.installed: pyproject.toml scripts/setup-venv.sh
	@bash scripts/setup-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

setup-system:                   ## Debian packages: libvirt, QEMU, dnsmasq, PostgreSQL, MariaDB (needs root)
	@bash scripts/setup-system.sh

test-image:                     ## the Debian guest image of the real-guest tests (needs root; built once, cached)
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/build-test-image.sh >/dev/null; \
	 else echo "test-image: not root; run 'sudo make test-image' (the real-guest tests will fail in CI)" >&2; fi

lint:
	$(BIN)/ruff check nebctl tests bench examples
	$(BIN)/ruff format --check nebctl tests bench examples
	$(BIN)/lint-imports

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
