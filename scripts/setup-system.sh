#!/usr/bin/env bash
# Installs the Debian packages the full test suite needs: libvirt with QEMU/KVM and dnsmasq (real VMs and
# networks), PostgreSQL and MariaDB (the database tests), genisoimage (cloud-init NoCloud ISOs), curl (the
# reference of bench/images.py), chromium and chromium-driver (the dashboard's browser tests, through Selenium).
# Needs root; skips quietly what is already installed. The daemons are started by the test harness itself.
set -euo pipefail
packages=(make pkg-config libvirt-dev libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils
          dnsmasq-base postgresql mariadb-server genisoimage curl chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: missing packages ${missing[*]}; run 'sudo make setup-system' (tests needing them will fail in CI)" >&2
  exit 0
fi
echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the database services on install where it can; the tests run their own on loopback.
