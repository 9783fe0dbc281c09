#!/usr/bin/env bash
# Builds the guest test image: Debian 12 (bookworm) with cloud-init, made from Debian's packages alone, for the
# end-to-end test of real guests (tests/libvirt/test_guests.py) and the examples of manifests/examples-guests/.
#
# What it makes, in a directory of the image cache keyed by a digest of this script's commands (its package
# list, sizes and settings are all written here, so any change to them makes a new image, and an unchanged
# script reuses the one built before: built once per machine):
#   disk.qcow2   a 1.5 GiB disk: an MBR partition table and one ext4 partition from 1 MiB (the root file system)
#   vmlinuz      the kernel and initrd.img its initramfs, for direct kernel boot (no boot loader in the image:
#   initrd.img   SYSLINUX and GRUB fail under some nested KVM setups, and direct boot is faster under TCG)
#   cmdline      the kernel command line the image expects
#   packages     the Debian package versions inside (dpkg-query), to compare two builds
# and a symbolic link CACHE/debian-12-guest to the newest of them (the path the example manifests name).
#
# Usage: scripts/build-test-image.sh          (as root: it installs debootstrap and fdisk, and debootstraps)
# Prints the image directory on stdout; progress goes to stderr. CACHE is $NEBCTL_IMAGE_CACHE, by default
# /var/lib/nebctl/images (a machine-wide data directory, since the build needs root anyway).
#
# Reproducible in the sense that matters to the tests: the same script gives the same packages from the same
# Debian suite (their exact versions are in `packages`), a file system with a fixed UUID and hash seed, and
# timestamps clamped to SOURCE_DATE_EPOCH; it is not bit-for-bit identical across mirror updates.
set -euo pipefail

SUITE=bookworm
MIRROR=${NEBCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The guest's packages. python3-cffi-backend: debootstrap does not resolve the virtual packages that
# python3-cryptography (a dependency of cloud-init) needs, and cloud-init fails without it. cloud-guest-utils
# brings growpart, with which cloud-init grows the root partition to the disk's size. openssh-server answers
# on tcp/22, the port the examples' security group opens. dbus: systemd-logind needs it, and logind is what
# powers the guest off when the hypervisor presses the ACPI power button (a graceful shutdown).
PACKAGES=linux-image-amd64,systemd-sysv,cloud-init,ifupdown,isc-dhcp-client,python3,python3-cffi-backend,cloud-guest-utils,openssh-server,dbus
DISK_SIZE_MIB=1536
PARTITION_OFFSET=1048576 # 1 MiB: the first partition's start, as sfdisk aligns it
FS_UUID=5f4a8f3e-6c1d-4b59-9d7e-2a0b1c9e7d42
FS_HASH_SEED=0c6f8d6e-3c2b-4f0a-8e55-4d2c1b0a9f87
# tsc=reliable: under emulation (TCG) on a loaded host the kernel may distrust the TSC and time its delays with
# a calibrated busy loop, whose calibration can be far off: a guest was seen spinning in it for minutes.
CMDLINE="root=/dev/vda1 rw console=ttyS0 net.ifnames=0 tsc=reliable"
export SOURCE_DATE_EPOCH=1735689600 # 2025-01-01

CACHE=${NEBCTL_IMAGE_CACHE:-/var/lib/nebctl/images}
SCRIPT=$(readlink -f "$0")
# The digest of the script's commands, not its comments: editing a comment does not rebuild the image.
DIGEST=$(grep -v '^[[:space:]]*#' "$SCRIPT" | sha256sum | cut -c1-16)
NAME=debian-12-guest
TARGET="$CACHE/$NAME-$DIGEST"

log() { echo "build-test-image: $*" >&2; }

if [ -f "$TARGET/complete" ]; then
  ln -sfn "$NAME-$DIGEST" "$CACHE/$NAME"
  echo "$TARGET"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "build-test-image: needs root (debootstrap, apt-get); no image in $TARGET yet" >&2
  exit 1
fi

mkdir -p "$CACHE"
# One build at a time per machine: a second caller waits, then finds the image complete.
exec 9>"$CACHE/.build.lock"
flock 9
if [ -f "$TARGET/complete" ]; then
  ln -sfn "$NAME-$DIGEST" "$CACHE/$NAME"
  echo "$TARGET"
  exit 0
fi

tools=(debootstrap fdisk e2fsprogs qemu-utils)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d "$CACHE/.build-XXXXXX")
cleanup() {
  # debootstrap leaves /proc and /sys mounted in the chroot when it fails part way.
  for m in proc sys dev/pts dev; do
    mountpoint -q "$WORK/root/$m" 2>/dev/null && umount -l "$WORK/root/$m" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log "debootstrap $SUITE with $PACKAGES (a few minutes)"
started=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -30 "$WORK/debootstrap.log" >&2
  exit 1
}
log "debootstrap took $(($(date +%s) - started)) s"

root=$WORK/root
cat >"$root/etc/fstab" <<'EOF'
/dev/vda1 / ext4 defaults,errors=remount-ro 0 1
EOF
# Every guest makes its own machine id and SSH host keys on first boot (cloud-init regenerates the keys).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
echo localhost >"$root/etc/hostname"
# Only the NoCloud seed (the cidata ISO nebctl attaches): probing cloud metadata services would wait for
# timeouts on a network that has none.
cat >"$root/etc/cloud/cloud.cfg.d/90-nebctl-test-image.cfg" <<'EOF'
datasource_list: [NoCloud, None]
EOF
# ifupdown reads the files cloud-init writes for the first NIC.
grep -q '^source /etc/network/interfaces.d' "$root/etc/network/interfaces" 2>/dev/null ||
  printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' >"$root/etc/network/interfaces"
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$WORK/packages"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old "$root"/tmp/*

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)
cp "$kernel" "$WORK/vmlinuz"
cp "$initrd" "$WORK/initrd.img"
echo "$CMDLINE" >"$WORK/cmdline"

log "disk: MBR partition table, ext4 at a 1 MiB offset filled from the root file system"
truncate -s "${DISK_SIZE_MIB}M" "$WORK/disk.raw"
echo 'label: dos
label-id: 0x6e656263
start=2048, type=83, bootable' | sfdisk -q "$WORK/disk.raw"
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
fs_size_kib=$(((DISK_SIZE_MIB * 1024) - PARTITION_OFFSET / 1024))
mkfs.ext4 -q -F -L root -U "$FS_UUID" -E "offset=$PARTITION_OFFSET,hash_seed=$FS_HASH_SEED" -d "$root" \
  "$WORK/disk.raw" "${fs_size_kib}k"
qemu-img convert -q -f raw -O qcow2 "$WORK/disk.raw" "$WORK/disk.qcow2"
rm -f "$WORK/disk.raw"

mkdir -p "$TARGET"
mv "$WORK/disk.qcow2" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/cmdline" "$WORK/packages" "$TARGET/"
touch "$TARGET/complete"
ln -sfn "$NAME-$DIGEST" "$CACHE/$NAME"
log "built $TARGET in $(($(date +%s) - started)) s"
echo "$TARGET"
