#!/usr/bin/env bash
# The whole test command: ruff, mypy strict, the import layers, then pytest with warnings as errors.
set -euo pipefail
bin=.venv/bin
echo "== ruff"
"$bin/ruff" check nebctl tests bench
"$bin/ruff" format --check nebctl tests bench
echo "== mypy (strict)"
"$bin/mypy"
echo "== import layers (lint-imports)"
"$bin/lint-imports"
echo "== pytest"
"$bin/pytest" "$@"
