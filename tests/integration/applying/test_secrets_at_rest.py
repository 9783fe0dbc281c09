"""Secrets at rest: after applies of manifests whose cloud-init data and hook environment carry markers, no
marker is anywhere in the database's files (the main file, its WAL, its shared memory), in clear or in the
records' hashes; changes to a secret are still planned as the change they are; ``get``/``describe`` mask them;
and the key that seals them lives in its own 0600 file and can be rotated without a change being planned.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from nebctl.database import sealing
from tests.support.drills import EXAMPLES, Workspace, audit

MARKERS = {
    "userData": "MARKER-user-data-7f3a",
    "metaData": "MARKER-meta-data-19c2",
    "networkConfig": "MARKER-network-config-5e0b",
    "env": "MARKER-hook-env-c4d8",
}


def with_secrets(directory: Path, *, user_data: str = MARKERS["userData"], env: str = MARKERS["env"]) -> Path:
    """The example manifests, with web-2 carrying every cloud-init secret and the hook an env marker."""
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(EXAMPLES, directory)
    vms = directory / "30-vms.yaml"
    text = vms.read_text()
    head, tail = text.split("  name: web-2\n", 1)
    cloud_init = (
        f"  cloudInit:\n    userData: '{user_data}'\n    metaData: '{MARKERS['metaData']}'\n"
        f"    networkConfig: '{MARKERS['networkConfig']}'\n"
    )
    spec_end = tail.index("---")
    vms.write_text(head + "  name: web-2\n" + tail[:spec_end] + cloud_init + tail[spec_end:])
    hooks = directory / "40-hooks.yaml"
    hooks.write_text(hooks.read_text().replace("NOTIFY_CHANNEL: ops", f"NOTIFY_CHANNEL: {env}"))
    return directory


def database_bytes(workspace: Workspace) -> bytes:
    files = sorted(workspace.db_path.parent.glob(workspace.db_path.name + "*"))
    assert workspace.db_path in files
    return b"".join(path.read_bytes() for path in files)


def clear_secrets_in(data: bytes, *secrets: str) -> list[str]:
    return [secret for secret in secrets if secret.encode() in data]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", manifests=with_secrets(tmp_path / "manifests"), stack="examples")


def test_no_secret_is_stored_in_clear_and_changes_are_still_planned(workspace: Workspace, tmp_path: Path) -> None:
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    assert clear_secrets_in(database_bytes(workspace), *MARKERS.values()) == []
    key_file = workspace.state_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = next(line for line in key_file.read_text().splitlines() if not line.startswith("#"))
    assert clear_secrets_in(database_bytes(workspace), key) == []
    # The digests are keyed: they are no plain hash of the secret that one could check a guess against.
    import hashlib

    plain = hashlib.sha256(MARKERS["userData"].encode()).hexdigest()
    assert clear_secrets_in(database_bytes(workspace), plain) == []
    with workspace.store() as store:
        web2 = next(r for r in store.list_resources() if r.name == "web-2")
        events = store.list_events(limit=10_000)
    assert web2.applied is not None
    assert all(sealing.is_sealed(web2.applied["cloudInit"][field]) for field in ("userData", "metaData"))
    assert clear_secrets_in(json.dumps([e.message for e in events] + [e.data for e in events]).encode()) == []
    assert audit(workspace) == []

    # Nothing changed: nothing is planned (the digests match the manifests' secrets).
    assert workspace.diff().returncode == 0

    # get and describe show the secrets masked.
    described = workspace.run("describe", "vm/web-2")
    listed = workspace.run("get", "vm", "web-2", "-o", "json")
    assert described.returncode == listed.returncode == 0
    assert "(sensitive)" in described.stdout and "(sensitive)" in listed.stdout
    assert "hmac-sha256" not in described.stdout + listed.stdout
    assert clear_secrets_in((described.stdout + listed.stdout).encode(), *MARKERS.values()) == []

    # A changed user data is planned as today (cloud-init is read at first boot: the VM is replaced), and a
    # changed hook environment as an update; neither value is printed.
    with_secrets(workspace.manifests, user_data="MARKER-new-user-data-aa11", env="MARKER-new-env-bb22")
    diff = workspace.diff()
    assert diff.returncode == 2, diff.stderr
    assert "# vm/web-2 must be replaced" in diff.stdout
    assert "~ cloudInit.userData = (sensitive) # forces replacement" in diff.stdout
    assert "# hook/notify-ops will be updated in-place" in diff.stdout
    assert "metaData" not in diff.stdout  # unchanged secrets are not listed as changes
    assert clear_secrets_in(diff.stdout.encode(), "MARKER-new-user-data-aa11", "MARKER-new-env-bb22") == []
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    assert workspace.diff().returncode == 0
    data = database_bytes(workspace)
    assert clear_secrets_in(data, *MARKERS.values(), "MARKER-new-user-data-aa11", "MARKER-new-env-bb22") == []


def test_a_key_is_rotated_without_a_change_and_a_lost_key_is_named(workspace: Workspace) -> None:
    assert workspace.apply().returncode == 0
    key_file = workspace.state_dir / "secret.key"
    old = next(line for line in key_file.read_text().splitlines() if not line.startswith("#"))
    old_id, new = sealing.key_id(old.encode()), "a-new-key-of-32-characters-000000"
    assert old_id.encode() in database_bytes(workspace)
    key_file.write_text(f"{new}\n{old}\n")
    # The old key still verifies: nothing to do; the apply seals the records again with the new key.
    assert workspace.diff().returncode == 0
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    data = database_bytes(workspace)
    with workspace.store() as store:
        web1 = next(r for r in store.list_resources() if r.name == "web-1")
    assert web1.applied is not None
    assert sealing.sealed_key_id(web1.applied["cloudInit"]["userData"]) == sealing.key_id(new.encode())
    assert clear_secrets_in(data, *MARKERS.values()) == []
    key_file.write_text(f"{new}\n")
    assert workspace.diff().returncode == 0
    # A lost key: the plan cannot compare, and says which key is missing, and where it was looked for.
    key_file.write_text("yet-another-key-nobody-has-seen-before\n")
    diff = workspace.diff()
    assert diff.returncode == 1
    assert f"sealed with key {sealing.key_id(new.encode())}, which is not in the secret key file {key_file}" in (
        diff.stderr
    )


def test_secrets_stored_in_clear_by_an_older_nebctl_are_sealed_by_the_next_apply(workspace: Workspace) -> None:
    import sqlite3

    assert workspace.apply().returncode == 0
    # What a nebctl from before sealing wrote: the user data in clear in both spec columns.
    with sqlite3.connect(workspace.db_path) as connection:
        connection.execute(
            "UPDATE resources SET applied = json_set(applied, '$.cloudInit.userData', ?), "
            "desired = json_set(desired, '$.cloudInit.userData', ?) WHERE name = 'web-2'",
            (MARKERS["userData"], MARKERS["userData"]),
        )
    assert workspace.diff().returncode == 0  # the same value: no change
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(workspace.db_path) as connection:
        stored = connection.execute("SELECT applied, desired FROM resources WHERE name = 'web-2'").fetchone()
    assert clear_secrets_in(json.dumps(stored).encode(), MARKERS["userData"]) == []
    assert all(sealing.is_sealed(json.loads(column)["cloudInit"]["userData"]) for column in stored)
