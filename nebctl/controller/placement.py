"""Placement: choosing a host for each VM at plan time (docs/placement.md).

The planner calls ``place`` with the VMs to place and the hosts as monitoring last saw them; the plan shows the
result, and ``nebctl validate`` can use it to report impossible placements. This module is pure and
deterministic: no I/O, no clock, no randomness; the same input always gives the same decisions.

Capacity of a host (the plan's own allocations count as it goes)::

    free_cpu    = (cpus - reserved_cpu) * overcommit_cpu - allocated_cpu - vCPUs placed there by this call
    free_memory = floor((memory - reserved_memory) * overcommit_memory) - allocated_memory - memory placed
    disk_free   = disk_free - disks placed there by this call        (None on the host: not checked)

``allocated_*`` must describe what is on the host *besides* the requests of this call: a VM being planned
is counted by the call itself, where it is placed.

Order of work, which decides who gets the room when it is short:

1. VMs that stay where they are: a request whose ``current_host`` is among the hosts, that host is still
   allowed (its fixed ``placement.host`` when it has one, else the requirements hold there; requirements
   reading free or allocated capacity are admission checks, not re-checked for a VM already there) and the
   VM still fits. Placement is sticky, so re-plans cause no churn, and existing VMs are never displaced by new ones.
   A disabled or offline host keeps its VMs: disabling drains new placements, it does not evict. A VM that
   stays is not charged its disk again (it is already there). In VM-name order.
2. VMs with a fixed ``placement.host``: the host must exist and be enabled, and the VM must fit. By name.
3. The others, largest first (memory, then vCPUs, then disk, descending), then by name: big VMs placed
   first fragment hosts less. Each goes to the best candidate: an enabled, online host whose
   ``requirements`` hold and which has room, ranked by

   - ``packing`` (the default): fullest first, meaning the least free memory that still fits, then the least
     free CPU (best fit: hosts are filled one after another);
   - ``striping``: emptiest first, the most free memory, then the most free CPU;
   - ``load``: the lowest measured CPU load, counting the vCPUs this call put there as fully busy
     (``load + placed_vcpus / cpus``), so one plan does not pile everything onto the idlest host;
   - ``rank``: the highest value of the expression;

   and host name breaks every tie.

A VM that fits nowhere gets a decision with ``host=None`` and a reason for every host. Decisions come back in
the order of the requests.

Cloud hosts (bursting). A host with ``slots`` (a cloud host's capacity map: instance type -> size and count)
has room as long as a type that fits is left: the VM's ``placement.instanceType``, else the smallest type of
the map with a count left that has its vCPUs and memory; placing it takes one of that type, and the decision
names it. Its ``free_cpu`` and ``free_memory`` are the sums over the types left. Hosts are grouped by ``tier``
before the policy ranks them: a lower tier first (local hosts are tier 0, cloud hosts tier 1 unless their
manifest says otherwise), so a VM bursts to the cloud only when no local host fits. A VM's
``placement.burst`` changes that: ``first`` reverses the tiers (cloud first), ``never`` keeps it off cloud
hosts. A decision on a host above the lowest tier says why (``reason``).

Attributes that ``requirements`` and ``rank`` can read (see docs/placement.md): ``name``, ``cpus``, ``memory``,
``load``, ``free_cpu``, ``free_memory``, ``allocated_cpu``, ``allocated_memory`` (both including this call's
placements), ``disk_free`` (when known), ``labels.KEY``, ``custom.KEY``, and each custom key at the top level
when it does not clash with one of these names.

How it stays fast (100,000 VMs over 1,000 hosts): requests with the same rules and the same size share a
"bucket", whose candidates sit in a heap ordered by the policy. Free capacity only shrinks during a call, so a
host that cannot take a bucket's size is dropped from that bucket for good. Hosts whose state changed are
recorded in a recency list, and a bucket re-inserts only those hosts (with a fresh key) before it is used,
so stale heap entries are recognised by their version and skipped. Static requirements and ranks (reading no
capacity attribute) are evaluated once per (rule, host).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from nebctl.core.keys import ResourceKey
from nebctl.core.quantities import format_quantity
from nebctl.schemas import expressions
from nebctl.schemas.instance_types import InstanceType, size_key
from nebctl.schemas.models import AnyManifest, BurstPolicy, Placement, PlacementPolicy, VirtualMachine

# CPU capacity is a float (fractional CPUs, overcommit ratios); a tolerance keeps 4 * 1.1 - 0.4 == 4 a fit.
_CPU_TOLERANCE = 1e-9

# Names whose value changes as this call places VMs; expressions reading them are re-evaluated per change.
DYNAMIC_NAMES = frozenset({"free_cpu", "free_memory", "allocated_cpu", "allocated_memory", "disk_free"})
BUILTIN_NAMES = frozenset({"name", "cpus", "memory", "load", "labels", "custom"}) | DYNAMIC_NAMES
# Names read from a host's usage figures, which move with the clock, not with anything nebctl or a user does.
USAGE_NAMES = frozenset({"load"})

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class HostCandidate:
    """A host as the scheduler sees it: capacity, settings and the latest monitoring figures."""

    name: str
    enabled: bool = True
    online: bool = True
    cpus: float = 0.0
    memory: int = 0
    reserved_cpu: float = 0.0
    reserved_memory: int = 0
    overcommit_cpu: float = 1.0
    overcommit_memory: float = 1.0
    allocated_cpu: float = 0.0
    allocated_memory: int = 0
    disk_free: int | None = None  # None: unknown, not checked
    load: float = 0.0  # measured CPU usage, 0..1
    labels: Mapping[str, str] = field(default_factory=dict)
    custom: Mapping[str, str] = field(default_factory=dict)  # probe KEY=VALUE pairs
    tier: int = 0  # lower tiers are tried first (cloud hosts default to 1)
    cloud: bool = False
    # A cloud host's capacity map: instance type -> (its size, how many may run). None: a host with CPUs and
    # memory, sized by the fields above.
    slots: Mapping[str, tuple[InstanceType, int]] | None = None


@dataclass(frozen=True)
class PlacementRequest:
    """One VM to place: its size, its placement rules, and where it runs now (if anywhere)."""

    vm: str
    vcpu: int
    memory: int
    disk: int = 0
    placement: Placement = field(default_factory=Placement)
    current_host: str | None = None


@dataclass(frozen=True)
class PlacementDecision:
    """Where a VM goes; when ``host`` is None, ``reasons`` says for each host why it was not chosen."""

    vm: str
    host: str | None
    reasons: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    instance_type: str | None = None  # on a cloud host: the type the VM takes
    reason: str = ""  # why this host, when it is not of the lowest tier (a burst)


# --- Working state ----------------------------------------------------------------------------------------


class _Slot:
    """One instance type of a cloud host's capacity map, and how many are left in this call."""

    __slots__ = ("kind", "left")

    def __init__(self, kind: InstanceType, left: int) -> None:
        self.kind = kind
        self.left = left

    def takes(self, vcpu: int, memory: int) -> bool:
        return self.left > 0 and self.kind.vcpu >= vcpu and self.kind.memory >= memory


class _Host:
    """Mutable per-call state of one host; ``version`` changes with every allocation."""

    __slots__ = (
        "_attributes",
        "_attributes_version",
        "base_free_cpu",
        "candidate",
        "free_cpu",
        "free_disk",
        "free_memory",
        "index",
        "name",
        "placed_cpu",
        "placed_memory",
        "slots",
        "static_attributes",
        "version",
    )

    def __init__(self, index: int, candidate: HostCandidate) -> None:
        self.index = index
        self.candidate = candidate
        self.name = candidate.name
        self.base_free_cpu = (candidate.cpus - candidate.reserved_cpu) * candidate.overcommit_cpu
        self.base_free_cpu -= candidate.allocated_cpu
        # Integer vCPUs are summed apart from the float base, so rounding does not accumulate.
        self.placed_cpu = 0
        self.free_cpu = self.base_free_cpu
        schedulable = math.floor((candidate.memory - candidate.reserved_memory) * candidate.overcommit_memory)
        self.free_memory = schedulable - candidate.allocated_memory
        self.placed_memory = 0
        self.free_disk = candidate.disk_free
        self.slots: dict[str, _Slot] | None = None
        if candidate.slots is not None:
            self.slots = {name: _Slot(kind, count) for name, (kind, count) in candidate.slots.items()}
            self._sum_slots()
        self.version = 0
        static: dict[str, object] = {key: value for key, value in candidate.custom.items() if key not in BUILTIN_NAMES}
        static.update(
            name=candidate.name,
            cpus=candidate.cpus,
            memory=candidate.memory,
            load=candidate.load,
            labels=candidate.labels,
            custom=candidate.custom,
        )
        self.static_attributes = static
        self._attributes: dict[str, object] = {}
        self._attributes_version = -1

    def attributes(self) -> Mapping[str, object]:
        if self._attributes_version != self.version:
            attributes = dict(self.static_attributes)
            attributes.update(
                free_cpu=self.free_cpu,
                free_memory=self.free_memory,
                allocated_cpu=self.candidate.allocated_cpu + self.placed_cpu,
                allocated_memory=self.candidate.allocated_memory + self.placed_memory,
            )
            if self.free_disk is not None:
                attributes["disk_free"] = self.free_disk
            self._attributes = attributes
            self._attributes_version = self.version
        return self._attributes

    def _sum_slots(self) -> None:
        assert self.slots is not None
        self.free_cpu = float(sum(slot.kind.vcpu * slot.left for slot in self.slots.values()))
        self.free_memory = sum(slot.kind.memory * slot.left for slot in self.slots.values())

    def slot_for(self, vcpu: int, memory: int, instance_type: str | None) -> str | None:
        """The instance type a VM of this size takes on this cloud host, or None when none is left."""
        assert self.slots is not None
        if instance_type is not None:
            slot = self.slots.get(instance_type)
            return instance_type if slot is not None and slot.takes(vcpu, memory) else None
        fitting = [slot.kind for slot in self.slots.values() if slot.takes(vcpu, memory)]
        return min(fitting, key=size_key).name if fitting else None

    def fits(self, vcpu: int, memory: int, disk: int, instance_type: str | None = None) -> bool:
        if self.slots is not None:
            return self.slot_for(vcpu, memory, instance_type) is not None
        return (
            vcpu <= self.free_cpu + _CPU_TOLERANCE
            and memory <= self.free_memory
            and (self.free_disk is None or disk <= self.free_disk)
        )

    def shortage(self, vcpu: int, memory: int, disk: int, instance_type: str | None = None) -> str | None:
        """Why a VM of this size does not fit, or None when it does."""
        if self.slots is not None:
            if self.slot_for(vcpu, memory, instance_type) is not None:
                return None
            size = f"{vcpu} vCPU, {format_quantity(memory)} memory"
            if instance_type is None:
                return f"no instance type of the capacity map left with {size}"
            slot = self.slots.get(instance_type)
            if slot is None:
                return f"instance type {instance_type} is not in the capacity map"
            if slot.left <= 0:
                return f"no {instance_type} left"
            return f"instance type {instance_type} is smaller than {size}"
        missing = []
        if vcpu > self.free_cpu + _CPU_TOLERANCE:
            missing.append(f"needs {vcpu} vCPU, {_cpu(self.free_cpu)} free")
        if memory > self.free_memory:
            missing.append(f"needs {format_quantity(memory)} memory, {_bytes(self.free_memory)} free")
        if self.free_disk is not None and disk > self.free_disk:
            missing.append(f"needs {format_quantity(disk)} disk, {_bytes(self.free_disk)} free")
        return "; ".join(missing) or None


def _cpu(value: float) -> str:
    return f"{max(value, 0.0):g}"


def _bytes(value: int) -> str:
    return format_quantity(value) if value >= 0 else f"-{format_quantity(-value)}"


class _Rule:
    """The placement rules shared by many requests, with the per-host evaluations cached."""

    def __init__(self, placement: Placement) -> None:
        self.requirements = expressions.parse(placement.requirements) if placement.requirements else None
        self.rank = expressions.parse(placement.rank) if placement.rank else None
        self.policy = placement.policy or PlacementPolicy.PACKING
        self.instance_type = placement.instanceType
        self.burst = placement.burst or BurstPolicy.LAST
        self.requirements_dynamic = self.requirements is not None and _reads_dynamic(self.requirements)
        self.rank_dynamic = self.rank is not None and _reads_dynamic(self.rank)
        self.dynamic = self.requirements_dynamic or self.rank_dynamic
        self._static_verdicts: dict[int, str | None] = {}
        self._static_ranks: dict[int, float | str] = {}
        self._candidates: list[_Host] | None = None
        self._rejections: dict[int, str] = {}

    def requirements_reason(self, host: _Host) -> str | None:
        """None when the requirements hold on ``host``, else why not."""
        if self.requirements is None:
            return None
        if not self.requirements_dynamic:
            verdict = self._static_verdicts.get(host.index, _UNSET)
            if verdict is _UNSET:
                verdict = self._static_verdicts[host.index] = _verdict(self.requirements, host)
            return verdict  # type: ignore[return-value]
        return _verdict(self.requirements, host)

    def rank_value(self, host: _Host) -> float | str:
        """The rank (a float) of ``host``, or why it cannot be computed (a str)."""
        assert self.rank is not None
        if not self.rank_dynamic:
            value = self._static_ranks.get(host.index)
            if value is None:
                value = self._static_ranks[host.index] = _rank(self.rank, host)
            return value
        return _rank(self.rank, host)

    def static_rejection(self, host: _Host) -> str | None:
        """Why ``host`` can never be a candidate for this rule in this call, or None."""
        if not host.candidate.enabled:
            return "disabled"
        if not host.candidate.online:
            return "offline"
        if host.candidate.cloud and self.burst is BurstPolicy.NEVER:
            return "a cloud host, and placement.burst is never"
        if self.instance_type is not None and host.slots is None:
            return f"placement.instanceType {self.instance_type} needs a cloud host"
        if not self.requirements_dynamic:
            reason = self.requirements_reason(host)
            if reason is not None:
                return reason
        if self.rank is not None and not self.rank_dynamic:
            value = self.rank_value(host)
            if isinstance(value, str):
                return value
        return None

    def dynamic_rejection(self, host: _Host) -> str | None:
        """Why ``host`` is not a candidate now, for the parts that change with allocations, or None."""
        if self.requirements_dynamic:
            reason = self.requirements_reason(host)
            if reason is not None:
                return reason
        if self.rank_dynamic:
            value = self.rank_value(host)
            if isinstance(value, str):
                return value
        return None

    def candidates(self, hosts: Sequence[_Host]) -> list[_Host]:
        if self._candidates is None:
            self._candidates = []
            for host in hosts:
                reason = self.static_rejection(host)
                if reason is None:
                    self._candidates.append(host)
                else:
                    self._rejections[host.index] = reason
        return self._candidates

    def rejection(self, host: _Host) -> str | None:
        return self._rejections.get(host.index)

    def key(self, host: _Host) -> tuple[float, float, float]:
        """The heap key of ``host``: smaller is better. The tier comes first: the policy ranks within a tier."""
        tier = float(-host.candidate.tier if self.burst is BurstPolicy.FIRST else host.candidate.tier)
        policy = self.policy
        if self.rank is not None:
            value = self.rank_value(host)
            assert not isinstance(value, str)  # hosts with a failing rank are never keyed
            return (tier, -value, 0.0)
        if policy is PlacementPolicy.PACKING:
            return (tier, host.free_memory, host.free_cpu)
        if policy is PlacementPolicy.STRIPING:
            return (tier, -host.free_memory, -host.free_cpu)
        cpus = host.candidate.cpus
        return (tier, host.candidate.load + (host.placed_cpu / cpus if cpus > 0 else 0.0), 0.0)


_UNSET = object()


@runtime_checkable
class _Requirements(Protocol):
    """Documents that tell their VMs' distinct placement requirements without reading every VM
    (``schemas.caching.CachedDocuments``)."""

    def requirements(self) -> frozenset[str]: ...


def documents_read_usage(documents: Mapping[ResourceKey, AnyManifest]) -> bool:
    """Whether the placement requirements of some VM of ``documents`` read usage figures (``requirements_read_usage``):
    told by the documents when they can, without reading every VM."""
    if isinstance(documents, _Requirements):
        return requirements_read_usage(documents.requirements())
    return requirements_read_usage(
        doc.spec.placement.requirements for doc in documents.values() if isinstance(doc, VirtualMachine)
    )


def requirements_read_usage(requirements: Iterable[str | None]) -> bool:
    """Whether some of these placement requirements read a host's usage figures (``USAGE_NAMES``): a VM already on
    a host is moved off it once they fail there, so its plan depends on the clock. Rank and policy choose among
    hosts for new VMs only."""
    # Each distinct expression once: a large set repeats a few over thousands of VMs.
    for text in {text for text in requirements if text}:
        try:
            names = expressions.parse(text).names
        except expressions.ExpressionError:
            return True  # not for this to judge: validation reports it
        if any(name.split(".", 1)[0] in USAGE_NAMES for name in names):
            return True
    return False


def _reads_dynamic(expression: expressions.Expression) -> bool:
    return any(name.split(".", 1)[0] in DYNAMIC_NAMES for name in expression.names)


def _verdict(requirements: expressions.Expression, host: _Host) -> str | None:
    try:
        value = requirements.evaluate(host.attributes())
    except expressions.ExpressionError as error:
        return f"requirements: {error}"
    if value is True:
        return None
    if value is False:
        return f"requirements not met: {requirements.text}"
    return f"requirements gave {value!r}, not true or false"


def _rank(rank: expressions.Expression, host: _Host) -> float | str:
    try:
        value = rank.evaluate(host.attributes())
    except expressions.ExpressionError as error:
        return f"rank: {error}"
    number = expressions.to_number(value)
    if number is None or math.isnan(number):
        return f"rank gave {value!r}, not a number"
    return float(number)


class _Bucket:
    """Candidates for requests sharing one rule and one size, best first in a heap."""

    __slots__ = ("alive", "disk", "failure", "failure_view", "heap", "memory", "rule", "seen", "vcpu", "waiting")

    def __init__(self, rule: _Rule, vcpu: int, memory: int, disk: int, state: _State) -> None:
        self.rule = rule
        self.vcpu = vcpu
        self.memory = memory
        self.disk = disk
        self.alive: set[int] = set()  # in the heap with a fresh entry
        self.waiting: set[int] = set()  # fit, but refused by a dynamic rule for now; re-checked on change
        self.heap: list[tuple[tuple[float, float, float], int, int]] = []
        self.failure: dict[str, str] | None = None
        # Shared by consecutive failures while no reason changes: a full fleet does not cost a copy per VM.
        self.failure_view: Mapping[str, str] | None = None
        self.seen = state.sequence
        for host in rule.candidates(state.hosts):
            entry = self._admit(host)
            if entry is not None:
                self.heap.append(entry)
        heapq.heapify(self.heap)

    def _admit(self, host: _Host) -> tuple[tuple[float, float, float], int, int] | None:
        """The heap entry of ``host`` with its current key; or None, setting it waiting or dropping it."""
        index = host.index
        self.alive.discard(index)
        self.waiting.discard(index)
        if not host.fits(self.vcpu, self.memory, self.disk, self.rule.instance_type):
            return None  # capacity only shrinks during a call: this host is out of this bucket for good
        if self.rule.dynamic and self.rule.dynamic_rejection(host) is not None:
            self.waiting.add(index)
            return None
        self.alive.add(index)
        return (self.rule.key(host), index, host.version)

    def sync(self, state: _State) -> None:
        """Bring the heap up to date with the hosts changed since the bucket last looked."""
        if self.seen == state.sequence:
            return
        heap = self.heap
        for index, changed_at in reversed(state.recent.items()):
            if changed_at <= self.seen:
                break
            if index in self.alive or index in self.waiting:
                entry = self._admit(state.hosts[index])
                if entry is not None:
                    heapq.heappush(heap, entry)
            if self.failure is not None:
                host = state.hosts[index]
                reason = _reason(self, host) or "fits now"
                if self.failure[host.name] != reason:
                    self.failure[host.name] = reason
                    self.failure_view = None
        self.seen = state.sequence
        if len(heap) > 4 * len(self.alive) + 64:
            # Drop the stale entries now and then, so the heap stays near the number of live candidates.
            hosts = state.hosts
            self.heap = [entry for entry in heap if entry[2] == hosts[entry[1]].version]
            heapq.heapify(self.heap)

    def best(self, state: _State) -> _Host | None:
        heap = self.heap
        hosts = state.hosts
        while heap:
            _key, index, version = heap[0]
            host = hosts[index]
            if version == host.version and index in self.alive:
                return host
            heapq.heappop(heap)
        return None

    def reasons(self, state: _State) -> Mapping[str, str]:
        if self.failure is None:
            self.failure = {host.name: _reason(self, host) or "fits now" for host in state.hosts}
        if self.failure_view is None:
            self.failure_view = MappingProxyType(dict(self.failure))
        return self.failure_view


def _reason(bucket: _Bucket, host: _Host) -> str | None:
    rule = bucket.rule
    rejection = rule.rejection(host)
    if rejection is not None:
        return rejection
    shortage = host.shortage(bucket.vcpu, bucket.memory, bucket.disk, rule.instance_type)
    if shortage is not None:
        return shortage
    return rule.dynamic_rejection(host)


class _State:
    __slots__ = ("by_name", "hosts", "recent", "sequence")

    def __init__(self, hosts: Sequence[HostCandidate]) -> None:
        ordered = sorted(hosts, key=lambda candidate: candidate.name)
        self.hosts = [_Host(index, candidate) for index, candidate in enumerate(ordered)]
        self.by_name = {host.name: host for host in self.hosts}
        if len(self.by_name) != len(self.hosts):
            duplicates = sorted({host.name for host in self.hosts if self.by_name[host.name] is not host})
            raise ValueError(f"duplicate host names: {', '.join(duplicates)}")
        self.recent: OrderedDict[int, int] = OrderedDict()  # host index -> sequence of its last change
        self.sequence = 0

    def allocate(self, host: _Host, vcpu: int, memory: int, disk: int, instance_type: str | None = None) -> str | None:
        """Charge the VM to ``host``; on a cloud host, take one of its type and return the type's name."""
        chosen = None
        if host.slots is not None:
            chosen = host.slot_for(vcpu, memory, instance_type)
            if chosen is not None:  # None only for a VM kept on an offline host, which is not charged a type
                host.slots[chosen].left -= 1
        host.placed_cpu += vcpu
        host.free_cpu = host.base_free_cpu - host.placed_cpu
        host.placed_memory += memory
        host.free_memory -= memory
        if host.free_disk is not None:
            host.free_disk -= disk
        if host.slots is not None:
            host._sum_slots()
        host.version += 1
        self.sequence += 1
        self.recent[host.index] = self.sequence
        self.recent.move_to_end(host.index)
        return chosen


# --- The entry point --------------------------------------------------------------------------------------


def place(requests: Sequence[PlacementRequest], hosts: Sequence[HostCandidate]) -> list[PlacementDecision]:
    """Choose a host for every request (see the module docstring); decisions in the order of ``requests``.

    Raises ``ValueError`` when two hosts share a name, and ``ExpressionError`` when a request carries an
    expression that does not parse (``Placement`` normally rejects those at validation).
    """
    state = _State(hosts)
    rules: dict[tuple[str | None, str | None, PlacementPolicy | None, str | None, BurstPolicy | None], _Rule] = {}
    decisions: list[PlacementDecision | None] = [None] * len(requests)

    def rule_of(request: PlacementRequest) -> _Rule:
        placement = request.placement
        key = (placement.requirements, placement.rank, placement.policy, placement.instanceType, placement.burst)
        rule = rules.get(key)
        if rule is None:
            rule = rules[key] = _Rule(placement)
        return rule

    # 1. VMs that stay where they are.
    staying = sorted(
        (request.vm, position) for position, request in enumerate(requests) if request.current_host in state.by_name
    )
    for _vm, position in staying:
        request = requests[position]
        current = state.by_name[request.current_host]  # type: ignore[index]
        fixed = request.placement.host
        if fixed is not None:
            allowed = fixed == current.name
        else:
            # Requirements on free or allocated capacity are admission checks: a VM already on the host is
            # part of what fills it, and re-checking them would evict it from the host it filled.
            rule = rule_of(request)
            allowed = rule.requirements_dynamic or rule.requirements_reason(current) is None
        # An offline host reports no capacity: its VMs stay on it, unknown, rather than failing to fit (a host
        # that stops answering is waited for, never evacuated by the plan).
        instance_type = request.placement.instanceType
        fits = current.fits(request.vcpu, request.memory, 0, instance_type)
        if allowed and (not current.candidate.online or fits):
            chosen = state.allocate(current, request.vcpu, request.memory, 0, instance_type)
            decisions[position] = PlacementDecision(request.vm, current.name, instance_type=chosen)

    # 2. VMs on a fixed host.
    fixed_requests = sorted(
        (request.vm, position)
        for position, request in enumerate(requests)
        if decisions[position] is None and request.placement.host is not None
    )
    for _vm, position in fixed_requests:
        decisions[position] = _place_fixed(requests[position], state)

    # 3. The rest, largest first.
    remaining = sorted(
        (-request.memory, -request.vcpu, -request.disk, request.vm, position)
        for position, request in enumerate(requests)
        if decisions[position] is None
    )
    buckets: dict[tuple[int, int, int, int], _Bucket] = {}
    for _memory, _vcpu, _disk, vm, position in remaining:
        request = requests[position]
        rule = rule_of(request)
        bucket_key = (id(rule), request.vcpu, request.memory, request.disk)
        bucket = buckets.get(bucket_key)
        if bucket is None:
            bucket = buckets[bucket_key] = _Bucket(rule, request.vcpu, request.memory, request.disk, state)
        else:
            bucket.sync(state)
        host = bucket.best(state)
        if host is None:
            decisions[position] = PlacementDecision(vm, None, bucket.reasons(state))
        else:
            chosen = state.allocate(host, request.vcpu, request.memory, request.disk, rule.instance_type)
            decisions[position] = PlacementDecision(vm, host.name, instance_type=chosen, reason=_why(rule, host, state))

    return [decision for decision in decisions if decision is not None]


def _place_fixed(request: PlacementRequest, state: _State) -> PlacementDecision:
    name = request.placement.host
    assert name is not None
    host = state.by_name.get(name)
    if host is None:
        return PlacementDecision(request.vm, None, MappingProxyType({name: "no such host"}))
    if not host.candidate.enabled:
        return PlacementDecision(request.vm, None, MappingProxyType({name: "disabled"}))
    disk = 0 if request.current_host == name else request.disk
    instance_type = request.placement.instanceType
    shortage = host.shortage(request.vcpu, request.memory, disk, instance_type)
    if shortage is not None:
        return PlacementDecision(request.vm, None, MappingProxyType({name: shortage}))
    chosen = state.allocate(host, request.vcpu, request.memory, disk, instance_type)
    return PlacementDecision(request.vm, name, instance_type=chosen, reason="placement.host" if chosen else "")


def _why(rule: _Rule, host: _Host, state: _State) -> str:
    """Why a VM went to ``host`` when that is not the plain choice among the lowest tier's hosts: a burst."""
    lowest = min(h.candidate.tier for h in state.hosts)
    if rule.burst is BurstPolicy.FIRST and host.candidate.cloud:
        return "placement.burst is first: cloud hosts are tried before local ones"
    if host.candidate.tier > lowest:
        return f"bursting: no host of a lower tier than {host.candidate.tier} has room or meets the requirements"
    return ""
