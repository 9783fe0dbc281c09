#!/usr/bin/env bash
# Sets up what the libvirt example manifests need on THIS machine, then applies manifests/examples-libvirt/:
#   - the Debian packages (libvirt, QEMU, dnsmasq; scripts/setup-system.sh);
#   - a libvirtd with virtlogd serving qemu:///system. Where none runs, it starts them (there may be no
#     systemd) after adding user = "root" to /etc/libvirt/qemu.conf, so QEMU can open /dev/kvm: that weakens
#     the host's isolation of its guests, so it does so ONLY on a throwaway machine, one marked with
#     NEBCTL_TEST_THROWAWAY=1 (or CI=true); elsewhere it stops and says what to do;
#   - the blank base image of manifests/examples-libvirt/ (/var/tmp/nebctl-examples/base.qcow2);
#   - the Debian guest image of manifests/examples-guests/ (scripts/build-test-image.sh, cached).
# State and the SQLite database go under .demo-libvirt/. Needs root. Run it again: it converges.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run-libvirt: needs root (it installs packages, starts libvirtd and builds the guest image)" >&2
  exit 1
fi
bash scripts/setup-system.sh

if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  if ! grep -qE '^\s*user\s*=\s*"root"' /etc/libvirt/qemu.conf 2>/dev/null; then
    case "${NEBCTL_TEST_THROWAWAY:-}${CI:-}" in
      *1* | *true* | *yes*) ;;
      *)
        echo "run-libvirt: no libvirtd answers on qemu:///system. Start yours (systemctl start libvirtd), or, on a" >&2
        echo "throwaway machine only, rerun with NEBCTL_TEST_THROWAWAY=1 to let this script configure and start one." >&2
        exit 1
        ;;
    esac
    printf '\n# Added by nebctl scripts/run-libvirt.sh on a throwaway machine: QEMU runs as root to open /dev/kvm.\nuser = "root"\ngroup = "root"\n' >>/etc/libvirt/qemu.conf
  fi
  # Each in a session of its own: they outlive this script.
  [ -S /run/libvirt/virtlogd-sock ] && virsh -c qemu:///system version >/dev/null 2>&1 || setsid virtlogd -d
  setsid libvirtd -d
  for _ in $(seq 100); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.3
  done
  virsh -c qemu:///system version >/dev/null
fi

mkdir -p /var/tmp/nebctl-examples
[ -f /var/tmp/nebctl-examples/base.qcow2 ] || qemu-img create -q -f qcow2 /var/tmp/nebctl-examples/base.qcow2 64M
image=$(bash scripts/build-test-image.sh)
echo "run-libvirt: the guest image of manifests/examples-guests/ is in $image"

demo="$PWD/.demo-libvirt"
mkdir -p "$demo"
printf 'state_dir: %s\n' "$demo" >"$demo/config.yaml"
export NEBCTL_DB="sqlite:///$demo/nebctl.db"
nebctl() { .venv/bin/nebctl --config "$demo/config.yaml" "$@"; }
echo "== nebctl apply -f manifests/examples-libvirt/ --stack examples-libvirt --yes"
nebctl apply -f manifests/examples-libvirt/ --stack examples-libvirt --yes
echo "== nebctl get vm"
nebctl get vm
printf '\nNext (the real Debian guests, then removing everything):\n'
printf '  export NEBCTL_DB=%s\n' "$NEBCTL_DB"
printf '  .venv/bin/nebctl --config %s apply -f manifests/examples-guests/ --stack examples-guests --yes\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s destroy --stack examples-guests --yes\n' "$demo/config.yaml"
printf '  .venv/bin/nebctl --config %s destroy --stack examples-libvirt --yes\n' "$demo/config.yaml"
