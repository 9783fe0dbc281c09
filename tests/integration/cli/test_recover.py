"""Losing the database, as a user would: real ``nebctl`` processes on the simulated fleet.

After an apply, the database file is deleted. ``diff`` and ``apply`` must refuse to create over the live
objects (naming them), even for a VM whose ``placement.host`` changed meanwhile (no second copy on the new
host); ``recover`` must rebuild the records the database had (compared field by field with a copy taken
before the loss), after which ``diff`` has nothing to do. A recover killed at random moments and run again
gives the same records. Two installations sharing the fleet never see each other's objects.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli.test_commands import NEBCTL, REPO, Env
from tests.support.drills import Workspace, fleet_manifests

# The columns recovery rebuilds, and the ones it does not (``desired`` is the manifest's text, which recover
# takes from -f; ``generation`` counts applies, which live objects do not remember).
COMPARED = "kind, namespace, name, stack, applied, status, host, live"


def records(db: Path) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    """The records of ``db``; none when a process killed while creating the file left it without a schema (the
    schema is created in one transaction, so a file holds all of it or none of it)."""
    connection = sqlite3.connect(db)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "resources" not in tables:
            assert not tables, f"a partly created schema: {sorted(tables)}"
            return {}
        rows = connection.execute(f"SELECT {COMPARED} FROM resources").fetchall()
    finally:
        connection.close()
    return {(row[0], row[1], row[2]): row for row in rows}


def _normalised(row: tuple[Any, ...]) -> tuple[Any, ...]:
    import json

    kind, namespace, name, stack, applied, status, host, live = row
    return (kind, namespace, name, stack, json.loads(applied), status, host, json.loads(live))


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path / "one")


def _lose_database(env: Env) -> Path:
    db = env.root / "nebctl.db"
    copy = env.root / "before.db"
    shutil.copy(db, copy)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return copy


def test_lost_database_refused_then_recovered_to_the_same_records(env: Env) -> None:
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    before = _lose_database(env)

    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "vm/web-1: domain web-1" in diff.stderr
    assert "network/lan: network lan on kvm-a1" in diff.stderr
    assert "image/debian-12: volume image-debian-12 on kvm-a1" in diff.stderr
    assert "run `nebctl recover`" in diff.stderr
    refused = env.run("apply", "-f", str(env.manifests), "--yes")
    assert refused.returncode == 1
    assert "run `nebctl recover`" in refused.stderr

    dry = env.run("recover", "-f", str(env.manifests), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Would rebuild 18 record(s)" in dry.stdout
    assert records(env.root / "nebctl.db") == {}, "a dry run writes nothing"

    recovered = env.run("recover", "-f", str(env.manifests))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    expected = {key: _normalised(row) for key, row in records(before).items()}
    got = {key: _normalised(row) for key, row in records(env.root / "nebctl.db").items()}
    assert sorted(got) == sorted(expected)
    for key, row in expected.items():
        assert got[key] == row, key

    after = env.run("diff", "-f", str(env.manifests))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "No changes." in after.stdout


def test_moved_placement_never_makes_a_second_copy(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    where = env.fleet_vms()["web-1"]
    other = "kvm-b1" if where != "kvm-b1" else "kvm-a1"  # kvm-b2 is drained in the examples
    _lose_database(env)
    vms = env.manifests / "30-vms.yaml"
    text = vms.read_text()
    head, _, tail = text.partition("name: web-1\n")
    # Pin web-1 to another host: without records, a create there would be a second copy.
    old = "    requirements: \"free_memory >= 4Gi and labels.zone == 'a'\"\n    policy: striping\n"
    assert old in tail
    vms.write_text(head + "name: web-1\n" + tail.replace(old, f"    host: {other}\n", 1))
    result = env.run("apply", "-f", str(env.manifests), "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vm/web-1: domain web-1" in result.stderr
    assert env.fleet_vms()["web-1"] == where
    connection = sqlite3.connect(env.root / "sim.db")
    try:
        copies = connection.execute("SELECT host FROM vms WHERE name = 'web-1'").fetchall()
        disks = connection.execute("SELECT host FROM volumes WHERE name = 'web-1-disk0'").fetchall()
    finally:
        connection.close()
    assert copies == [(where,)] and disks == [(where,)], "no second VM, no second set of disks"


def test_recover_killed_at_random_moments_then_run_again(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    before = _lose_database(env)
    expected = {key: _normalised(row) for key, row in records(before).items()}
    rng = random.Random(18)
    for _ in range(4):
        process = subprocess.Popen(
            [*NEBCTL, "--db", env.db, "--config", str(env.config), "recover", "-f", str(env.manifests)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        partial = records(env.root / "nebctl.db") if (env.root / "nebctl.db").exists() else {}
        # One transaction: all of the records or none of them.
        assert len(partial) in (0, len(expected))
    final = env.run("recover", "-f", str(env.manifests))
    assert final.returncode == 0, final.stdout + final.stderr
    got = {key: _normalised(row) for key, row in records(env.root / "nebctl.db").items()}
    assert got == expected
    again = env.run("recover", "-f", str(env.manifests))
    assert "Rebuilt 0 record(s)" in again.stdout
    assert {key: _normalised(row) for key, row in records(env.root / "nebctl.db").items()} == expected


def test_two_installations_on_one_fleet_never_take_each_others_objects(tmp_path: Path) -> None:
    first = Env(tmp_path / "first")
    assert first.run("apply", "-f", str(first.manifests), "--yes").returncode == 0
    # The second installation shares the first one's fleet file but has its own database and key file.
    second = Env(tmp_path / "second")
    second.config.write_text(f"state_dir: {second.root}\ndrivers:\n  sim:\n    state_file: {first.root / 'sim.db'}\n")
    fleet = first.root / "sim.db"
    assert fleet.exists()
    recovered = second.run("recover", "-f", str(second.manifests))
    assert "Rebuilt 0 record(s)" in recovered.stdout, recovered.stdout + recovered.stderr
    assert "left alone: VirtualMachine/web-1 (stack examples)" in recovered.stdout
    assert "belongs to installation" in recovered.stdout
    diff = second.run("diff", "-f", str(second.manifests))
    assert diff.returncode == 1
    assert "vm/web-1: domain web-1" in diff.stderr and "not this one" in diff.stderr
    assert first.run("diff", "-f", str(first.manifests)).returncode == 0


# Labels and annotations changed on one resource of each kind (file, text before, text after), and the metadata
# each record must then hold, written out by hand from manifests/examples.
RELABELLED = [
    ("30-vms.yaml", "labels: {app: shop, tier: edge}", "labels: {app: shop, tier: front}\n  annotations: {owner: ops}",
     ("VirtualMachine", "lb-1"), {"labels": {"app": "shop", "tier": "front"}, "annotations": {"owner": "ops"}}),
    ("20-networks.yaml", "  name: lan\n", "  name: lan\n  labels: {zone: dmz}\n",
     ("Network", "lan"), {"labels": {"zone": "dmz"}}),
    ("20-networks.yaml", "  name: web\n", "  name: web\n  annotations: {note: edge}\n",
     ("SecurityGroup", "web"), {"annotations": {"note": "edge"}}),
    ("10-images.yaml", "labels: {os: debian}", "labels: {os: debian-12}",
     ("Image", "debian-12"), {"labels": {"os": "debian-12"}}),
    ("00-fleet.yaml", "  name: local\nspec:\n  type: dir", "  name: local\n  labels: {tier: fast}\nspec:\n  type: dir",
     ("Datastore", "local"), {"labels": {"tier": "fast"}}),
]  # fmt: skip
# What the apply of those changes runs: the ownership written again on each live object (lb-1 runs on kvm-a1;
# the others span the four hosts), and nothing else.
OWNED = ["vm/lb-1:own"] + [
    f"{resource}:own:{host}"
    for resource in ("network/lan", "securitygroup/web", "image/debian-12", "datastore/local")
    for host in ("kvm-a1", "kvm-a2", "kvm-b1", "kvm-b2")
]


def test_labels_changed_are_written_on_the_live_objects_and_recovered(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    for name, old, new, _, _ in RELABELLED:
        path = env.manifests / name
        text = path.read_text()
        assert text.count(old) == 1, (name, old)
        path.write_text(text.replace(old, new))
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    for address in ("vm/lb-1", "network/lan", "securitygroup/web", "image/debian-12", "datastore/local"):
        assert (
            f"# {address} will be updated in-place (only the applied spec written on its live objects changes)"
            in diff.stdout
        ), diff.stdout
    assert "Plan: 0 to add, 5 to change, 0 to destroy." in diff.stdout
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sorted(re.findall(r"\] +[\d.]+s (\S+) succeeded", applied.stdout)) == sorted(OWNED)

    _lose_database(env)
    recovered = env.run("recover", "-f", str(env.manifests))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    after = env.run("diff", "-f", str(env.manifests))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "No changes." in after.stdout
    rebuilt = records(env.root / "nebctl.db")
    for _, _, _, (kind, name), metadata in RELABELLED:
        applied_spec = _normalised(rebuilt[kind, "default", name])[4]
        assert applied_spec["metadata"] == metadata, (kind, name)


def test_resources_whose_span_grew_are_recovered_from_objects_of_both_specs(tmp_path: Path) -> None:
    # A host added to the manifests gets the network, datastore and image with a spec that lists it; the first
    # two hosts keep the objects (and the specs) they had. Recovery takes the span from where the objects are.
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=2), encoding="utf-8")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="fleet")
    assert workspace.apply().returncode == 0
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=3), encoding="utf-8")
    assert workspace.apply().returncode == 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{workspace.db_path}{suffix}").unlink(missing_ok=True)
    recovered = workspace.run("recover", "-f", str(manifests), "--stack", "fleet")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    with workspace.store() as store:
        records = {str(record.key): record for record in store.list_resources(stack="fleet")}
    for name in ("network/lan", "datastore/local", "image/base"):
        applied = records[name].applied
        assert applied is not None and applied["hosts"] == ["h00", "h01", "h02"], name
    after = workspace.diff()
    assert after.returncode == 0, after.stdout + after.stderr
