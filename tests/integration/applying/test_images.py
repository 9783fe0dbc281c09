"""Images from a catalogue over HTTP, applied by ``nebctl apply`` in a real process on three sim hosts: one
download for the three, the version it got recorded, the download's figures in the action's result; a wrong
sha256 refused leaving nothing in the cache or the datastores; an unknown appliance refused at plan time; and
``nebctl market list|show|refresh``.

The image is a real qcow2 made with qemu-img, served by the loopback server of tests/support/httpserver.py;
expected digests are computed here with hashlib, request counts are the server's.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.drills import Workspace
from tests.support.httpserver import Behaviour, ImageServer, image_server, sha256_of

HOSTS = ("h0", "h1", "h2")


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


def _qcow2(directory: Path, name: str, data: bytes) -> Path:
    raw = directory / f"{name}.raw"
    raw.write_bytes(data)
    image = directory / f"{name}.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    return image


def _index(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"apiVersion": "nebctl/catalogue/v1", "appliances": entries}).encode()


def _manifests(root: Path, server: ImageServer, *, source: str) -> Path:
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    documents = [
        f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: {host}}}\nspec: {{uri: 'sim://{host}'}}\n"
        for host in HOSTS
    ]
    documents.append(
        "apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: local}\n"
        f"spec: {{path: /var/lib/nebctl/local, hosts: [{', '.join(HOSTS)}]}}\n"
    )
    documents.append(
        "apiVersion: nebctl/v1\nkind: Marketplace\nmetadata: {name: hub}\n"
        f"spec: {{url: '{server.url('index.json')}'}}\n"
    )
    documents.append(
        f"apiVersion: nebctl/v1\nkind: Image\nmetadata: {{name: debian}}\n"
        f"spec: {{source: {{marketplace: '{source}'}}, datastore: local}}\n"
    )
    (manifests / "images.yaml").write_text("---\n".join(documents), encoding="utf-8")
    return manifests


def _volumes(workspace: Workspace) -> list[tuple[str, int, str]]:
    with workspace.fleet() as fleet:
        rows = fleet.store.read().execute("SELECT host, capacity, sha256 FROM volumes ORDER BY host").fetchall()
    return [(str(host), int(size), str(digest)) for host, size, digest in rows]


def _cache_files(workspace: Workspace) -> list[str]:
    root = workspace.state_dir / "images"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


@pytest.fixture()
def catalogue(server: ImageServer, tmp_path: Path) -> dict[str, Path]:
    """Two versions of debian on the server; 1.10 is the newest (numerically, not as text)."""
    old = _qcow2(tmp_path, "debian-1.9", b"old" * 300_000)
    new = _qcow2(tmp_path, "debian-1.10", b"new" * 400_000)
    server.put("debian-1.9.qcow2", old)
    server.put("debian-1.10.qcow2", new)
    versions = [
        {"version": "1.9", "images": [{"url": "debian-1.9.qcow2", "sha256": sha256_of(old)}]},
        {
            "version": "1.10",
            "images": [{"url": "debian-1.10.qcow2", "sha256": sha256_of(new), "size": new.stat().st_size}],
        },
    ]
    server.put("index.json", _index([{"name": "debian-12", "description": "Debian", "versions": versions}]))
    return {"1.9": old, "1.10": new}


def test_three_hosts_import_the_newest_version_with_one_download(
    server: ImageServer, catalogue: dict[str, Path], tmp_path: Path
) -> None:
    workspace = Workspace(tmp_path / "ws", manifests=_manifests(tmp_path, server, source="hub/debian-12"), stack="img")
    server.behave("debian-1.10.qcow2", Behaviour(stall_after=256 * 1024, stall=1.0))  # a download one can watch
    result = workspace.apply()
    assert result.returncode == 0, result.stdout + result.stderr

    newest = catalogue["1.10"]
    assert server.count("debian-1.10.qcow2") == 1  # one download for three hosts
    assert server.count("debian-1.9.qcow2") == 0
    assert server.count("index.json") == 1  # plan and apply share the kept index
    assert _volumes(workspace) == [(host, newest.stat().st_size, sha256_of(newest)) for host in HOSTS]
    assert _cache_files(workspace) == [f"sha256/{sha256_of(newest)}"]

    with sqlite3.connect(workspace.db_path) as connection:
        (live,) = connection.execute("SELECT live FROM resources WHERE kind = 'Image'").fetchone()
        results = [
            json.loads(row[0])
            for row in connection.execute("SELECT result FROM apply_actions WHERE action_id LIKE 'image/%'")
        ]
    recorded = json.loads(live)
    assert recorded["appliance"] == {
        "name": "debian-12",
        "version": "1.10",
        "source": server.url("debian-1.10.qcow2"),
    }
    transfers = [r["transfer"] for r in results if "transfer" in r]
    assert len(transfers) == 1 and transfers[0]["bytes"] == newest.stat().st_size  # the one that downloaded
    # Off a terminal, the download's progress is a line of the apply's output (one per 5 s per download).
    size = newest.stat().st_size
    assert re.search(
        rf"^ +image/debian:import_image:h[012] download: [0-9.]+ (B|KiB|MiB)/{size / 2**20:.1f} MiB at ",
        result.stdout,
        flags=re.MULTILINE,
    ), result.stdout

    again = workspace.apply()  # nothing to do: no download, no request for the image
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.count("debian-1.10.qcow2") == 1


def test_a_pinned_version_is_the_one_imported(server: ImageServer, catalogue: dict[str, Path], tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, server, source="hub/debian-12@1.9")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="img")
    result = workspace.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert {digest for _, _, digest in _volumes(workspace)} == {sha256_of(catalogue["1.9"])}
    assert server.count("debian-1.10.qcow2") == 0


def test_a_wrong_sha256_is_refused_and_leaves_nothing_in_the_cache_or_the_datastores(
    server: ImageServer, tmp_path: Path
) -> None:
    image = _qcow2(tmp_path, "debian", b"x" * 500_000)
    server.put("debian.qcow2", image)
    wrong = "0" * 64
    versions = [{"version": "1", "images": [{"url": "debian.qcow2", "sha256": wrong}]}]
    server.put("index.json", _index([{"name": "debian-12", "versions": versions}]))
    workspace = Workspace(tmp_path / "ws", manifests=_manifests(tmp_path, server, source="hub/debian-12"), stack="img")

    result = workspace.apply()

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"sha256 is {sha256_of(image)}, expected {wrong}; the download was discarded" in result.stderr
    assert server.count("debian.qcow2") == 1  # permanent: not retried, not downloaded by the other hosts
    assert _volumes(workspace) == []
    assert _cache_files(workspace) == []


def test_an_appliance_the_catalogue_lacks_fails_the_plan_naming_it(
    server: ImageServer, catalogue: dict[str, Path], tmp_path: Path
) -> None:
    manifests = _manifests(tmp_path, server, source="hub/ubuntu-24")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="img")
    result = workspace.diff()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: image/debian: marketplace hub has no appliance 'ubuntu-24'" in result.stderr
    assert "the plan cannot be made; nothing was changed" in result.stderr

    pinned = _manifests(tmp_path / "pinned", server, source="hub/debian-12@3.0")
    result = Workspace(tmp_path / "ws2", manifests=pinned, stack="img").diff()
    assert result.returncode == 1
    assert "marketplace hub has no version '3.0' of 'debian-12' (it has: 1.9, 1.10)" in result.stderr


def test_market_list_show_and_refresh(server: ImageServer, catalogue: dict[str, Path], tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, server, source="hub/debian-12")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="img")

    listed = workspace.run("market", "list", "hub", "-f", str(manifests), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["version"], r["importable"]) for r in rows] == [
        ("debian-12", "1.10", True),
        ("debian-12", "1.9", True),
    ]

    shown = workspace.run("market", "show", "hub/debian-12", "-f", str(manifests))
    assert shown.returncode == 0, shown.stderr
    assert "version 1.10  (newest)" in shown.stdout
    assert f"sha256: {sha256_of(catalogue['1.9'])}" in shown.stdout

    assert server.count("index.json") == 1  # the second command used the kept index
    refreshed = workspace.run("market", "refresh", "-f", str(manifests))
    assert refreshed.returncode == 0, refreshed.stderr
    assert "hub: 1 appliance(s), 2 version(s)" in refreshed.stdout
    assert server.count("index.json") == 2

    missing = workspace.run("market", "show", "hub/nothing", "-f", str(manifests))
    assert missing.returncode == 1
    assert "marketplace hub has no appliance 'nothing'" in missing.stderr


def test_market_list_reports_bad_entries_naming_them(server: ImageServer, tmp_path: Path) -> None:
    entries = [
        {"name": "good", "versions": [{"version": "1", "images": [{"url": "g", "sha256": "a" * 64}]}]},
        {"name": "bad", "versions": [{"version": "1", "images": [{"url": "b"}]}]},
    ]
    server.put("index.json", _index(entries))
    manifests = _manifests(tmp_path, server, source="hub/good")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="img")
    listed = workspace.run("market", "list", "-f", str(manifests))
    assert listed.returncode == 1
    assert "good" in listed.stdout
    assert "error: marketplace hub: appliances[1] (bad): versions.0.images.0.sha256: Field required" in listed.stderr


def test_the_progress_of_a_running_download_is_in_the_actions_result_in_the_database(
    server: ImageServer, catalogue: dict[str, Path], tmp_path: Path
) -> None:
    """What an API or dashboard reads while an import runs: the journal's copy of the download's figures."""
    newest = catalogue["1.10"]
    server.behave("debian-1.10.qcow2", Behaviour(stall_after=256 * 1024, stall=4.0))
    workspace = Workspace(tmp_path / "ws", manifests=_manifests(tmp_path, server, source="hub/debian-12"), stack="img")
    process = workspace.start_apply()
    seen: dict[str, Any] | None = None
    deadline = time.monotonic() + 60
    try:
        while seen is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            if not workspace.db_path.exists():
                continue
            with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(workspace.db_path, timeout=5) as db:
                for state, result in db.execute(
                    "SELECT state, result FROM apply_actions WHERE action_id LIKE 'image/%'"
                ):
                    progress = json.loads(result or "{}").get("progress")
                    if state == "running" and progress:
                        seen = progress
    finally:
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    assert seen is not None, "no progress was recorded while the download ran"
    assert seen["phase"] == "download" and seen["source"] == server.url("debian-1.10.qcow2")
    assert seen["total"] == newest.stat().st_size
    assert 0 < seen["bytes"] <= 256 * 1024  # caught in the middle: before the stall ended
