#!/usr/bin/env bash
# The main job on the embedded default: the built-in simulated fleet and an SQLite file, both under .demo/.
# Validates the example manifests, applies them, shows that a second diff has nothing to do, lists the VMs.
# Run it again and it converges from wherever it is (delete .demo/ to start from nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
demo="$PWD/.demo"
mkdir -p "$demo"
printf 'state_dir: %s\n' "$demo" > "$demo/config.yaml"
export NEBCTL_DB="sqlite:///$demo/nebctl.db"
nebctl() { .venv/bin/nebctl --config "$demo/config.yaml" "$@"; }

if [ -t 1 ]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=''; plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

# The demo's database follows the checkout: one that an older checkout's run left in .demo/ is upgraded first.
nebctl db upgrade >/dev/null

step "nebctl validate -f manifests/examples/"
nebctl validate -f manifests/examples/

step "nebctl apply -f manifests/examples/ --yes"
nebctl apply -f manifests/examples/ --yes

step "nebctl diff -f manifests/examples/   (nothing left to do: exit 0)"
nebctl diff -f manifests/examples/

step "nebctl get vm"
nebctl get vm

step "nebctl hosts   (capacity, allocation and usage, from the probes of apply and diff)"
nebctl hosts

printf '\nThe simulated fleet and the database are in %s. Try:\n' "$demo"
printf '  export NEBCTL_DB=%s\n' "$NEBCTL_DB"
printf '  .venv/bin/nebctl --config %s sim stop-vm web-1    # drift behind nebctl'"'"'s back\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s diff -f manifests/examples/\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s get vm             # the drift the diff observed, beside the record\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s describe vm/web-1\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s serve -f manifests/examples/ --stack examples   # keep it converged (Ctrl-C stops)\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl user add admin --group ops && .venv/bin/nebctl acl add allow --group ops --action get --action diff --action apply --action admin\n'
printf '                                                  # a user of the dashboard that serve shows at http://127.0.0.1:8470/\n'
