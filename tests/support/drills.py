"""Fault and crash drills on the simulated fleet: workspaces, manifest sets, subprocess applies, and the checks
that the fleet, the records and the journal agree after them.

Used by the apply integration tests (``tests/integration/applying``) and by ``bench/apply.py``. A ``Workspace``
is one database, one sim fleet file and one configuration, so drills can run side by side; ``audit`` is the
invariant every drill ends with: no duplicate or orphaned fleet object, a journal with no loose end, and
records whose applied specs are what the manifests ask for.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nebctl.controller.applying import Controller, PlannedApply, PlanOptions
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.settings import Settings
from nebctl.database.records import ApplyState
from nebctl.database.sealing import default_key_file, load_key_ring
from nebctl.database.store import Store
from nebctl.drivers.registry import build_registry
from nebctl.drivers.sim import Distribution, Latency, SimFleet
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.loading import load_paths
from nebctl.schemas.models import AnyManifest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO_ROOT / "manifests" / "examples"
NEBCTL = [sys.executable, "-m", "nebctl"]

FINAL_ACTION_STATES = {"succeeded", "failed", "skipped", "cancelled"}


def fleet_manifests(*, vms: int, hosts: int = 8, namespace: str = "default") -> str:
    """A manifest set of ``hosts`` big sim hosts, one image, one network and ``vms`` small VMs (one cloned disk
    and one leased NIC each): the shape of the crash drill and the benchmark."""
    documents = []
    names = [f"h{index:02d}" for index in range(hosts)]
    for name in names:
        documents.append(
            f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: {name}}}\n"
            f"spec: {{uri: 'sim://{name}?cpus=512&memory=4Ti&disk=100Ti', overcommit: {{cpu: 4}}}}\n"
        )
    documents.append(
        "apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: local}\n"
        f"spec: {{type: dir, path: /var/lib/nebctl/datastores/local, hosts: [{', '.join(names)}]}}\n"
    )
    documents.append(
        "apiVersion: nebctl/v1\nkind: Image\nmetadata: {name: base}\n"
        "spec: {source: /var/lib/nebctl/images/base.qcow2, format: qcow2, datastore: local}\n"
    )
    documents.append(
        "apiVersion: nebctl/v1\nkind: Network\nmetadata: {name: lan}\n"
        "spec: {mode: nat, cidr: 10.64.0.0/16, range: {first: 10.64.0.10, last: 10.64.250.250}}\n"
    )
    for index in range(vms):
        documents.append(
            f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: vm-{index:04d}, namespace: {namespace}}}\n"
            "spec:\n  vcpu: 1\n  memory: 512Mi\n  disks: [{image: base, size: 4Gi}]\n  nics: [{network: lan}]\n"
            "  placement: {policy: striping}\n"
        )
    return "---\n".join(documents)


@dataclass
class Workspace:
    """One drill's own database, sim fleet and configuration under ``root``."""

    root: Path
    manifests: Path = EXAMPLES
    stack: str = "drill"
    settings_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # JSON is YAML, and it carries nested settings (retry: {...}) without a YAML writer.
        config = {"state_dir": str(self.state_dir), **self.settings_overrides}
        self.config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @property
    def db_path(self) -> Path:
        return self.root / "nebctl.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def settings(self) -> Settings:
        return Settings.model_validate({"state_dir": self.state_dir, **self.settings_overrides})

    # --- running nebctl -----------------------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        return [*NEBCTL, "--db", self.db_url, "--config", str(self.config), *args]

    def apply_args(self, *extra: str) -> list[str]:
        return self.command("apply", "-f", str(self.manifests), "--stack", self.stack, "--yes", *extra)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, env=_env(), check=False
        )

    def apply(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.apply_args(*extra), capture_output=True, text=True, timeout=timeout, env=_env(), check=False
        )

    def destroy_args(self, *extra: str) -> list[str]:
        return self.command("destroy", "--stack", self.stack, "--yes", *extra)

    def destroy(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.destroy_args(*extra), capture_output=True, text=True, timeout=timeout, env=_env(), check=False
        )

    def start(self, args: Sequence[str]) -> subprocess.Popen[str]:
        """A nebctl command (``apply_args``, ``destroy_args``...) started in the background."""
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())

    def diff(self) -> subprocess.CompletedProcess[str]:
        return self.run("diff", "-f", str(self.manifests), "--stack", self.stack)

    def start_apply(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.apply_args(*extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )

    # --- the fleet, the store and the controller in this process --------------------------------------------

    @contextmanager
    def fleet(self) -> Iterator[SimFleet]:
        fleet = SimFleet(self.state_dir / "sim.db")
        try:
            yield fleet
        finally:
            fleet.close()

    def set_latency(self, low: float, high: float) -> None:
        with self.fleet() as fleet:
            fleet.set_latency(Latency("*", Distribution.UNIFORM, low, high))

    @contextmanager
    def store(self) -> Iterator[Store]:
        # The key the CLI uses with this configuration (secret.key in the state directory), so that secrets
        # sealed by a nebctl process compare with the manifests here too.
        store = Store.open(self.db_url, secrets=load_key_ring(default_key_file(self.state_dir)))
        try:
            yield store
        finally:
            store.close()

    def documents(self) -> dict[ResourceKey, AnyManifest]:
        return dict(load_paths([str(self.manifests)]).documents)

    def controller(self, store: Store) -> Controller:
        return Controller(store=store, registry=build_registry(self.settings), settings=self.settings)

    def plan(self, store: Store) -> PlannedApply:
        return self.controller(store).plan(self.documents(), PlanOptions(stack=self.stack))

    # --- watching a running apply through its journal --------------------------------------------------------

    def journal_progress(self, *, newer_than: int = 0) -> tuple[int, int]:
        """(actions finished, actions planned) of the newest apply if its id is above ``newer_than``, read
        straight from the database file; (0, 0) before there is one."""
        if not self.db_path.exists():
            return 0, 0
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as connection:
                row = connection.execute(
                    "SELECT count(*), coalesce(sum(state IN ('succeeded', 'failed', 'skipped', 'cancelled')), 0) "
                    "FROM apply_actions WHERE apply_id = (SELECT max(id) FROM applies) AND apply_id > ?",
                    (newer_than,),
                ).fetchone()
        except sqlite3.OperationalError:
            return 0, 0  # the schema is not there yet
        return int(row[1]), int(row[0])

    def newest_apply(self) -> tuple[int, bool]:
        """The id of the newest apply (0 when none) and whether it never finished (its process died)."""
        if not self.db_path.exists():
            return 0, False
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as connection:
                row = connection.execute("SELECT id, finished_at FROM applies ORDER BY id DESC LIMIT 1").fetchone()
        except sqlite3.OperationalError:
            return 0, False
        return (0, False) if row is None else (int(row[0]), row[1] is None)


def finish(process: subprocess.Popen[str], *, timeout: float) -> tuple[str, str]:
    """What ``process`` printed (stdout, stderr) once it exits. One that outlives ``timeout`` is killed before
    the timeout is raised: a hung CLI fails its own test, not whichever test the garbage collector next finds
    its open pipes in."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NEBCTL_DB", None)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "error"  # a warning in the CLI fails a drill just as it fails the test run
    env["PYTHONUNBUFFERED"] = "1"  # what a killed process printed before it died is what a user saw
    return env


def kill_after(
    workspace: Workspace, process: subprocess.Popen[str], *, finished: int, limit: float = 120
) -> tuple[int, str]:
    """SIGKILL ``process`` once ``finished`` actions of the apply it started are journalled as done (or it
    exits). Returns how many were done when it died (-1 when it had exited by itself first) and what it
    printed. Call it right after starting ``process``, before which the newest apply must be another's."""
    before, _ = workspace.newest_apply()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return -1, _printed(process)
        done, total = workspace.journal_progress(newer_than=before)
        if total and done >= finished and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            return done, _printed(process)
        time.sleep(0.003)
    process.kill()
    process.communicate()
    raise AssertionError(f"the apply did not reach {finished} finished actions in {limit}s")


def first_kill(
    prepare: Callable[[int], Workspace],
    start: Callable[[Workspace], subprocess.Popen[str]],
    *,
    finished: int,
    tries: int = 3,
) -> tuple[Workspace, int, str, list[str]]:
    """A round's first kill, in a fresh workspace (``prepare(try)``) each time until it lands.

    A process that runs its whole plan and exits 0 before the poller sees ``finished`` actions done (a starved
    poller on a busy machine) missed the drill's timing, and that round would kill nothing at all: it is tried
    again. A process that exits with an error is no miss but a failure, and is returned as such. Returns the
    workspace, where the kill landed (-1: never), what the killed process printed, and the misses."""
    misses: list[str] = []
    for attempt in range(tries):
        workspace = prepare(attempt)
        process = start(workspace)
        landed, output = kill_after(workspace, process, finished=finished)
        if landed >= 0 or process.returncode != 0:
            return workspace, landed, output, misses
        misses.append(f"try {attempt + 1} ran to its end before {finished} actions were seen done")
    return workspace, -1, output, misses


def _printed(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate()
    return f"{out}\n{err}"


# --- the audit --------------------------------------------------------------------------------------------------


def audit(workspace: Workspace) -> list[str]:
    """Everything wrong with a workspace that should have converged; empty when all is well."""
    problems: list[str] = []
    documents = workspace.documents()
    with workspace.store() as store, workspace.fleet() as fleet:
        records = {record.key: record for record in store.list_resources(stack=workspace.stack)}
        problems += _audit_records(documents, records)
        problems += _audit_fleet(documents, records, fleet)
        problems += _audit_journal(store, workspace.stack)
    return problems


def _audit_records(documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, Any]) -> list[str]:
    problems = []
    for key in documents:
        record = records.get(key)
        if record is None:
            problems.append(f"{key}: declared but not recorded")
            continue
        if record.applied is None or record.applied_hash is None:
            problems.append(f"{key}: no applied spec (status {record.status})")
        if record.desired_hash is None or record.status in ("creating", "updating", "deleting", "failed"):
            problems.append(f"{key}: left {record.status}")
    for key in records:
        if key not in documents:
            problems.append(f"{key}: recorded but not declared")
    return problems


def _audit_fleet(
    documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, Any], fleet: SimFleet
) -> list[str]:
    problems = []
    connection = fleet.store.read()
    vm_keys = [key for key in documents if key.kind is Kind.VIRTUAL_MACHINE]
    by_name = Counter(name for (name,) in connection.execute("SELECT name FROM vms"))
    uuids = {uuid: (host, name) for uuid, host, name in connection.execute("SELECT uuid, host, name FROM vms")}
    volumes = Counter(name for (name,) in connection.execute("SELECT name FROM volumes"))
    volume_hosts = {(host, name) for host, name in connection.execute("SELECT host, name FROM volumes")}
    leases = connection.execute("SELECT host, network, mac, vm_uuid FROM leases").fetchall()
    # The domain name of each VM's incarnation (``vm-0001~1`` after a create-first replacement).
    names = {key: VMIdentity.recorded(key, records[key].live if key in records else {}).name for key in vm_keys}
    explained_volumes: set[str] = set()
    explained_leases: set[tuple[str, str, str]] = set()
    for key in vm_keys:
        record = records.get(key)
        spec: Any = documents[key].spec
        if by_name[names[key]] != 1:
            problems.append(f"{key}: {by_name[names[key]]} sim VMs named {names[key]}")
        if record is None:
            continue
        live = record.live
        uuid = live.get("uuid")
        if uuid not in uuids or uuids[uuid] != (record.host, names[key]):
            problems.append(f"{key}: recorded uuid {uuid} on {record.host}, the fleet has {uuids.get(uuid)}")
        for index in range(len(spec.disks)):
            volume = (live.get(f"disk.{index}") or {}).get("volume")
            explained_volumes.add(str(volume))
            if volumes[volume] != 1:
                problems.append(f"{key}: disk {index} ({volume}) exists {volumes[volume]} times")
            elif (record.host, volume) not in volume_hosts:
                problems.append(f"{key}: disk {index} ({volume}) is not on {record.host}")
        for index in range(len(spec.nics)):
            nic = live.get(f"nic.{index}") or {}
            explained_leases.add((str(record.host), str(nic.get("network")), str(nic.get("mac"))))
        mine = [lease for lease in leases if lease[3] == uuid]
        if len(mine) != len(spec.nics):
            problems.append(f"{key}: {len(mine)} leases for {len(spec.nics)} NICs")
    declared = set(names.values())
    for uuid, (host, name) in uuids.items():
        if name not in declared:
            problems.append(f"orphan sim VM {name} ({uuid}) on {host}")
    images = {f"image-{key.name}" for key in documents if key.kind is Kind.IMAGE}
    for name in volumes:
        if name not in explained_volumes and name not in images:
            problems.append(f"orphan volume {name}")
    for host, network, mac, vm_uuid in leases:
        if (host, network, mac) not in explained_leases:
            problems.append(f"orphan lease {mac} on {host}/{network} (VM {vm_uuid})")
    return problems


def _audit_journal(store: Store, stack: str) -> list[str]:
    problems = []
    applies = store.list_applies(stack=stack, limit=1000)
    for apply in applies:
        if apply.finished_at is None or apply.state == ApplyState.RUNNING:
            problems.append(f"apply #{apply.id} neither finished nor marked interrupted ({apply.state})")
    if applies:
        last = applies[0]
        if last.state != ApplyState.SUCCEEDED:
            problems.append(f"the last apply #{last.id} is {last.state}")
        for action in store.actions_of(last.id):
            if action.state not in FINAL_ACTION_STATES:
                problems.append(f"apply #{last.id}: action {action.action_id} left {action.state}")
    return problems


# The sim fleet's tables of objects nebctl makes, and the columns that name one of them.
_FLEET_OBJECTS = {
    "vms": "host, name",
    "datastores": "host, name",
    "volumes": "host, datastore, name",
    "networks": "host, name",
    "leases": "host, network, mac",
    "security_groups": "host, name",
}


def audit_destroyed(workspace: Workspace) -> list[str]:
    """Everything wrong with a workspace whose stack should be destroyed: any record of the stack, any object
    left on the sim fleet (its fleet is the drill's own, so all of it was the stack's), a journal with a loose
    end or a last apply that did not succeed; empty when all is well."""
    problems: list[str] = []
    with workspace.store() as store, workspace.fleet() as fleet:
        for record in store.list_resources(stack=workspace.stack):
            problems.append(f"{record.key}: still recorded ({record.status})")
        connection = fleet.store.read()
        for table, columns in _FLEET_OBJECTS.items():
            for row in connection.execute(f"SELECT {columns} FROM {table}"):
                problems.append(f"left on the fleet: {table} {'/'.join(map(str, row))}")
        problems += _audit_journal(store, workspace.stack)
        problems += loose_actions(store, workspace.stack)
    return problems


def action_states(store: Store, apply_id: int) -> Counter[str]:
    return Counter(str(action.state) for action in store.actions_of(apply_id))


def loose_actions(store: Store, stack: str) -> list[str]:
    """Actions of finished applies (interrupted ones included) still journalled as pending or running."""
    loose = []
    for apply in store.list_applies(stack=stack, limit=1000):
        if apply.finished_at is None:
            continue
        for action in store.actions_of(apply.id):
            if action.state not in FINAL_ACTION_STATES:
                loose.append(f"apply #{apply.id} ({apply.state}): {action.action_id} {action.state}")
    return loose


def summary_lines(output: str) -> Sequence[str]:
    return [line for line in output.splitlines() if line.strip()]
