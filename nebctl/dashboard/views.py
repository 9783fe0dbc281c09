"""What each dashboard page shows, read from the database and the running service and shaped for its template.

One function per page (``overview``, ``stack``, ``hosts``, ``vm``, ``apply``, ``events``); each reads with the
store's bulk methods (one query per table, never one per resource), so a page of a 10,000-resource stack costs a
handful of queries. Specs are shown masked (``(sensitive)``), as ``nebctl describe`` shows them. Used by
``dashboard.app``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from nebctl.controller.serving.sources import Snapshot
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Plan
from nebctl.dashboard.charts import Step, Timeline, line_chart, timeline
from nebctl.database.records import (
    ActionRecord,
    ApplyRecord,
    EventRecord,
    HostSampleRecord,
    ResourceRecord,
    StackStatusRecord,
)
from nebctl.database.store import Store
from nebctl.rendering import render_text
from nebctl.rendering.resources import masked, readable

GIB = 1024**3
ACTIONS_PER_PAGE = 200  # bars and rows of one apply timeline page
SHOWN_PER_GROUP = 100  # rows of one host's group before "show all" (a 10,000-VM stack stays one quick page)


class DashboardService(Protocol):
    """What the dashboard needs of the running service (``controller.serving.Service`` is one)."""

    store: Store
    stack: str
    self_heal: bool
    source_error: str | None

    @property
    def snapshot(self) -> Snapshot | None: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...

    def pending_plan(self) -> Plan: ...

    def set_self_heal(self, enabled: bool, *, by: str) -> None: ...


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(moment: datetime | None) -> str:
    moment = _aware(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"


def _quantity(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


# --- overview -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackRow:
    name: str
    status: str
    health: dict[str, int]
    drift: int
    failures: int
    last_sync: str
    last_result: str
    revision: str
    author: str
    subject: str
    message: str | None
    problems: tuple[str, ...]
    served: bool  # this process's stack (it can sync it and switch its mode)


def _stack_row(status: StackStatusRecord, health: Counter[str], failures: int, served: str) -> StackRow:
    commit = (status.source or {}).get("commit") or {}
    return StackRow(
        name=status.stack,
        status=str(status.sync_status),
        health=dict(sorted(health.items())),
        drift=health.get("out of sync", 0),
        failures=failures,
        last_sync=when(status.last_sync_at),
        last_result=status.last_sync_result or "-",
        revision=status.revision or "-",
        author=str(commit.get("author") or "-"),
        subject=str(commit.get("subject") or "-"),
        message=status.message,
        problems=tuple(status.problems),
        served=status.stack == served,
    )


def overview(service: DashboardService, visible: Callable[[str], bool]) -> dict[str, Any]:
    """The stacks ``visible`` says the user may see."""
    store = service.store
    statuses = [s for s in store.list_stack_statuses() if visible(s.stack)]
    health: dict[str, Counter[str]] = defaultdict(Counter)
    failures: Counter[str] = Counter()
    for stack_name, by_health in store.health_counts().items():
        for state, (total, failed) in by_health.items():
            health[stack_name][state] = total
            failures[stack_name] += failed
    rows = [_stack_row(s, health[s.stack], failures[s.stack], service.stack) for s in statuses]
    return {"stacks": rows, "served": service.stack}


def banner(service: DashboardService) -> list[str]:
    """What the service cannot reach, as sentences for the page's banner (empty when all is well)."""
    _, checks = service.ready()
    problems = []
    if not checks.get("database", True):
        problems.append(f"The database does not answer: {checks.get('database_error', 'unknown error')}")
    if not checks.get("source", True):
        problems.append("The manifests have not been loaded yet (or the source cannot be reached).")
    if service.source_error:
        problems.append(
            f"The source of stack {service.stack} cannot be fetched: {service.source_error}. "
            "The last fetched commit stays applied."
        )
    return problems


# --- stack ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRow:
    kind: str
    namespace: str
    name: str
    health: str
    message: str
    status: str
    networks: str
    link: str | None


@dataclass(frozen=True)
class HostGroup:
    host: str
    total: int
    rows: list[ResourceRow]


@dataclass(frozen=True)
class PlanLine:
    text: str
    css: str  # create, update, delete, replace, comment, or "" (the symbol is in the text too)


def networks_of(snapshot: Snapshot | None) -> dict[ResourceKey, list[str]]:
    """The networks each VM of the loaded manifests is attached to (read from the manifests in memory, not from
    the records' specs: decoding 10,000 specs would cost the stack page a second)."""
    if snapshot is None or snapshot.documents is None:
        return {}
    found: dict[ResourceKey, list[str]] = {}
    for key, document in snapshot.documents.items():
        if key.kind is Kind.VIRTUAL_MACHINE:
            nics = getattr(getattr(document, "spec", None), "nics", None) or []
            found[key] = [str(nic.network) for nic in nics if getattr(nic, "network", None)]
    return found


def stack(service: DashboardService, name: str, *, show_all: bool = False) -> dict[str, Any] | None:
    store = service.store
    status = store.stack_status(name)
    records = store.list_resource_summaries(stack=name)
    if status is None and not records:
        return None
    attached = networks_of(service.snapshot) if name == service.stack else {}
    by_host: dict[str, list[ResourceRow]] = defaultdict(list)
    on_host: Counter[str] = Counter()
    networks: dict[str, int] = Counter()
    others: list[ResourceRow] = []
    counts: Counter[str] = Counter()
    failing = 0
    for record in records:
        health = record.health or "-"
        counts[health] += 1
        failing += record.failures > 0
        vm = record.kind is Kind.VIRTUAL_MACHINE
        nets = attached.get(ResourceKey(record.kind, record.namespace, record.name), ()) if attached and vm else ()
        for net in nets:
            networks[net] += 1
        host = record.host or "(not placed)"
        if vm:
            on_host[host] += 1
            if not show_all and on_host[host] > SHOWN_PER_GROUP:
                continue  # counted, not shown: a row costs more than a count
        row = ResourceRow(
            kind=record.kind.short,
            namespace=record.namespace,
            name=record.name,
            health=health,
            message=record.message or "",
            status=record.status,
            networks=", ".join(nets),
            link=f"/vms/{record.namespace}/{record.name}" if vm else None,
        )
        if vm:
            by_host[host].append(row)
        else:
            others.append(row)
    groups = [HostGroup(host, on_host[host], rows) for host, rows in sorted(by_host.items())]
    applies = store.list_applies(stack=name, limit=10, plans=False)
    return {
        "name": name,
        "status": _stack_row(status, Counter({k: v for k, v in counts.items() if k != "-"}), failing, service.stack)
        if status
        else None,
        "groups": groups,
        "others": others,
        "networks": sorted(networks.items()),
        "counts": dict(sorted(counts.items())),
        "total": len(records),
        "show_all": show_all,
        "truncated": any(g.total > len(g.rows) for g in groups),
        "applies": [apply_row(a) for a in applies],
        "served": name == service.stack,
        "self_heal": service.self_heal,
    }


def plan_lines(plan: Plan) -> list[PlanLine]:
    """The plan as ``nebctl diff`` prints it (without colour), each line tagged with what it does."""
    lines = []
    for text in render_text(plan, color=False).splitlines():
        stripped = text.lstrip()
        if stripped.startswith(("+/-", "-/+")):
            css = "replace"
        elif stripped.startswith("+"):
            css = "create"
        elif stripped.startswith("~"):
            css = "update"
        elif stripped.startswith("-"):
            css = "delete"
        elif stripped.startswith("#"):
            css = "comment"
        else:
            css = ""
        lines.append(PlanLine(text, css))
    return lines


# --- applies ----------------------------------------------------------------------------------------------------


def apply_row(apply: ApplyRecord) -> dict[str, Any]:
    summary = apply.summary or {}
    return {
        "id": apply.id,
        "state": apply.state,
        "started": when(apply.started_at),
        "finished": when(apply.finished_at) if apply.finished_at else "running",
        "revision": apply.revision or "-",
        "holder": apply.holder,
        "summary": ", ".join(f"{k} {v}" for k, v in sorted(summary.items()) if isinstance(v, int | str)),
    }


def _step(action: ActionRecord) -> Step:
    return Step(
        action_id=action.action_id,
        label=f"{action.operation} {action.kind.short}/{action.name}" + (f" on {action.host}" if action.host else ""),
        state=str(action.state),
        attempts=action.attempts,
        started_at=_aware(action.started_at),
        finished_at=_aware(action.finished_at),
        error=action.error,
    )


@dataclass(frozen=True)
class ActionPage:
    """Which slice of an apply's actions one timeline page shows (1-based, in journal order)."""

    number: int
    count: int
    first: int  # the first action shown, 1-based
    last: int
    total: int

    @property
    def earlier(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def later(self) -> int | None:
        return self.number + 1 if self.number < self.count else None


def action_page(total: int, page: int, per_page: int = ACTIONS_PER_PAGE) -> ActionPage:
    """The page ``page`` of ``total`` actions, moved into range (a page past the end shows the last one)."""
    count = max(1, -(-total // per_page))
    number = min(max(page, 1), count)
    first = (number - 1) * per_page
    return ActionPage(number, count, min(first + 1, total), min(first + per_page, total), total)


def apply(store: Store, apply_id: int, *, now: datetime | None = None, page: int = 1) -> dict[str, Any] | None:
    """An apply's timeline and actions. The axis spans the whole apply; the bars, rows and errors shown are one
    page of ``ACTIONS_PER_PAGE`` actions, so a page of a 10,000-action apply, reloaded each second while it
    runs, stays small. Every failed action is listed (up to a page's worth) with a link to its page."""
    record = store.get_apply(apply_id)
    if record is None:
        return None
    actions = store.actions_of(apply_id)
    steps = [_step(a) for a in actions]
    chart: Timeline = timeline(steps, now=now or datetime.now(UTC), begin=_aware(record.started_at))
    shown = action_page(len(steps), page)
    window = slice(shown.first - 1, shown.last) if steps else slice(0, 0)
    failed = [(bar, index // ACTIONS_PER_PAGE + 1) for index, bar in enumerate(chart.bars) if bar.error]
    depends = {a.action_id: ", ".join(a.depends_on) for a in actions[window]}
    return {
        "apply": apply_row(record),
        "stack": record.stack,
        "timeline": Timeline(chart.bars[window], span=chart.span, start=chart.start),
        "rows": list(zip(chart.bars[window], steps[window], strict=True)),
        "pages": shown,
        "failed": failed[:ACTIONS_PER_PAGE],
        "failed_total": len(failed),
        "depends": depends,
        "running": record.finished_at is None,
        "states": dict(Counter(str(a.state) for a in actions)),
    }


# --- hosts and VMs ---------------------------------------------------------------------------------------------


def _percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _bars(sample: HostSampleRecord, vcpu: int, memory: int) -> list[dict[str, Any]]:
    return [
        {
            "label": "CPU allocated",
            "percent": _percent(vcpu, sample.cpu_total),
            "text": f"{vcpu} of {sample.cpu_total} vCPU",
        },
        {
            "label": "CPU used",
            "percent": _percent(sample.cpu_load, sample.cpu_total),
            "text": f"load {sample.cpu_load:.2f} of {sample.cpu_total}",
        },
        {
            "label": "Memory allocated",
            "percent": _percent(memory, sample.memory_total),
            "text": f"{_quantity(memory)} of {_quantity(sample.memory_total)}",
        },
        {
            "label": "Memory used",
            "percent": _percent(sample.memory_used, sample.memory_total),
            "text": f"{_quantity(sample.memory_used)} of {_quantity(sample.memory_total)}",
        },
        {
            "label": "Disk used",
            "percent": _percent(sample.disk_used, sample.disk_total),
            "text": f"{_quantity(sample.disk_used)} of {_quantity(sample.disk_total)}",
        },
    ]


def _allocations(records: Sequence[ResourceRecord]) -> tuple[dict[str, int], dict[str, int], Counter[str]]:
    vcpu: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for record in records:
        spec = record.applied or record.desired or {}
        spec = spec.get("spec", spec) if isinstance(spec, dict) else {}
        if not record.host or not isinstance(spec, dict):
            continue
        vcpu[record.host] += int(spec.get("vcpu") or 0)
        memory[record.host] += int(spec.get("memory") or 0)
        count[record.host] += 1
    return dict(vcpu), dict(memory), count


def hosts(store: Store, *, hours: float = 6.0, now: datetime | None = None) -> dict[str, Any]:
    latest = store.latest_host_samples()
    vcpu, memory, count = _allocations(store.list_resources(kind=Kind.VIRTUAL_MACHINE))
    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    history: dict[str, list[HostSampleRecord]] = defaultdict(list)
    for sample in store.host_samples(since=since):
        history[sample.host].append(sample)
    rows = []
    for name, sample in sorted(latest.items()):
        samples = history.get(name, [])
        rows.append(
            {
                "name": name,
                "state": sample.state,
                "sampled": when(sample.time),
                "vms": count.get(name, 0),
                "bars": _bars(sample, vcpu.get(name, 0), memory.get(name, 0)),
                "cpu": line_chart(
                    f"CPU load of {name}",
                    [("load", [(_aware(s.time) or s.time, s.cpu_load) for s in samples])],
                    y_max=float(sample.cpu_total),
                ),
                "memory": line_chart(
                    f"Memory used by {name}",
                    [("used", [(_aware(s.time) or s.time, s.memory_used / GIB) for s in samples])],
                    y_max=sample.memory_total / GIB,
                    unit=" GiB",
                ),
            }
        )
    return {"hosts": rows, "hours": hours}


def vm(store: Store, namespace: str, name: str, *, hours: float = 6.0, now: datetime | None = None) -> dict[str, Any]:
    key = ResourceKey(Kind.VIRTUAL_MACHINE, namespace, name)
    record = store.get_resource(key)
    if record is None:
        return {}
    observation = store.get_observation(key)
    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    samples = store.vm_samples(vm=key, since=since)
    actions: list[tuple[int, ActionRecord]] = []
    for applied in store.list_applies(stack=record.stack, limit=5, plans=False):
        actions += [(applied.id, a) for a in store.actions_of(applied.id) if a.kind is key.kind and a.name == name]
    events = store.list_events(key=key, limit=50, newest=True)
    points = [(_aware(s.time) or s.time, s) for s in samples]
    return {
        "record": record,
        "key": key,
        "spec": readable(masked(dict(record.applied or record.desired or {}))),
        "live": readable(masked(dict(record.live))),
        "state": observation.state if observation else (samples[-1].state if samples else "not observed"),
        "observed": when(observation.observed_at if observation else samples[-1].time if samples else None),
        "cpu": line_chart(f"CPU of {name}", [("cpu", [(t, s.cpu) for t, s in points])], unit=" %"),
        "memory": line_chart(
            f"Memory used by {name}", [("used", [(t, s.memory_used / GIB) for t, s in points])], unit=" GiB"
        ),
        "history": store.list_history(vm=key),
        "actions": actions,
        "events": events[::-1],
        "when": when,
    }


# --- events -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    stack: str | None = None
    severity: str | None = None
    type: str | None = None  # a prefix: "vm." matches vm.stopped, vm.unknown...
    resource: str | None = None  # a substring of kind/namespace/name

    def matches(self, event: EventRecord) -> bool:
        if self.stack and event.stack != self.stack:
            return False
        if self.severity and str(event.severity) != self.severity:
            return False
        if self.type and not event.type.startswith(self.type):
            return False
        if self.resource:
            name = f"{event.kind.short if event.kind else ''}/{event.namespace or ''}/{event.name or ''}"
            if self.resource not in name:
                return False
        return True

    def query(self) -> str:
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in vars(self).items() if v})


def event_row(event: EventRecord) -> dict[str, Any]:
    resource = f"{event.kind.short}/{event.name}" if event.kind and event.name else ""
    return {
        "id": event.id,
        "time": when(event.time),
        "severity": str(event.severity),
        "type": event.type,
        "stack": event.stack or "",
        "resource": resource,
        "link": f"/vms/{event.namespace}/{event.name}" if event.kind is Kind.VIRTUAL_MACHINE else None,
        "message": event.message,
    }


def events(
    store: Store, selection: EventFilter, *, visible: Callable[[EventRecord], bool], limit: int = 200
) -> dict[str, Any]:
    """The newest ``limit`` events that match ``selection`` among the last ``5 * limit``, and that the user may
    see."""
    found = store.list_events(limit=limit * 5, newest=True)
    recent = [e for e in found if selection.matches(e) and visible(e)][-limit:]
    last = store.list_events(limit=1, newest=True)
    return {
        "events": [event_row(e) for e in reversed(recent)],
        "after": last[0].id if last else 0,
        "filter": selection,
    }
