"""cloud-init NoCloud seed images: an ISO 9660 volume labelled ``cidata`` holding user-data and meta-data.

``LibvirtVirtualization.deploy`` builds one when a VM has ``cloud_init`` and attaches it as a CD-ROM. The ISO
is made by genisoimage (or xorriso's mkisofs emulation) run with an argument vector and a timeout; the
user data is a secret, so it only ever lives in a private temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from nebctl.drivers.errors import CapabilityError
from nebctl.drivers.libvirt.failures import DRIVER_NAME
from nebctl.drivers.types import CloudInitData


def seed_volume_name(vm_name: str) -> str:
    return f"{vm_name}-cidata.iso"


def iso_command(output: Path, files: list[Path]) -> list[str]:
    for tool, prefix in (("genisoimage", []), ("mkisofs", []), ("xorriso", ["-as", "mkisofs"])):
        program = shutil.which(tool)
        if program is not None:
            return [program, *prefix, "-output", str(output), "-volid", "cidata", "-joliet", "-rock",
                    *map(str, files)]  # fmt: skip
    raise CapabilityError("cloud-init needs genisoimage or xorriso on the controller", driver=DRIVER_NAME)


def build_seed(data: CloudInitData, *, instance_id: str, hostname: str, directory: Path) -> Path:
    """Write the NoCloud files and the ISO into ``directory`` (a private temporary one); return the ISO."""
    files = {
        "user-data": data.user_data or "#cloud-config\n",
        "meta-data": data.meta_data or f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n",
    }
    if data.network_config:
        files["network-config"] = data.network_config
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    output = directory / "seed.iso"
    subprocess.run(iso_command(output, paths), check=True, capture_output=True, timeout=60)
    return output


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="nebctl-seed-")
