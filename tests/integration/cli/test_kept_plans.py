"""Kept plans (``controller.kept_plans``) end to end: real ``nebctl`` processes on the simulated fleet and SQLite.

A ``diff`` or ``apply`` that finds nothing to do keeps its plan; the next one whose inputs are all as they were
shows it again without planning (``-v`` says so). The statement of what is right is a ``diff`` run with the
caches turned off (``manifest_cache: false``) on a copy of the same database and fleet, taken just before: the
kept plan must never show anything else, whatever changed in between (a file rewritten within the same second
at the same size, the fleet changed by a command or by hand, the database written by another command or by
hand, the quotas, the key file, the options).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.cli.test_commands import NEBCTL, REPO, Env

SHOWN_AGAIN = "it is shown again"


class World(Env):
    """An ``Env`` that can also diff with the caches off, on a copy of its database and fleet."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.vms_file = self.manifests / "30-vms.yaml"
        self.original = self.vms_file.read_text()
        self.last_code = -1  # the exit code of the last ``kept``'s diff

    def diff(self, *args: str) -> tuple[int, str]:
        result = self.run("-v", "diff", "-f", str(self.manifests), *args)
        return result.returncode, result.stdout

    def kept(self, *args: str) -> bool:
        """Whether a diff now shows a kept plan (and it agrees with the uncached diff of the same state)."""
        truth = self.uncached_diff(*args)
        result = self.run("-v", "diff", "-f", str(self.manifests), *args)
        assert (result.returncode, result.stdout) == truth, result.stderr
        self.last_code = result.returncode
        return SHOWN_AGAIN in result.stderr

    def uncached_diff(self, *args: str) -> tuple[int, str]:
        """``diff`` with both caches off, on a copy of the database, the fleet and the key file (so that its own
        keeping of what it observed changes nothing the kept plan is checked against)."""
        copy = self.root / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        for name in ("nebctl.db", "sim.db"):
            with sqlite3.connect(self.root / name) as source, sqlite3.connect(copy / name) as target:
                source.backup(target)
        for name in ("secret.key", "installation.id"):
            if (self.root / name).exists():
                shutil.copy2(self.root / name, copy / name)
        config = copy / "config.yaml"
        config.write_text(f"state_dir: {copy}\nmanifest_cache: false\n")
        database = f"sqlite:///{copy / 'nebctl.db'}"
        result = subprocess.run(
            [*NEBCTL, "--db", database, "--config", str(config), "diff", "-f", str(self.manifests), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        return result.returncode, result.stdout

    def rewrite_same_second(self, text: str) -> None:
        """Write ``text`` over the VMs' file and give it back its modification time."""
        stat = self.vms_file.stat()
        self.vms_file.write_text(text)
        os.utime(self.vms_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture()
def world(tmp_path: Path) -> World:
    world = World(tmp_path)
    applied = world.run("apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return world


def test_an_unchanged_set_shows_the_kept_plan_for_diff_and_apply(world: World) -> None:
    first = world.run("-v", "diff", "-f", str(world.manifests))
    assert first.returncode == 0 and "No changes." in first.stdout
    assert SHOWN_AGAIN not in first.stderr  # the apply before changed the records: this one planned
    assert len(list((world.root / "cache" / "plans").glob("*/*"))) == 2  # the plan, and its inputs' digest apart

    again = world.run("-v", "diff", "-f", str(world.manifests))
    assert (again.returncode, again.stdout) == (0, first.stdout)
    assert SHOWN_AGAIN in again.stderr
    # Kept without its fingerprint, which no text shows: a JSON document, which does, plans (and keeps it with).
    as_json = world.run("-v", "diff", "-f", str(world.manifests), "-o", "json")
    assert SHOWN_AGAIN not in as_json.stderr
    assert (as_json.returncode, as_json.stdout) == world.uncached_diff("-o", "json")
    json_again = world.run("-v", "diff", "-f", str(world.manifests), "-o", "json")
    assert SHOWN_AGAIN in json_again.stderr
    assert (json_again.returncode, json_again.stdout) == (0, as_json.stdout)

    applied = world.run("-v", "apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0 and applied.stdout == first.stdout
    assert SHOWN_AGAIN in applied.stderr


def test_a_file_rewritten_in_the_same_second_at_the_same_size_is_planned(world: World) -> None:
    assert world.kept() or world.kept()
    edited = world.original.replace("vcpu: 2", "vcpu: 3", 1)
    assert len(edited) == len(world.original)
    world.rewrite_same_second(edited)
    assert not world.kept()
    code, out = world.diff()
    assert code == 2 and "to change" in out


@pytest.mark.parametrize(
    "change",
    [
        ["sim", "stop-vm", "web-1"],
        ["sim", "host-down", "kvm-a1"],
        ["sim", "set-memory", "web-2", "3Gi"],
        ["quota", "set", "namespace", "default", "--vms", "2"],
    ],
    ids=["vm-stopped", "host-down", "memory-changed", "quota"],
)
def test_a_change_by_another_command_is_planned(world: World, change: list[str]) -> None:
    assert world.kept() or world.kept()
    done = world.run(*change)
    assert done.returncode == 0, done.stderr
    assert not world.kept()


def test_changes_by_hand_to_the_fleet_and_the_database_are_planned(world: World) -> None:
    assert world.kept() or world.kept()
    with sqlite3.connect(world.root / "sim.db") as fleet:  # a VM stopped behind every nebctl command's back
        assert fleet.execute("UPDATE vms SET state = 'stopped' WHERE name = 'web-3'").rowcount == 1
    assert not world.kept()
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    assert world.kept() or world.kept()
    # A record edited by hand: its applied spec. Such an edit raises no change counter; the table's summary
    # (``Store.resources_stamp``: lengths, times, counts) sees it unless it keeps every length and time.
    with sqlite3.connect(world.root / "nebctl.db") as database:
        changed = database.execute(
            "UPDATE resources SET applied = replace(applied, '\"vcpu\": 2', '\"vcpu\": 12') WHERE name = 'web-1'"
        ).rowcount
        assert changed == 1
    assert not world.kept()


def test_options_key_file_and_a_removed_file_are_planned(world: World) -> None:
    assert world.kept() or world.kept()
    hooks = world.manifests / "40-hooks.yaml"
    saved = hooks.read_text()
    hooks.unlink()
    assert not world.kept()
    assert not world.kept("--prune")  # the same files, another option
    hooks.write_text(saved)
    assert world.kept() or world.kept()
    key = world.root / "secret.key"
    key.write_text(key.read_text().replace(key.read_text().strip()[-4:], "AAAA"))
    assert not world.kept()  # the secrets sealed with the old key cannot be compared: the plan says so


def _plan_entry(world: World) -> Path:
    """The kept plan's file: the larger of the two kept for it (the other holds its inputs' digest)."""
    return max((world.root / "cache" / "plans").glob("*/*"), key=lambda path: path.stat().st_size)


def test_a_corrupt_or_truncated_kept_plan_is_ignored(world: World) -> None:
    assert world.kept() or world.kept()
    entry = _plan_entry(world)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])
    assert not world.kept()
    assert world.kept()  # kept again by the run before
    entry = _plan_entry(world)
    flipped = bytearray(entry.read_bytes())
    flipped[-10] ^= 0xFF
    entry.write_bytes(bytes(flipped))
    assert not world.kept()


def test_requirements_reading_the_load_keep_no_plan(world: World) -> None:
    text = world.original.replace(
        "requirements: \"labels.zone == 'a'\"", "requirements: \"load < 2 and labels.zone == 'a'\""
    )
    assert text != world.original
    world.vms_file.write_text(text)
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    assert world.diff()[0] == 0
    assert not world.kept() and not world.kept()
    world.vms_file.write_text(world.original)  # the same change back: plans are kept again
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    assert world.kept() or world.kept()


# --- property: for random edits, the kept plan never shows anything but what planning shows ----------------------

EDITS = st.sampled_from(
    [
        "edit-file",
        "revert-file",
        "same-second-edit",
        "touch",
        "stop-vm",
        "host-down",
        "host-up",
        "apply",
        "quota",
        "no-quota",
        "nothing",
    ]
)


def _do(world: World, edit: str) -> None:
    if edit == "edit-file":
        world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    elif edit == "revert-file":
        world.vms_file.write_text(world.original)
    elif edit == "same-second-edit":
        current = world.vms_file.read_text()
        world.rewrite_same_second(current.replace("vcpu: 2", "vcpu: 3", 1) if "vcpu: 2" in current else current)
    elif edit == "touch":
        world.vms_file.write_text(world.vms_file.read_text())
    elif edit == "stop-vm":
        world.run("sim", "stop-vm", "web-1")
    elif edit == "host-down":
        world.run("sim", "host-down", "kvm-b1")
    elif edit == "host-up":
        world.run("sim", "host-up", "kvm-b1")
    elif edit == "apply":
        world.run("apply", "-f", str(world.manifests), "--yes")
    elif edit == "quota":
        world.run("quota", "set", "namespace", "default", "--vms", "3")
    elif edit == "no-quota":
        world.run("quota", "delete", "namespace", "default")


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(EDITS, min_size=2, max_size=5))
def test_the_kept_plan_always_agrees_with_planning(tmp_path_factory: pytest.TempPathFactory, edits: list[str]) -> None:
    world = World(tmp_path_factory.mktemp("kept"))
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    world.kept()
    for edit in edits:
        _do(world, edit)
        world.kept()  # asserts the agreement
        # Again, now that this state's plan is kept if it changed nothing (these manifests read no usage figure).
        assert world.kept() == (world.last_code == 0)


# --- kept observations: an edited set is planned on the last observation while the fleet is as it was -----------

REUSED = "that observation is reused"


def counters(world: World) -> dict[str, int]:
    with sqlite3.connect(world.root / "nebctl.db") as database:
        return dict(database.execute("SELECT name, value FROM change_counters"))


def test_an_edit_is_planned_on_the_last_observation_and_writes_nothing(world: World) -> None:
    assert world.diff()[0] == 0  # observes (the apply moved the fleet) and keeps what it saw
    before = counters(world)
    world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    truth = world.uncached_diff()
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert REUSED in result.stderr
    assert (result.returncode, result.stdout) == truth and result.returncode == 2
    assert counters(world) == before  # its rows are those of the observation it reused: nothing written again

    # Something else written since (a quota): the observation is still reused, and kept in the database again.
    assert world.run("quota", "set", "namespace", "default", "--vms", "100").returncode == 0
    written = counters(world)
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert REUSED in result.stderr and (result.returncode, result.stdout) == world.uncached_diff()
    assert counters(world) == {**written, "resources": written["resources"] + 1}


@pytest.mark.parametrize(
    "change",
    [["sim", "stop-vm", "web-1"], ["sim", "set-memory", "web-2", "3Gi"], ["sim", "host-down", "kvm-a1"]],
    ids=["vm-stopped", "memory-changed", "host-down"],
)
def test_a_fleet_that_moved_is_observed_again(world: World, change: list[str]) -> None:
    assert world.diff()[0] == 0
    assert world.run(*change).returncode == 0
    world.vms_file.write_text(world.original.replace("vcpu: 2", "vcpu: 3", 1))
    truth = world.uncached_diff()
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert REUSED not in result.stderr
    assert (result.returncode, result.stdout) == truth


def test_requirements_reading_the_load_are_observed_every_time(world: World) -> None:
    text = world.original.replace(
        "requirements: \"labels.zone == 'a'\"", "requirements: \"load < 50 and labels.zone == 'a'\""
    )
    assert text != world.original
    world.vms_file.write_text(text)
    assert world.diff()[0] == 2
    world.vms_file.write_text(text.replace("vcpu: 2", "vcpu: 3", 1))
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert REUSED not in result.stderr and result.returncode == 2
