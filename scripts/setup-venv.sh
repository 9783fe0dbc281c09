#!/usr/bin/env bash
# Creates the virtual environment and installs nebctl (editable) with its extras.
# libvirt-python is installed only when libvirt's headers are present (make setup-system installs them), so that
# `make run` works on a machine without libvirt: the demo uses the built-in simulated fleet.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
extras="dev,mysql,postgresql,ec2"
if pkg-config --exists libvirt 2>/dev/null; then
  extras="$extras,libvirt"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -e ".[$extras]"
echo "nebctl installed in $venv (extras: $extras)"
