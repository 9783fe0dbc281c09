#!/usr/bin/env bash
# The main job on the embedded default: the simulated fleet and an SQLite file, both under .demo/.
set -euo pipefail
export NEBCTL_DB="sqlite:///$PWD/.demo/nebctl.db"
mkdir -p .demo
nebctl=.venv/bin/nebctl
echo "== nebctl validate -f manifests/examples/"
"$nebctl" validate -f manifests/examples/
