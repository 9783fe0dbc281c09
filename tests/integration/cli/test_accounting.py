"""``hosts``, ``top``, ``accounting`` and ``showback`` end to end: real ``nebctl`` processes applying manifests
to the simulated fleet, then reading what was recorded.

The VM goes through a creation, a migration, a resize, a stop, a start and a deletion; the placement history must hold
one record for each stage, in order, each ending where the next begins, and showback must price each record's
hours with the configured prices (worked out here from the record's own start and end).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
GIB = 1 << 30
HOSTS = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: h1}
spec:
  uri: sim://h1?cpus=8&memory=16Gi&disk=100Gi
  reserved: {cpu: 1, memory: 1Gi}
  overcommit: {cpu: 2}
---
apiVersion: nebctl/v1
kind: Host
metadata: {name: h2, labels: {tier: gold}}
spec:
  uri: sim://h2?cpus=4&memory=8Gi&disk=100Gi
"""
VM = """
---
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {{name: app, labels: {{team: blue}}}}
spec:
  state: {state}
  vcpu: {vcpu}
  memory: 2Gi
  placement: {{host: {host}}}
"""
CONFIG = """
state_dir: {root}
pricing:
  currency: EUR
  vcpu_hour: 0.5
  memory_gib_hour: 0.25
  disk_gib_hour: 0.125
  overrides:
    - labels: {{tier: gold}}
      vcpu_hour: 1.5
"""


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "stack"
        self.manifests.mkdir()
        (root / "config.yaml").write_text(CONFIG.format(root=root))
        self.db = f"sqlite:///{root / 'nebctl.db'}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "nebctl", "--db", self.db, "--config", str(self.root / "config.yaml"), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def declare(self, *, host: str, vcpu: int = 1, state: str = "running") -> None:
        (self.manifests / "stack.yaml").write_text(HOSTS + VM.format(host=host, vcpu=vcpu, state=state))

    def apply(self) -> None:
        self.run("apply", "-f", str(self.manifests), "--yes")

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_history_follows_create_migrate_resize_stop_destroy(env: Env) -> None:
    env.declare(host="h1")
    env.apply()
    env.declare(host="h2")  # migrate
    env.apply()
    env.declare(host="h2", vcpu=2)  # resize
    env.apply()
    env.declare(host="h2", vcpu=2, state="stopped")
    env.apply()
    env.declare(host="h2", vcpu=2)  # started again
    env.apply()
    (env.manifests / "stack.yaml").write_text(HOSTS)  # the VM removed from the manifests: pruned
    env.run("apply", "-f", str(env.manifests), "--yes", "--prune")

    report = env.json("accounting", "-o", "json")
    rows = report["rows"]
    assert [(r["hostname"], r["cpu"], r["state"], r["reason"], r["end_reason"]) for r in rows] == [
        ("h1", 1, "running", "created", "migrated"),
        ("h2", 1, "running", "migrated", "resized"),
        ("h2", 2, "running", "resized", "stopped"),
        ("h2", 2, "stopped", "stopped", "started"),
        ("h2", 2, "running", "started", "deleted"),
    ]
    assert all(r["vm"] == "app" and r["namespace"] == "default" and r["stack"] == "stack" for r in rows)
    assert all(r["memory"] == 2 * GIB and r["disk"] == 0 and r["open"] is False for r in rows)
    assert all(r["uname"] for r in rows), "the user who applied owns the records"
    for before, after in itertools.pairwise(rows):
        assert before["end_time"] == after["start_time"], "each record ends where the next begins"
    for row in rows:
        hours = (_time(row["end_time"]) - _time(row["start_time"])).total_seconds() / 3600
        assert row["hours"] == pytest.approx(hours, abs=1e-6)
        assert row["cpu_hours"] == pytest.approx(hours * row["cpu"], abs=1e-6)

    # The CSV has the documented header and the same records.
    table = list(csv.DictReader(io.StringIO(env.run("accounting", "-o", "csv").stdout)))
    assert list(table[0]) == [
        "NAMESPACE", "VM", "STACK", "UNAME", "HOSTNAME", "STATE", "REASON", "END_REASON", "START_TIME",
        "END_TIME", "OPEN", "HOURS", "CPU", "MEMORY", "DISK", "CPU_HOURS", "MEMORY_GIB_HOURS", "DISK_GIB_HOURS",
    ]  # fmt: skip
    assert [(r["HOSTNAME"], r["REASON"]) for r in table] == [(r["hostname"], r["reason"]) for r in rows]

    # Grouped by host: h1 had the first record, h2 the four others (one of them stopped).
    by_host = {g["hostname"]: g for g in env.json("accounting", "--by", "host", "-o", "json")["rows"]}
    assert by_host["h1"]["records"] == 1 and by_host["h2"]["records"] == 4
    stopped = rows[3]["hours"]
    assert by_host["h2"]["stopped_hours"] == pytest.approx(stopped, abs=1e-5)
    assert by_host["h1"]["stopped_hours"] == 0

    # Showback: on h1 0.5 a vCPU-hour, on gold h2 1.5; memory 2 GiB at 0.25; no disk.
    month = rows[0]["start_time"][:7]
    bill = env.json("showback", "--month", month, "--by", "host", "-o", "json")
    expected = {"h1": 0.0, "h2": 0.0}
    for row in rows:
        vcpu_price = 1.5 if row["hostname"] == "h2" else 0.5
        expected[row["hostname"]] += row["hours"] * (row["cpu"] * vcpu_price + 2 * 0.25)
    assert {r["hostname"]: r["cost"] for r in bill["rows"]} == pytest.approx(expected, abs=1e-5)
    assert bill["total"] == pytest.approx(sum(expected.values()), abs=1e-5)
    assert bill["currency"] == "EUR" and bill["month"] == month
    csv_bill = list(csv.DictReader(io.StringIO(env.run("showback", "--month", month, "-o", "csv").stdout)))
    assert [r["VM"] for r in csv_bill] == ["default/app"]
    assert float(csv_bill[0]["COST"]) == pytest.approx(sum(expected.values()), abs=1e-5)


def test_hosts_and_top_after_applies(env: Env) -> None:
    env.declare(host="h1")
    env.apply()
    # Two observations after the VM exists (the apply observed before creating it): rates need two samples. The
    # second diff would show the plan the first one kept, without probing: ``top --probe`` probes.
    env.run("diff", "-f", str(env.manifests), check=False)
    env.run("top", "--probe", "-o", "json", check=False)
    hosts = {h["name"]: h for h in env.json("hosts", "-o", "json")}
    h1 = hosts["h1"]
    assert h1["state"] == "up" and h1["lastProbe"] and h1["vms"] == 1
    # 8 CPUs, 1 reserved, overcommit 2: (8 - 1) * 2 = 14 schedulable, 1 allocated, 13 free.
    assert (h1["cpu"]["total"], h1["cpu"]["reserved"], h1["cpu"]["overcommit"]) == (8, 1, 2)
    assert (h1["cpu"]["schedulable"], h1["cpu"]["allocated"], h1["cpu"]["free"]) == (14, 1, 13)
    # 16 GiB, 1 GiB reserved, overcommit 1: 15 GiB schedulable, 2 GiB allocated, 13 GiB free.
    assert h1["memory"]["total"] == 16 * GIB and h1["memory"]["allocated"] == 2 * GIB
    assert h1["memory"]["free"] == 13 * GIB
    assert h1["disk"]["total"] == 100 * GIB
    assert h1["attributes"] == {"sim": "true", "vms": "1"}
    assert hosts["h2"]["vms"] == 0 and hosts["h2"]["labels"] == {"tier": "gold"}
    wide = env.run("hosts", "-o", "wide").stdout
    assert "sim=true" in wide and "tier=gold" in wide

    [vm] = env.json("top", "-o", "json")
    assert (vm["name"], vm["host"], vm["state"], vm["memory"]) == ("app", "h1", "running", 2 * GIB)
    assert vm["cpu"] is not None and vm["memoryUsed"] is not None and vm["sampledAt"].endswith("Z")
    rates = ("diskReadRate", "diskWriteRate", "netRxRate", "netTxRate")
    assert all(vm[rate] is not None and vm[rate] >= 0 for rate in rates)
    assert env.json("top", "-o", "json", "--host", "h2") == []
    assert env.json("top", "-o", "json", "--label", "team=red") == []
    assert [v["name"] for v in env.json("top", "-o", "json", "--label", "team=blue", "--stack", "stack")] == ["app"]
    tops = {t["name"]: t for t in env.json("top", "hosts", "-o", "json")}
    assert tops["h1"]["vms"] == 1 and tops["h2"]["vms"] == 0

    # A host that stops answering shows in error, with the probe's message.
    env.run("sim", "host-down", "h2")
    watched = env.run("top", "--watch", "--count", "2", "--interval", "0.1", "--probe")
    assert "app" in watched.stdout
    hosts = {h["name"]: h for h in env.json("hosts", "-o", "json")}
    assert hosts["h2"]["state"] == "error" and hosts["h2"]["error"]
    assert "error" in env.run("hosts").stdout


def test_bad_input_is_refused_with_a_clear_message(env: Env) -> None:
    for args, message in [
        (("showback", "--month", "2024-13"), "is not a month of the form YYYY-MM"),
        (("showback", "--month", "2999-01"), "that month has not begun"),
        (("accounting", "--from", "yesterday"), "--from: 'yesterday' is not an ISO 8601"),
        (("accounting", "--from", "2024-05-02", "--to", "2024-05-01"), "before it starts"),
        (("top", "--label", "team"), "expected KEY=VALUE"),
    ]:
        result = env.run(*args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    (env.root / "config.yaml").write_text(f"state_dir: {env.root}\npricing:\n  overrides:\n    - vcpu_hour: 1\n")
    result = env.run("showback", check=False)
    assert result.returncode == 1 and "names either a host or labels" in result.stderr
