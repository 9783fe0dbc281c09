"""A host whose driver cannot be loaded: the plan says which host, which driver, and how to get it, before the
VMs that therefore fit nowhere. ``libvirt`` is made unimportable for the ``nebctl`` process by a module of that
name on its path that raises ImportError, as a missing libvirt-python does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.cli.test_commands import REPO

MANIFEST = """\
apiVersion: nebctl/v1
kind: Host
metadata: {name: kvm-local}
spec: {uri: "qemu:///system"}
---
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: lab-1}
spec: {vcpu: 1, memory: 256Mi}
"""


def test_a_host_whose_driver_is_missing_is_named_with_the_remedy(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "libvirt.py").write_text('raise ImportError("No module named libvirt")\n')
    (tmp_path / "m.yaml").write_text(MANIFEST)
    (tmp_path / "config.yaml").write_text(f"state_dir: {tmp_path}\n")
    result = subprocess.run(
        [sys.executable, "-m", "nebctl", "--db", f"sqlite:///{tmp_path / 'n.db'}", "--config",
         str(tmp_path / "config.yaml"), "diff", "-f", str(tmp_path / "m.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"},
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert lines[0].startswith("error: host kvm-local: driver 'libvirt' is not available: install nebctl[libvirt]")
    assert lines[1] == "error: vm/lab-1: fits on no host: kvm-local is offline"
