"""Observed state from live monitoring: one host probe and one bulk VM probe per host, never one call per VM;
one call for many hosts where their driver can answer for them all (``probe_many``, and ``list_many`` for the
drift inventory).

This is an I/O edge: it calls the monitoring drivers (through the registry handed in) and returns a
``LiveView`` value for the pure planner. Hosts are probed in parallel, since on real hypervisors each probe is
a network round trip; a host whose probe fails is reported in state ERROR, which makes its VMs unknown (never
stopped) to the planner.

``observations`` turns a ``LiveView`` into what the database keeps as the last observation of each resource
(``Store.record_observations``), so that ``get`` and ``describe`` can show the live state beside the record. It
is pure: ``diff`` and ``apply`` call it on the view they probed for the plan, a continuous monitor on each of its
rounds.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from nebctl.core.deferred import DeferredChunks
from nebctl.core.families import Family
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ObservationRecord
from nebctl.drivers.context import CallContext, ProgramWatch, calling
from nebctl.drivers.errors import CapabilityError, DriverError
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus
from nebctl.reconcilers.base import LiveView, RecordView
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.models import AnyManifest, Host

log = logging.getLogger(__name__)


class DriverSource(Protocol):
    """What observation needs of the driver registry."""

    def for_host(self, host: HostRef, overrides: Any = None) -> Any: ...

    def get(self, family: Family, reference: str) -> Any: ...


def known_hosts(
    documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, RecordView]
) -> dict[str, tuple[HostRef, Any]]:
    """Every host nebctl should look at: those of the manifests and those it recorded before (a host removed
    from the manifests may still carry VMs to delete). Value: the host reference and its driver overrides."""
    # A host's manifest says where it is over its record; only the records of hosts without one are read (the
    # others may not even be decoded yet, like the records of every other kind).
    declared: dict[str, tuple[HostRef, Any]] = {}
    for key in documents:
        if key.kind is not Kind.HOST:
            continue
        document = documents[key]
        if isinstance(document, Host):
            domain_type = document.spec.virtualization.domainType if document.spec.virtualization else "auto"
            declared[key.name] = (HostRef(key.name, document.spec.uri, domain_type), document.spec.drivers)
    hosts: dict[str, tuple[HostRef, Any]] = {}
    for key in records:
        if key.kind is not Kind.HOST:
            continue
        if key.name in declared:
            hosts[key.name] = declared[key.name]
            continue
        record = records[key]
        if record.applied is not None:
            virtualization = record.applied.get("virtualization") or {}
            recorded_type = str(virtualization.get("domainType", "auto"))
            hosts[key.name] = (
                HostRef(key.name, str(record.applied["uri"]), recorded_type),
                record.applied.get("drivers"),
            )
    for name, host in declared.items():
        hosts.setdefault(name, host)
    return hosts


CustomAttributes = Callable[[HostRef], Mapping[str, str]]
"""A host's custom attributes (``probing.CustomProbes``, or the service's cache of their last results)."""

Listing = tuple[frozenset[tuple[str, str]], Mapping[tuple[str, str], Mapping[str, str]]]
"""A host's listing: its (object, live name) pairs, and the fingerprint of each its driver read one of."""


def observe(
    hosts: Mapping[str, tuple[HostRef, Any]],
    registry: DriverSource,
    *,
    parallelism: int = 16,
    custom: CustomAttributes | None = None,
    programs: ProgramWatch | None = None,
    inventory: bool | Collection[str] = False,
) -> LiveView:
    """Probe every host and its VMs. Errors become hosts in state ERROR; nothing here raises for a bad host.
    ``custom`` adds each answering host's custom probe attributes to its probe's ``custom``. ``programs`` is
    told of every external program a probe runs (an exec driver's, a custom probe), so that those a killed
    nebctl leaves hanging are ended by the next writer (``reaping``). With ``inventory``, each answering host's
    other objects are listed too (one more bulk call), where its driver can list them: the drift of networks,
    datastores, images and security groups is read from that. ``inventory`` may name the hosts to list (those
    that something recorded lives on): the others are not listed."""
    listed: dict[str, Listing] = {}

    def probe(name: str) -> tuple[HostProbe, Sequence[VMStatus]]:
        with calling(CallContext(programs=programs)):
            return probe_one(name)

    def probe_one(name: str) -> tuple[HostProbe, Sequence[VMStatus]]:
        ref, overrides = hosts[name]
        try:
            monitoring = registry.for_host(ref, overrides).monitoring
            host = monitoring.probe_host(ref)
            if host.state is HostLiveState.ERROR:
                return host, ()
            if custom is not None:
                extra = custom(ref)
                if extra:
                    host = dataclasses.replace(host, custom={**host.custom, **extra})
            return host, monitoring.probe_vms(ref)
        except (DriverError, OSError, ValueError) as error:
            log.warning("host %s did not answer its probe: %s", name, error)
            return HostProbe(name=name, state=HostLiveState.ERROR, error=str(error)), ()

    def finish(name: str) -> tuple[HostProbe, Sequence[VMStatus]]:
        """A host a bulk probe answered for: its custom attributes added, as ``probe`` does."""
        host, statuses = answered[name]
        if custom is not None and host.state is not HostLiveState.ERROR:
            try:
                extra = custom(hosts[name][0])
            except (DriverError, OSError, ValueError) as error:
                log.warning("host %s did not answer its probe: %s", name, error)
                return HostProbe(name=name, state=HostLiveState.ERROR, error=str(error)), ()
            if extra:
                host = dataclasses.replace(host, custom={**host.custom, **extra})
        return host, statuses

    registry = _Monitors(registry)
    names = sorted(hosts)
    # Custom probe programs answer outside any driver's word, so a view with them has no token.
    token = observation_token(hosts, registry) if custom is None else None
    words = host_tokens(hosts, registry) if token is not None else None
    answered = _bulk_probes(hosts, registry)
    one_by_one = [name for name in names if name not in answered]
    if len(names) <= 1 or parallelism <= 1:
        results = {name: probe(name) for name in one_by_one}
        results.update((name, finish(name)) for name in answered)
    else:
        with ThreadPoolExecutor(max_workers=min(parallelism, len(names)), thread_name_prefix="probe") as pool:
            results = dict(zip(one_by_one, pool.map(probe, one_by_one), strict=True))
            if custom is not None:
                results.update(zip(answered, pool.map(finish, answered), strict=True))
            else:
                results.update(answered)
    if inventory:
        wanted = names if inventory is True else [name for name in names if name in inventory]
        answering = [name for name in wanted if results[name][0].state is not HostLiveState.ERROR]
        listed = _list_objects(hosts, answering, registry, parallelism)
    if token is not None and observation_token(hosts, registry) != token:
        token = None  # something changed while the hosts were probed: the view may mix the two states
    if words is not None and (token is None or host_tokens(hosts, registry) != words):
        words = None
    return _view(names, results, listed, token, words)


def observe_again(
    kept: LiveView,
    hosts: Mapping[str, tuple[HostRef, Any]],
    registry: DriverSource,
    *,
    parallelism: int = 16,
    programs: ProgramWatch | None = None,
    inventory: bool | Collection[str] = False,
    figures: bool = False,
) -> tuple[LiveView, list[str]] | None:
    """``kept``, an observation of ``hosts`` made with each host's word (``LiveView.host_tokens``), with the hosts
    whose word moved since probed again (and listed again, those of ``inventory``): the others are as ``kept`` saw
    them, their drivers say. The view, and the hosts probed again; None when some host's driver gives no word now.
    Its token and words are the drivers' now, unless they moved while the hosts were probed (the view may then mix
    two states: the next plan observes afresh). Usage figures of the hosts not probed again are as old as
    ``kept``'s, unless ``figures``: then each of those hosts' own probe is made again too (``probe_figures``), not
    their VMs'; None when one of them answers otherwise than it did (a host that stopped or started answering)."""
    registry = _Monitors(registry)
    token, words, before = observation_token(hosts, registry), host_tokens(hosts, registry), kept.host_tokens
    if token is None or words is None or before is None or words.keys() != before.keys():
        return None
    moved = sorted(name for name, word in words.items() if word != before[name])
    wanted = moved if inventory is True else [name for name in moved if inventory and name in inventory]
    fresh = LiveView()
    if moved:
        subset = {name: hosts[name] for name in moved}
        fresh = observe(subset, registry, parallelism=parallelism, programs=programs, inventory=wanted)
    gone = set(moved)
    figured: dict[str, HostProbe] = {}
    if figures:
        rest = {name: hosts[name] for name in hosts if name not in gone}
        figured = probe_figures(rest, registry, parallelism=parallelism, programs=programs)
        if any(probe.state is not kept.hosts[name].state for name, probe in figured.items()):
            return None
    kept_hosts = kept.vm_hosts
    vm_hosts = {uuid: host for uuid, host in kept_hosts.items() if host not in gone}
    vm_hosts.update(fresh.vm_hosts)
    vms: Mapping[str, VMStatus]
    if isinstance(kept.vms, DeferredChunks):
        # Read back from a file in chunks by host: the other hosts' chunks are shared, unread.
        vms = kept.vms.replaced(gone, fresh.vms, fresh.vm_hosts.get)
    else:
        vms = {uuid: status for uuid, status in kept.vms.items() if kept_hosts[uuid] not in gone}
        vms.update(fresh.vms)
    stable = observation_token(hosts, registry) == token and host_tokens(hosts, registry) == words
    since = tuple((ancestor, probed | gone) for ancestor, probed in kept.probed_since)
    if kept.identity is not None:
        since = ((kept.identity, frozenset(gone)), *since)
    view = LiveView(
        hosts={name: fresh.hosts.get(name) or figured.get(name) or kept.hosts[name] for name in sorted(hosts)},
        vms=vms,
        vm_hosts=vm_hosts,
        objects={**{name: pairs for name, pairs in kept.objects.items() if name not in gone}, **fresh.objects},
        fingerprints={
            **{name: prints for name, prints in kept.fingerprints.items() if name not in gone},
            **fresh.fingerprints,
        },
        token=token if stable else None,
        host_tokens=words if stable else None,
        identity=os.urandom(16),
        probed_since=since[:ANCESTORS],
    )
    return view, moved


def probe_figures(
    hosts: Mapping[str, tuple[HostRef, Any]],
    registry: DriverSource,
    *,
    parallelism: int = 16,
    programs: ProgramWatch | None = None,
) -> dict[str, HostProbe]:
    """Each host's own probe (``probe_host``: its state, capacity and usage figures), not its VMs', in parallel; a
    host that does not answer is in state ERROR. What brings a kept observation whose VMs the drivers vouch for, but
    whose usage figures are older than a plan may read, up to date."""

    def probe(name: str) -> HostProbe:
        ref, overrides = hosts[name]
        with calling(CallContext(programs=programs)):
            try:
                answer: HostProbe = registry.for_host(ref, overrides).monitoring.probe_host(ref)
                return answer
            except (DriverError, OSError, ValueError) as error:
                log.warning("host %s did not answer its probe: %s", name, error)
                return HostProbe(name=name, state=HostLiveState.ERROR, error=str(error))

    found: dict[str, HostProbe] = _bulk_probes(hosts, registry, "probe_hosts")
    names = sorted(name for name in hosts if name not in found)
    if len(names) <= 1 or parallelism <= 1:
        found.update((name, probe(name)) for name in names)
    else:
        with ThreadPoolExecutor(max_workers=min(parallelism, len(names)), thread_name_prefix="probe") as pool:
            found.update(zip(names, pool.map(probe, names), strict=True))
    return found


# How many of the views a view was made from it names (``LiveView.probed_since``): a kept trace's state holds for
# one of the last few a diff observed again, most often the last (an apply, then diffs on what it moved).
ANCESTORS = 8


def _view(
    names: Sequence[str],
    results: Mapping[str, tuple[HostProbe, Sequence[VMStatus]]],
    listed: Mapping[str, Listing],
    token: str | None,
    words: Mapping[str, str] | None = None,
) -> LiveView:
    probes: dict[str, HostProbe] = {}
    vms: dict[str, VMStatus] = {}
    vm_hosts: dict[str, str] = {}
    for name in names:
        host, statuses = results[name]
        probes[name] = host
        for status in statuses:
            vms[status.uuid] = status
            vm_hosts[status.uuid] = name
    return LiveView(
        hosts=probes,
        vms=vms,
        vm_hosts=vm_hosts,
        objects={name: pairs for name, (pairs, _) in listed.items()},
        fingerprints={name: prints for name, (_, prints) in listed.items()},
        token=token,
        host_tokens=words,
        identity=os.urandom(16),
    )


def host_tokens(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource) -> dict[str, str] | None:
    """Each host's word (``HostTokensDriver``: one call per driver instance, the hosts in name order), by host
    name; None when some host's driver has none, or gives none for some host."""
    answers = _asked(hosts, registry, "host_tokens")
    if answers is None:
        return None
    words: dict[str, str] = {}
    for monitoring, refs, found in answers:
        for ref in refs:
            word = found.get(ref.name)
            if word is None:
                return None
            words[ref.name] = f"{type(monitoring).__name__}:{word}"
    return words


def observation_token(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource) -> str | None:
    """One word for the live state of every host of ``hosts`` (``ObservationTokenDriver``: one call per driver
    instance, the hosts in name order), or None when some host's driver has no such word or gives none."""
    answers = _asked(hosts, registry, "observation_token")
    if answers is None:
        return None
    words = (
        f"{type(monitoring).__name__}:{','.join(sorted(ref.name for ref in refs))}:{word}"
        for monitoring, refs, word in answers
    )
    return "\n".join(sorted(words))


def _asked(
    hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, method: str
) -> list[tuple[Any, list[HostRef], Any]] | None:
    """Each monitoring driver instance of ``hosts``, its hosts, and its answer to ``method`` (asked once, the hosts
    in name order); None when some host's driver has no such method, or fails, or answers None."""
    groups = _by_driver(hosts, registry, method)
    if sum(len(refs) for _, refs in groups) != len(hosts):
        return None
    answers = []
    for monitoring, refs in groups:
        try:
            answer = getattr(monitoring, method)(sorted(refs, key=lambda ref: ref.name))
        except (DriverError, OSError, ValueError) as error:
            log.debug("no answer to %s: %s", method, error)
            return None
        if answer is None:
            return None
        answers.append((monitoring, refs, answer))
    return answers


def _list_objects(
    hosts: Mapping[str, tuple[HostRef, Any]], names: Sequence[str], registry: DriverSource, parallelism: int
) -> dict[str, Listing]:
    """The listing of each of ``names``, from its monitoring driver's ``inventory`` (one call per host): the
    (object, live name) pairs there and the fingerprints the driver read; a host whose driver cannot list (an
    exec set without its list program) is left out: no drift is read there."""
    listed = _bulk_listings({name: hosts[name] for name in names}, registry)

    def list_one(name: str) -> None:
        ref, overrides = hosts[name]
        try:
            lister = getattr(registry.for_host(ref, overrides).monitoring, "inventory", None)
            if lister is not None:
                items = lister(ref)
                listed[name] = (
                    frozenset((item.object, item.name) for item in items),
                    {(item.object, item.name): item.fingerprint for item in items if item.fingerprint is not None},
                )
        except CapabilityError:
            pass
        except (DriverError, OSError, ValueError) as error:
            log.warning("host %s did not list its objects: %s", name, error)

    one_by_one = [name for name in names if name not in listed]
    if one_by_one:
        workers = max(1, min(parallelism, len(one_by_one)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="list") as pool:
            list(pool.map(list_one, one_by_one))
    return listed


def _bulk_listings(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource) -> dict[str, Listing]:
    """The listings of the hosts whose monitoring driver lists many hosts in one call (``list_many``, which the
    sim has), by host name; as ``_bulk_probes``, hosts whose driver has none, declines or fails are left to the
    listings one host at a time."""
    listed: dict[str, Listing] = {}
    for monitoring, refs in _by_driver(hosts, registry, "list_many"):
        try:
            found = monitoring.list_many(refs)
        except (DriverError, OSError, ValueError) as error:
            log.debug("bulk listing declined, listing host by host: %s", error)
            continue
        if found is not None:
            listed.update(found)
    return listed


def _bulk_probes(
    hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, method: str = "probe_many"
) -> dict[str, Any]:
    """The probes of the hosts whose monitoring driver answers for many hosts in one call (``probe_many``, and
    ``probe_hosts`` for the hosts' own probes alone, which the sim has: one pass over its file instead of a
    thousand round trips), by host name. Hosts whose driver has none, declines (returns None) or fails are left to
    the probes one host at a time, which word their errors."""
    answered: dict[str, Any] = {}
    for monitoring, refs in _by_driver(hosts, registry, method):
        if len(refs) < 2:
            continue
        try:
            found = getattr(monitoring, method)(refs)
        except (DriverError, OSError, ValueError) as error:
            log.debug("bulk probe declined, probing host by host: %s", error)
            continue
        if found is not None:
            answered.update(found)
    return answered


def _by_driver(
    hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, method: str
) -> list[tuple[Any, list[HostRef]]]:
    """The hosts whose monitoring driver has ``method`` (a call for many hosts at once), grouped by driver
    instance: one such call per group. A host whose driver cannot be loaded is left out (its own probe says
    why)."""
    groups: dict[int, tuple[Any, list[HostRef]]] = {}
    for name, (ref, _) in hosts.items():
        monitoring = _monitoring(hosts, registry, name)
        if monitoring is not None and callable(getattr(monitoring, method, None)):
            groups.setdefault(id(monitoring), (monitoring, []))[1].append(ref)
    return list(groups.values())


class _Monitors:
    """Each host's monitoring driver, looked up once per observation: an observation groups the hosts by driver
    for the token, the bulk probe, the bulk listing and the token again, and a lookup (the host's overrides
    resolved, four families asked of the registry) cost more than the bulk probe's share of the host."""

    def __init__(self, registry: DriverSource) -> None:
        self.registry = registry
        self.found: dict[tuple[str, int], Any] = {}

    def for_host(self, host: HostRef, overrides: Any = None) -> Any:
        # By the host and the identity of its overrides: the mapping of hosts an observation is handed holds both.
        key = (host.name, id(overrides))
        if key not in self.found:
            self.found[key] = self.registry.for_host(host, overrides)
        return self.found[key]

    def get(self, family: Family, reference: str) -> Any:
        return self.registry.get(family, reference)


def _monitoring(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, name: str) -> Any:
    """The monitoring driver of host ``name``, or None when it cannot be loaded (its own probe says why)."""
    ref, overrides = hosts[name]
    try:
        return registry.for_host(ref, overrides).monitoring
    except (DriverError, OSError, ValueError):
        return None


def observations(
    records: Mapping[ResourceKey, RecordView],
    live: LiveView,
    *,
    hosts: Collection[str] | None = None,
    keys: Collection[ResourceKey] = (),
) -> list[ObservationRecord]:
    """What ``live`` says of the recorded hosts and VMs it covers, to keep with ``Store.record_observations``
    (``probed=live.hosts``). With ``hosts``, only what it says of those hosts and their VMs, and of the records of
    ``keys`` wherever they are (``probed=hosts, replaced=keys``): the rest of what it would say is in the
    database already.

    Every probed host gets an observation; a VM whose recorded host was probed gets one only where it differs
    from its record: drift (stopped, deleted, moved, resized: the planner's own sentences, from the VM
    reconciler's ``observe``, so ``get`` says what ``diff`` would), its host not answering (``unknown``, never
    stopped), or a state in between (``transitioning``). A VM seen as recorded needs no row: its host's
    observation says when it was seen (``seen_as_recorded``). VMs not yet created (no applied spec) and the
    kinds monitoring does not probe one by one (networks, images...) get nothing. No times: the store stamps
    them.
    """
    found: list[ObservationRecord] = []
    for key, record in records.items():
        if key.kind is Kind.HOST:
            probe = live.hosts.get(key.name)
            if probe is not None and (hosts is None or key.name in hosts or key in keys):
                found.append(_host_observation(key, probe))
        elif key.kind is Kind.VIRTUAL_MACHINE:
            if hosts is not None and record.host is not None and record.host not in hosts and key not in keys:
                continue  # told from the host's column: its applied spec is not even decoded
            applied = record.applied
            if applied is None:
                continue
            host = record.host or applied.get("host")
            if host in live.hosts and (hosts is None or host in hosts or key in keys):
                observation = _vm_observation(key, record, str(host), live)
                if observation is not None:
                    found.append(observation)
    return found


def seen_as_recorded(record: RecordView, key: ResourceKey, host: ObservationRecord) -> ObservationRecord | None:
    """The observation of a VM that has no row of its own, from its host's: the host answered its probe, and
    the VM (which would have a row had it differed) was seen as recorded, at the host's time. None when the
    host's observation cannot say (not the VM's host, the host in error, the VM not yet created)."""
    applied = record.applied
    if key.kind is not Kind.VIRTUAL_MACHINE or applied is None or host.state != HostLiveState.ONLINE.value:
        return None
    if (record.host or applied.get("host")) != host.name:
        return None
    details: dict[str, Any] = {"host": host.name, "vcpu": applied.get("vcpu"), "memory": applied.get("memory")}
    details["drift"] = []
    state = str(applied.get("state") or "running")
    return ObservationRecord(key.kind, key.namespace, key.name, host.name, state, details, host.observed_at)


def _host_observation(key: ResourceKey, probe: HostProbe) -> ObservationRecord:
    details: dict[str, Any] = {}
    if probe.state is HostLiveState.ERROR:
        details["error"] = probe.error or "no answer"
    else:
        details.update(cpus=probe.cpus, memory=probe.memory, free_memory=probe.free_memory, load=probe.load)
    return ObservationRecord(key.kind, key.namespace, key.name, key.name, probe.state.value, details)


def _vm_observation(key: ResourceKey, record: RecordView, host: str, live: LiveView) -> ObservationRecord | None:
    """The VM's observation where it differs from its record, else None."""
    # The VM reconciler's drift, through the protocol: the sentences ``diff`` prints.
    observed = RECONCILERS[Kind.VIRTUAL_MACHINE].detect_drift(key, record, live)
    if observed.unknown:
        # The reconciler words a silent host as drift (it must not act on the VM); it is not a change of the VM.
        return ObservationRecord(key.kind, key.namespace, key.name, host, "unknown", {"host": host, "drift": []})
    drift = [item.message for item in observed.drift]
    if observed.spec is None:
        return ObservationRecord(key.kind, key.namespace, key.name, host, "absent", {"host": host, "drift": drift})
    uuid = VMIdentity.recorded(key, record.live).uuid
    status = live.vms[uuid]  # detect_drift found it, or the spec would be None
    if not drift and status.state.value == (record.applied or {}).get("state"):
        return None
    details: dict[str, Any] = {"drift": drift, "host": live.vm_hosts.get(uuid, host)}
    details.update(vcpu=status.vcpu, memory=status.memory)
    return ObservationRecord(key.kind, key.namespace, key.name, host, status.state.value, details)
