"""What a new user meets first, run as users run it: real ``nebctl`` processes on the simulated fleet.

- A VM stopped and another deleted behind nebctl's back (``nebctl sim stop-vm``/``delete-vm``): ``get`` and
  ``describe`` go on showing the record until something observes the hosts, then show the live state beside it
  and mark the drift; an apply heals it, and the next observation agrees again.
- A VM that fits nowhere is said in one line grouped by reason; ``-v`` lists every host.
- ``--version`` names the version from pyproject.toml and the commit of the checkout, read with git here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.integration.cli.test_commands import NEBCTL, REPO, Env


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _row(listing: str, name: str) -> str:
    [row] = [line for line in listing.splitlines() if line.startswith(f"vm/{name} ")]
    return row


def test_get_and_describe_show_a_vm_stopped_behind_nebctls_back(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    # The apply planned before anything existed: nothing of these VMs was observed yet.
    listing = env.run("get", "vm").stdout
    assert "OBSERVED" in listing.splitlines()[0]
    assert _row(listing, "web-1").split()[3:4] == ["running"] and "not yet" in _row(listing, "web-1")
    assert "Observed:    nothing yet" in env.run("describe", "vm/web-1").stdout

    assert env.run("sim", "stop-vm", "web-1").returncode == 0
    assert env.run("sim", "delete-vm", "web-2").returncode == 0
    # Nothing has looked yet: the record is all nebctl knows, and it says it has not observed.
    assert "drift" not in env.run("get", "vm").stdout

    assert env.run("diff", "-f", str(env.manifests)).returncode == 2  # the next observation
    listing = env.run("get", "vm").stdout
    web1, web2, web3 = _row(listing, "web-1"), _row(listing, "web-2"), _row(listing, "web-3")
    assert "running → stopped (drift, " in web1 and " ago)" in web1
    assert "running → absent (drift, " in web2
    assert "drift" not in web3 and "not yet" not in web3 and " ago " in web3

    described = env.run("describe", "vm/web-1").stdout
    assert "Status:      running → stopped (drift, " in described
    assert "Observed:    stopped on " in described
    assert "Drift:       was stopped\n" in described
    assert "Observed at: " in described and " UTC" in described
    assert "Drift:       was deleted outside nebctl\n" in env.run("describe", "vm/web-2").stdout

    # Scripts get the observation with exact values beside the record's.
    [view] = json.loads(env.run("get", "vm", "web-1", "-o", "json").stdout)
    assert view["status"] == "running" and view["spec"]["memory"] == 2 * 1024**3
    assert view["observed"]["state"] == "stopped" and view["observed"]["drift"] == ["was stopped"]
    assert view["observed"]["memory"] == 2 * 1024**3 and view["observationCurrent"] is True

    # Hosts were observed too, and answer.
    hosts = env.run("get", "host").stdout
    assert all("ago" in line for line in hosts.splitlines()[1:])

    # The apply heals both; what it saw before is older than the records it then changed.
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    listing = env.run("get", "vm").stdout
    assert "drift" not in listing and "before the last change" in _row(listing, "web-1")
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0
    listing = env.run("get", "vm").stdout
    assert "drift" not in listing and "before the last change" not in listing


HUGE_VM = """
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: huge-%d}
spec: {vcpu: 2, memory: 100Gi, placement: {requirements: "labels.zone == 'a'"}}
"""


def test_vms_that_fit_nowhere_are_grouped_and_v_lists_every_host(env: Env) -> None:
    (env.manifests / "90-huge.yaml").write_text("---".join(HUGE_VM % i for i in (1, 2)), encoding="utf-8")
    result = env.run("diff", "-f", str(env.manifests))
    assert result.returncode == 1
    # Hand-read from manifests/examples: kvm-a1 and kvm-a2 (zone a) have 64Gi less 2Gi reserved; the b hosts are
    # in zone b; kvm-b2 is also drained, which is checked first. Groups of one host come in the order of their
    # reasons' text.
    expected = (
        "error: 2 VMs fit on no host (vm/huge-1, vm/huge-2): 2 hosts have at most 62Gi free memory, 100Gi needed "
        "(kvm-a1, kvm-a2); kvm-b2 is disabled; kvm-b1 fails requirements labels.zone == 'a'"
    )
    assert expected in result.stderr.splitlines()
    assert "kvm-a1: needs" not in result.stderr and "-v says more" in result.stderr
    verbose = env.run("-v", "diff", "-f", str(env.manifests))
    assert "  kvm-a1: needs 100Gi memory, 62Gi free" in verbose.stderr.splitlines()
    assert "  kvm-b2: disabled" in verbose.stderr.splitlines()
    assert "vm/huge-2: fits on no host:" in verbose.stderr.splitlines()


def test_version_names_the_version_and_the_commit_of_the_checkout(tmp_path: Path) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    shown = subprocess.run([*NEBCTL, "--version"], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert shown.startswith(f"nebctl {version} (commit {commit.stdout.strip()[:12]}")
    # A copy of the package outside any checkout (as installed in site-packages): the version alone.
    shutil.copytree(REPO / "nebctl", tmp_path / "nebctl", ignore=shutil.ignore_patterns("__pycache__"))
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    alone = subprocess.run(
        [sys.executable, "-m", "nebctl", "--version"], capture_output=True, text=True, check=True, cwd=tmp_path,
        env=environment,
    )  # fmt: skip
    assert alone.stdout == f"nebctl {version}\n"
