"""The reconciliation loop of one invocation: observe, plan, and apply with a durable journal.

``Controller`` is the I/O shell around the pure planner and the executor: it reads the records (the database),
observes the hosts (monitoring drivers), makes the plan, and when applying it journals every action in the
database (``journal``) and updates each resource's record in the same transaction as the action that changed
it. Used by the CLI (``diff``, ``apply``, ``destroy``) and the service (``serving.syncing``).
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebctl.controller.applying.executing import Change, ExecutionReport, Executor, Outcome
from nebctl.controller.applying.journal import StoreJournal
from nebctl.controller.applying.records_cache import RecordsCache
from nebctl.controller.applying.values import (
    ApplyResult,
    PlannedApply,
    PlanOptions,
    event_payload,
    plan_summary,
    report_summary,
)
from nebctl.controller.applying.world import ExecutionWorld
from nebctl.controller.hooking import HookDispatcher
from nebctl.controller.kept_observations import KeptObservation, ObservationKeeper, Reusable
from nebctl.controller.kept_traces import KeptTrace, KeptTraces
from nebctl.controller.observing import (
    CustomAttributes,
    DriverSource,
    known_hosts,
    observations,
    observe,
    observe_again,
)
from nebctl.controller.placement import documents_read_usage
from nebctl.controller.planning import (
    PlanError,
    PlanRequest,
    PlanTrace,
    QuotaLimit,
    Replan,
    own_records,
    plan_again,
)
from nebctl.controller.quotas import group_quotas
from nebctl.controller.reaping import ProgramRecorder
from nebctl.controller.recovering import SPANNED_OBJECTS, LiveObject, Recovery, Survey, rebuild, survey, unrecorded
from nebctl.controller.sampling import record_observation
from nebctl.controller.sourcing import ImageSources
from nebctl.core.families import Family
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, Plan
from nebctl.core.settings import Settings
from nebctl.database.errors import DatabaseError
from nebctl.database.installing import kept_installation_id
from nebctl.database.record_rows import ROW_DIGEST_SIZE, KnownRows, RecordRows, RowsMovedError, RowSummary, RowView
from nebctl.database.records import ActionRecord, ApplyState, EventRecord, ResourceRecord, RevisionRecord, Severity
from nebctl.database.sealing import (
    SECRET_PATHS,
    KeyRing,
    SecretKeyError,
    is_sealed,
    reveal_spec,
    seal_spec,
    secret_values,
)
from nebctl.database.store import OwnWrites, Store
from nebctl.database.versions import Versions
from nebctl.drivers.protocols import HookDriver
from nebctl.drivers.types import HostRef
from nebctl.reconcilers.base import LiveView, Reconciler, RecordView
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.schemas.models import AnyManifest, Hook, spec_document

log = logging.getLogger(__name__)


def spanned_hosts(records: Mapping[ResourceKey, ResourceRecord]) -> set[str]:
    """The hosts on which ``records`` say networks, datastores, images or security groups were created: the
    only hosts whose objects drift detection reads (``SpannedReconciler.detect_drift``)."""
    hosts: set[str] = set()
    for key in records:
        if key.kind in SPANNED_OBJECTS:  # only their records are read (``RecordRows`` decodes a record when read)
            applied = records[key].applied
            if applied is not None:
                hosts.update(str(host) for host in applied.get("hosts") or ())
    return hosts


def _imports_again(
    key: ResourceKey, documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, ResourceRecord]
) -> bool:
    """Whether an Image of the manifests will be imported (it is new, or its source changed): only those have
    their marketplace appliance checked while planning, so an unreachable catalogue blocks nothing else."""
    if key.kind is not Kind.IMAGE:
        return False
    record = records.get(key)
    if record is None or record.applied is None:
        return True
    return record.applied.get("source") != spec_document(documents[key]).get("source")


class Controller:
    def __init__(
        self,
        *,
        store: Store,
        registry: DriverSource,
        settings: Settings,
        reconcilers: Mapping[Kind, Reconciler] = RECONCILERS,
        host_attributes: CustomAttributes | None = None,
        installation_file: Path | None = None,
        records_cache: RecordsCache | None = None,
        observations: ObservationKeeper | None = None,
        keep_observations: bool = True,
        incremental: bool = False,
        traces: KeptTraces | None = None,
    ) -> None:
        """``host_attributes`` gives each host's custom probe attributes; by default the programs of
        ``settings.probes_dir`` run at each observation (the service hands in its cache of their results).
        ``records_cache`` keeps the records between plans, so that a long-lived controller (the service's) reads
        again only the rows written since its last plan. ``observations`` keeps each plan's observation for the
        next, which reuses it while the drivers vouch that the hosts are as observed (``kept_observations``). Without
        ``keep_observations`` a plan writes nothing of what it observed: the service's monitor keeps that, every
        round, and an edit's first action need not wait for it. With ``incremental`` (a controller that plans again
        and again, the service's), each plan redoes only the resources that moved since the last one where it can
        (``planning.incremental``); the records cache and the kept observation are what let it tell. ``traces``
        keeps the trace of each whole plan between processes (``kept_traces``, the CLI's): a plan given the
        manifests' stamps then does the same from there."""
        self.store = store
        self.registry = registry
        self.settings = settings
        self.reconcilers = reconcilers  # each kind's rules, for the planner, the executor and the journal
        if host_attributes is None and settings.probes_dir is not None:
            from nebctl.controller.probing import CustomProbes

            host_attributes = CustomProbes(settings.probes_dir, timeout=settings.serve.probe_timeout)
        self.host_attributes = host_attributes
        self.installation_file = installation_file  # the id's copy beside the key file (database.installing)
        self.records_cache = records_cache
        self.observations = observations
        self.keep_observations = keep_observations
        self.incremental = incremental
        self.traces = traces
        self._trace: PlanTrace | None = None  # the last plan's, for the next (``incremental``)
        # What the last plan planned again from the trace before it (None: it was made whole), for the service's
        # metrics and logs.
        self.last_replan: Replan | None = None

    def installation(self) -> str:
        """This installation's id, written on every live object it makes (docs/ownership.md)."""
        return kept_installation_id(self.store, self.installation_file)

    # --- planning ----------------------------------------------------------------------------------------------

    def plan(
        self,
        documents: Mapping[ResourceKey, AnyManifest],
        options: PlanOptions,
        stamps: Mapping[ResourceKey, str] | None = None,
    ) -> PlannedApply:
        """The plan of ``documents``; ``stamps`` are theirs (``ManifestSet.stamps``), for a kept trace."""
        try:
            return self._plan(documents, options, stamps, known_rows=True)
        except RowsMovedError:
            # Records were written while this plan read their rows one at a time: it may have read two states of
            # the database. Planned again from the rows as one query reads them.
            return self._plan(documents, options, stamps, known_rows=False)

    def _plan(
        self,
        documents: Mapping[ResourceKey, AnyManifest],
        options: PlanOptions,
        stamps: Mapping[ResourceKey, str] | None,
        *,
        known_rows: bool,
    ) -> PlannedApply:
        # The counters before the records (what is read after them is at least as new as they say): with those
        # read at the end, they tell whether anything but this plan's own writing came between.
        versions = self.store.change_versions()
        kept_trace = self._kept_trace(options.stack, versions, stamps)
        # A plan that observes afresh writes what it saw, which reads every record: in one query, then.
        afresh = self._observes_afresh(documents) or (self.observations is not None and self.observations.missing())
        known = kept_trace.known if kept_trace is not None and known_rows and not afresh else None
        stored: RecordRows | Sequence[ResourceRecord]
        if known is not None:
            # The database holds the records the kept trace was made from: a row is read when its record is (a
            # plan made from the trace reads few), and the counters at the end tell whether they all still were.
            stored = self.store.known_rows(known)
        elif self.records_cache is None:  # each record decoded only when read
            stored = self.store.record_rows()
        else:  # or kept by the service's cache
            stored = self.records_cache.records(self.store)
        previous = self._previous_trace(
            options.stack,
            versions,
            documents,
            stamps,
            kept=kept_trace,
            rows_known=known is not None,
            every_row=stored if known is None and isinstance(stored, RecordRows) else None,
        )
        return self._plan_with(
            documents,
            options,
            stamps,
            versions=versions,
            stored=stored,
            previous=previous,
            kept_trace=kept_trace,
            whole=known is None,
        )

    def _plan_with(
        self,
        documents: Mapping[ResourceKey, AnyManifest],
        options: PlanOptions,
        stamps: Mapping[ResourceKey, str] | None,
        *,
        versions: Versions,
        stored: RecordRows | Sequence[ResourceRecord],
        previous: PlanTrace | None,
        kept_trace: KeptTrace | None,
        whole: bool,
    ) -> PlannedApply:
        """The plan of ``documents`` from the records ``stored`` (``whole``: read in one query, not row by row as
        asked for) and the trace ``previous`` (``kept_trace``, as read), with ``versions`` the counters read before
        them."""
        records: Mapping[ResourceKey, ResourceRecord]
        if isinstance(stored, RecordRows):
            with self._unless_moved(whole, versions):
                records, resealed = reveal_rows(stored, documents, self.store.secrets)
        else:  # only the records whose row or manifest changed since the last plan are revealed again
            assert self.records_cache is not None
            records, resealed = self.records_cache.revealed(stored, documents, self.store.secrets, reveal_records)
        own = own_records(records, options.stack)
        hosts = known_hosts(documents, own)
        # Networks, datastores, images and security groups are listed (a call per host, or one for many hosts)
        # only on the hosts where this stack recorded some: their drift is read from that, and only there.
        listing = spanned_hosts(own)
        keeper = None if self._observes_afresh(documents) else self.observations
        # The records written since the trace the plan starts from was made, the only ones whose rows may be read
        # again (the records as the trace read them): None when the plan starts from none.
        stamped = previous.stamped if previous is not None else None
        observed = self._observation(
            keeper, records, hosts, listing, versions, moved=stamped.moved if stamped is not None else None
        )
        live, recorded = observed.live, observed.recorded is not None
        # The counters as this plan's own writing leaves them.
        ours = dataclasses.replace(versions, resources=versions.resources + 1) if recorded else versions
        with self._unless_moved(whole, ours):
            request = self._request(documents, records, live, options)
            sources = ImageSources(registry=self.registry, settings=self.settings, documents=documents)
            problems = sources.missing_appliances(key for key in documents if _imports_again(key, documents, own))
            if problems:
                raise PlanError(problems)
            plan, specs, trace = self._plan_from(request, previous, stamps)
            self._refuse_second_copies(plan, own, hosts, live)
        after = self.store.change_versions()
        if not whole and after != ours:
            raise RowsMovedError("records were written while this plan read them")
        mine = after if after == ours else None
        if keeper is not None and observed.renewed is not None:
            keeper.keep(observed.renewed)
        elif keeper is not None and (observed.kept is None or recorded):
            worded = observed.recorded.worded if observed.recorded is not None else None
            keeper.keep(
                KeptObservation(dict(hosts), frozenset(listing), live, observed.at, mine if recorded else None, worded)
            )
        # Whether the kept trace holds at ``mine``: found holding, and nothing written since (or kept, or moved on).
        trace_holds = kept_trace is not None and kept_trace.holds and mine == versions
        if self.traces is not None and mine is not None and stamps:
            if trace is not None and trace.replanned is None:
                every_row = stored if whole and isinstance(stored, RecordRows) else None
                trace_holds = self.traces.keep(options.stack, trace, dict(stamps), mine, self.store, rows=every_row)
            elif previous is not None:
                # Made from the kept trace, this plan wrote only what it observed: the trace still holds. When the
                # plan found its results holding for this live view, which the trace was not made from, the trace
                # takes it: the next plan on this view (a kept observation) compares nothing of it. The records
                # written since the trace was kept, told from every row, go with it: the next plan reads the rows of
                # those it reads, no others.
                replanned = trace.replanned if trace is not None else None
                holds = replanned is not None and replanned.view_holds
                other_view = previous.stamped is not None and previous.stamped.observation != live.identity
                view = live if holds and other_view and live.identity is not None else None
                told = _told_moved(previous, kept_trace, stored) if replanned is not None and whole else None
                if recorded or view is not None or told is not None:
                    told_seen = replanned.seen if replanned is not None and view is not None else None
                    advanced = self.traces.advance(
                        options.stack, versions, mine, self.store, view, read=kept_trace, moved=told, seen=told_seen
                    )
                    trace_holds = advanced or trace_holds
        # The table's summary the kept trace was found holding with, which no plan's writing moves.
        table = kept_trace.state.table if kept_trace is not None and kept_trace.holds and mine is not None else None
        return PlannedApply(plan, request, hosts, specs, resealed, versions=mine, trace_holds=trace_holds, table=table)

    def _observation(
        self,
        keeper: ObservationKeeper | None,
        records: Mapping[ResourceKey, ResourceRecord],
        hosts: Mapping[str, tuple[HostRef, Any]],
        listing: Collection[str],
        versions: Versions,
        *,
        moved: Collection[ResourceKey] | None,
    ) -> _Observed:
        """The live view a plan reads (``_Observed``), and the kept observation it is, if any (``keeper``'s, when the
        drivers vouch that the hosts are as it saw them). Without ``keeper`` (custom probe programs answer outside
        any driver's word, and usage figures move with the clock), every host is observed afresh; with one whose
        word moved for some hosts (an apply acted on them), only those are probed again; with one older than its
        usage figures may serve, every other host's own probe is made again too, not its VMs'."""
        found = keeper.reusable(hosts, listing, self.registry) if keeper is not None else None
        if found is not None and found.whole and not found.aged:
            kept = found.kept
            # Its rows are in the database unless something was written since it was kept there.
            if kept.versions == versions:
                return _Observed(kept.live, kept.at, kept)
            return _Observed(
                kept.live, kept.at, kept, self._record_observations(records, kept.live, since=kept, moved=moved)
            )
        if found is not None:
            again = observe_again(
                found.kept.live,
                hosts,
                self.registry,
                parallelism=self.settings.parallelism,
                programs=ProgramRecorder(self.store),
                inventory=listing,
                figures=found.aged,
            )
            if again is not None:
                live, probed = again
                return self._observed_again(records, found, live, probed, versions, moved=moved)
        observed_at = time.time()
        live = observe(
            hosts,
            self.registry,
            parallelism=self.settings.parallelism,
            custom=self.host_attributes,
            programs=ProgramRecorder(self.store),
            inventory=listing,
        )
        return _Observed(live, observed_at, None, self._record_observations(records, live))

    def _observed_again(
        self,
        records: Mapping[ResourceKey, ResourceRecord],
        found: Reusable,
        live: LiveView,
        probed: Collection[str],
        versions: Versions,
        *,
        moved: Collection[ResourceKey] | None,
    ) -> _Observed:
        """``live``, the kept observation ``found`` with the hosts of ``probed`` probed again (and, when it was too
        old, every other host's own probe made again), written where it differs from what the database holds."""
        kept = found.kept
        if not found.aged:
            observed_at = kept.at  # the hosts not probed again are as old as that observation
            log.info(
                "%d of %d host(s) probed again (their drivers' word moved); the others as observed %.1f s ago",
                len(probed),
                len(live.hosts),
                time.time() - observed_at,
            )
            recorded = self._record_observations(records, live, since=kept, probed=probed, moved=moved)
            return _Observed(live, observed_at, None, recorded)
        # Every host's figures are as of now; its VMs are as the drivers vouch.
        observed_at = time.time()
        log.info(
            "the hosts' own probes made again (an observation %.1f s old); %d of %d host(s) probed again whole (their "
            "drivers' word moved), the others' VMs as observed then",
            observed_at - kept.at,
            len(probed),
            len(live.hosts),
        )
        figures = [name for name in live.hosts if name not in probed]
        if probed or kept.versions != versions:
            recorded = self._record_observations(records, live, since=kept, probed=probed, moved=moved, figures=figures)
            return _Observed(live, observed_at, None, recorded)
        # The rows the kept observation wrote are those the database holds: only the hosts' samples are new.
        self._record_samples(live, {}, only=(), figures=figures)
        return _Observed(live, observed_at, None, renewed=dataclasses.replace(kept, live=live, at=observed_at))

    @contextmanager
    def _unless_moved(self, whole: bool, ours: Versions) -> Iterator[None]:
        """``PlanError`` as it is, unless the records were read row by row as asked for (not ``whole``) and the
        counters moved past ``ours`` (what this plan's own writing leaves): problems found on two states of the
        database are not reported, the plan is made again (``RowsMovedError``)."""
        try:
            yield
        except PlanError as error:
            if not whole and self.store.change_versions() != ours:
                raise RowsMovedError("records were written while this plan read them") from error
            raise

    def _observes_afresh(self, documents: Mapping[ResourceKey, AnyManifest]) -> bool:
        """Whether the plan of ``documents`` observes the hosts afresh, whatever the kept observation: custom probe
        programs answer outside any driver's word, and usage figures move with the clock."""
        keeper = self.observations
        return keeper is None or self.host_attributes is not None or documents_read_usage(documents)

    def _kept_trace(self, stack: str, versions: Versions, stamps: Mapping[ResourceKey, str] | None) -> KeptTrace | None:
        """The trace kept between processes for ``stack``, read before the records (``KeptTraces.read``), when a
        plan may start from it: this one is not the service's (``incremental``), its manifests have stamps, and the
        reconcilers are nebctl's own (whose code the kept trace's version covers)."""
        if self.incremental or self.traces is None or not stamps or self.reconcilers is not RECONCILERS:
            return None
        return self.traces.read(stack, versions, self.store)

    def _previous_trace(
        self,
        stack: str,
        versions: Versions,
        documents: Mapping[ResourceKey, AnyManifest],
        stamps: Mapping[ResourceKey, str] | None,
        *,
        kept: KeptTrace | None,
        rows_known: bool,
        every_row: RecordRows | None,
    ) -> PlanTrace | None:
        """The trace the plan starts from: the last plan's (``incremental``), or ``kept``, when the records are
        those it was made from: read with the rows it knows (``rows_known``), or read just now while the counters
        read before them stayed the same (``every_row``, when read in one query: the rows the trace's digests are
        compared with)."""
        if self.incremental:
            return self._trace
        if kept is None or not stamps:
            return None
        if not rows_known and self.store.change_versions() != versions:
            return None
        if self.traces is None:
            return None
        return self.traces.find(stack, versions, self.store, documents, stamps, read=kept, rows=every_row)

    def _request(
        self,
        documents: Mapping[ResourceKey, AnyManifest],
        records: Mapping[ResourceKey, ResourceRecord],
        live: LiveView,
        options: PlanOptions,
    ) -> PlanRequest:
        return PlanRequest(
            stack=options.stack,
            documents=documents,
            records=records,
            live=live,
            prune=options.prune,
            targets=options.targets,
            excludes=options.excludes,
            quotas=[
                QuotaLimit(q.scope, vms=q.vms, vcpu=q.vcpu, memory=q.memory, disk=q.disk)
                for q in self.store.list_quotas()
                if q.scope_type == "namespace"
            ],
            group_quotas=group_quotas(
                self.store, user=options.user or getpass.getuser(), groups=options.groups, stack=options.stack
            ),
            reconcilers=self.reconcilers,
        )

    def _plan_from(
        self, request: PlanRequest, previous: PlanTrace | None, stamps: Mapping[ResourceKey, str] | None
    ) -> tuple[Plan, Mapping[ResourceKey, dict[str, Any]], PlanTrace | None]:
        """``plan_again``, keeping the trace for the next plan (``incremental``) and saying what was redone."""
        try:
            plan, specs, trace = plan_again(request, previous, stamps)
        except PlanError:
            self._trace = self.last_replan = None
            raise
        redone = trace.replanned if trace is not None else None
        if self.incremental:
            self._trace = trace
            self.last_replan = redone
        if previous is None and not self.incremental:
            return plan, specs, trace
        if redone is None:
            log.debug("plan of stack %s made whole", request.stack)
        else:
            how = ", every VM placed again" if redone.placing else ""
            # The service plans this way at every edit (its -vv says so); a command says it at -v.
            log.log(
                logging.DEBUG if self.incremental else logging.INFO,
                "plan of stack %s made from the last one's trace: %d resource(s) planned again%s",
                request.stack,
                len(redone.keys),
                how,
            )
        return plan, specs, trace

    def _refuse_second_copies(
        self,
        plan: Plan,
        own: Mapping[ResourceKey, ResourceRecord],
        hosts: Mapping[str, tuple[HostRef, Any]],
        live: LiveView,
    ) -> None:
        """``PlanError`` naming every live object the plan would create a second copy of: objects carrying an
        ownership for a resource the database has no record of (a lost database, another installation's or
        stack's objects). VMs come from the probes just made; other objects are listed (one inventory call per
        host) only when the plan creates resources of their kinds, so a plan that creates nothing costs nothing."""
        creates = {c.key for c in plan.changes if c.type is ChangeType.CREATE and c.key not in own}
        if not creates:
            return
        objects = [
            LiveObject(live.vm_hosts.get(uuid, ""), status.owner, vm=status)
            for uuid, status in live.vms.items()
            if status.owner is not None
        ]
        if any(key.kind in SPANNED_OBJECTS for key in creates):
            answering = {name: hosts[name] for name in hosts if live.host_answers(name)}
            listed = survey(answering, self.registry, parallelism=self.settings.parallelism)
            objects += [item for item in listed.objects if item.vm is None]
        unfinished = self.store.last_unfinished_apply(plan.stack)
        in_flight = (
            {ResourceKey(a.kind, a.namespace, a.name) for a in self.store.actions_of(unfinished.id)}
            if unfinished is not None
            else set()
        )
        found, ours = unrecorded(
            objects, stack=plan.stack, installation=self.installation(), keys=creates, in_flight=in_flight
        )
        if found:
            advice = (
                "the database lacks records of live objects this stack owns: run `nebctl recover` (or add "
                "--recover) to rebuild them; nothing was created over them"
                if ours
                else "nebctl never creates a second copy over objects it does not own; rename the resources or "
                "remove those objects"
            )
            raise PlanError([*found, advice])

    def _record_observations(
        self,
        records: Mapping[ResourceKey, ResourceRecord],
        live: LiveView,
        *,
        since: KeptObservation | None = None,
        probed: Collection[str] = (),
        moved: Collection[ResourceKey] | None = None,
        figures: Collection[str] = (),
    ) -> _Recorded | None:
        """Keep what was just probed, for ``get`` and ``describe``, and its samples, for ``hosts`` and ``top`` (each
        one bulk write). ``live`` is the kept observation ``since`` (with the hosts of ``probed`` probed again) when
        given: where its rows were written and worded from records told by their digests, only the rows of the
        hosts probed again and of the records that moved since are written (and the samples of those hosts only).
        ``records`` may be rows read only as asked for (``KnownRows``, the records of a kept trace that holds, with
        ``moved`` the records written since it was made): the rows an observation words are read then. Failing to
        keep them costs the user only a staler view, so it is logged and the plan goes on. What was written (which
        raised the resources' change counter once); None when nothing was. The hosts of ``figures`` had their own
        probe made again, not their VMs': only their hosts' samples are written."""
        if not self.keep_observations:
            return None
        before = _digests(since.worded) if since is not None and since.worded is not None else None
        # The samples of a view observed again are those of the hosts probed again: the others' were written when
        # they were probed (their usage figures, which move with the clock, are as old as that).
        sampled: Collection[str] | None = None if since is None else set(probed)
        try:
            wording = self._wording(records, probed if before is not None else None, moved)
            if before is None or wording.worded is None:
                self.store.record_observations(observations(wording.views, live), probed=list(live.hosts))
            else:
                # A record whose row is not one they were worded from (written since, or new). One deleted took its
                # row with it (``Store.delete_resource``).
                told = wording.worded.items()
                changed = {key for key, digest in told if digest not in before and key.kind in _WORDED}
                hosts = set(probed)
                found = observations(wording.views, live, hosts=hosts, keys=changed)
                self.store.record_observations(found, probed=sorted(hosts), replaced=changed)
        except DatabaseError as error:
            log.warning("could not record what was observed: %s", error)
            return None
        self._record_samples(live, wording.views, only=sampled, figures=figures)
        if wording.worded is None:
            return _Recorded(None)
        digests = wording.worded.values()
        if wording.complete or before is None:
            return _Recorded(b"".join(digests))
        # The rows not read are those the kept observation was worded from (they did not move): their digests stay.
        return _Recorded(b"".join(before.union(digests)))

    def _record_samples(
        self,
        live: LiveView,
        records: Mapping[ResourceKey, RecordView],
        *,
        only: Collection[str] | None = None,
        figures: Collection[str] = (),
    ) -> None:
        """The samples that ``hosts`` and ``top`` show (``sampling.record_observation``), unless this controller
        keeps no observations (the service's monitor writes its own); failing to write them is logged, and the plan
        goes on."""
        if not self.keep_observations:
            return
        try:
            record_observation(self.store, live, records, only=only, figures=figures)
        except DatabaseError as error:
            log.warning("could not record what was observed: %s", error)

    def _wording(
        self,
        records: Mapping[ResourceKey, ResourceRecord],
        probed: Collection[str] | None,
        moved: Collection[ResourceKey] | None,
    ) -> _Wording:
        """The records an observation words (``_record_observations``): each VM's applied spec and live state, not its
        whole record (the plan reads few of them again). Of rows read only as asked for (``KnownRows``), those of the
        hosts of ``probed`` and their resources and the records of ``moved`` (when writing only those, and the
        records that moved are known), else every row."""
        if not isinstance(records, RecordRows):
            return _Wording(records, None, True)
        if not isinstance(records, KnownRows):
            return _Wording(records.views(), records.row_digests(), True)
        if probed is None or moved is None:
            # Every row, each told as the plan read it where it did.
            every = self.store.record_rows()
            return _Wording({**every.views(), **records.read_views()}, every.row_digests(), True)
        for key in moved:
            records.get(key)  # its row read, if it is still known
        around = self.store.rows_on_hosts(probed) if probed else RecordRows({}, ())
        views = {**around.views(), **records.read_views()}
        return _Wording(views, {**around.row_digests(), **records.row_digests()}, False)

    # --- recovering ---------------------------------------------------------------------------------------------

    def recover(
        self,
        documents: Mapping[ResourceKey, AnyManifest],
        *,
        stack: str | None,
        hosts: Sequence[str] = (),
        dry_run: bool = False,
    ) -> tuple[Recovery, Survey]:
        """Rebuild the records the database lacks from the live objects of ``hosts`` (default: every host of
        the manifests and the database), for ``stack`` (every stack of this installation when None); written
        in one transaction unless ``dry_run``. The caller holds the writers' lock (``controller.recovering``)."""
        existing = {record.key: record for record in self.store.list_resources()}
        known = known_hosts(documents, existing)
        unknown = [name for name in hosts if name not in known]
        if unknown:
            raise PlanError([f"host {unknown[0]!r} is neither in the manifests nor recorded"])
        chosen = {name: known[name] for name in (hosts or sorted(known))}
        found = survey(chosen, self.registry, parallelism=self.settings.parallelism)
        recovery = rebuild(
            found,
            installation=self.installation(),
            records=existing,
            stacks={stack} if stack is not None else None,
            documents=documents if documents and stack is not None else None,
            stack=stack,
        )
        if not dry_run and recovery.records:
            with self.store.batch() as tx:  # all or nothing: a recover killed half-way wrote none
                tx.save_resources(recovery.records)
                tx.add_event(
                    EventRecord(
                        type="recover.finished",
                        message=f"{len(recovery.records)} record(s) rebuilt from live objects",
                        stack=stack,
                        data={"records": len(recovery.records), "problems": len(recovery.problems)},
                    )
                )
        return recovery, found

    # --- applying ----------------------------------------------------------------------------------------------

    def reseal(self, planned: PlannedApply) -> None:
        """Write again the records whose secrets an older key sealed, sealed with the current key (a key
        rotation completes this way). Only under the writers' lock; ``apply`` does it, and a writer that finds
        nothing to apply calls it directly."""
        if planned.resealed:
            self.store.save_resources(planned.resealed)

    def apply(
        self,
        planned: PlannedApply,
        *,
        parallelism: int | None = None,
        revision: RevisionRecord | None = None,
        stop: threading.Event | None = None,
        cancel: threading.Event | None = None,
        on_change: Callable[[Sequence[Change]], None] | None = None,
        on_resume: Callable[[int, int, int], None] | None = None,
        user: str | None = None,
    ) -> ApplyResult:
        """Execute the plan. The caller holds the writers' lock. ``on_resume(apply_id, done, total)`` is told
        about an earlier apply of this stack that never finished (it is closed as interrupted). ``user`` (the
        system user by default) is recorded as the holder and as the owner of the placements it makes."""
        plan = planned.plan
        stack = plan.stack
        resumed_from = None
        unfinished = self.store.last_unfinished_apply(stack)
        if unfinished is not None:
            actions = self.store.actions_of(unfinished.id)
            done = sum(1 for action in actions if action.state == Outcome.SUCCEEDED)
            self._close_interrupted(unfinished.id, actions, done)
            resumed_from = unfinished.id
            if on_resume is not None:
                on_resume(unfinished.id, done, len(actions))
        with self.store.own_writes() as written:
            result = self._apply(
                planned,
                resumed_from=resumed_from,
                parallelism=parallelism,
                revision=revision,
                stop=stop,
                cancel=cancel,
                on_change=on_change,
                user=user,
            )
        self._trace_after(planned, written)
        return result

    def _apply(
        self,
        planned: PlannedApply,
        *,
        resumed_from: int | None,
        parallelism: int | None,
        revision: RevisionRecord | None,
        stop: threading.Event | None,
        cancel: threading.Event | None,
        on_change: Callable[[Sequence[Change]], None] | None,
        user: str | None,
    ) -> ApplyResult:
        plan = planned.plan
        stack = plan.stack
        self.reseal(planned)
        user = user or getpass.getuser()
        holder = f"{user}@{os.uname().nodename}:{os.getpid()}"
        apply_id = self.store.begin_apply(
            stack=stack, revision=revision.label if revision else None, plan=plan_summary(plan), holder=holder
        )
        if revision is not None:
            self.store.record_revision(apply_id, revision)
        needs = plan.dependencies()
        self.store.journal_actions(
            apply_id,
            [
                ActionRecord(
                    action_id=action.id,
                    kind=action.key.kind,
                    namespace=action.key.namespace,
                    name=action.key.name,
                    family=action.family.value,
                    operation=action.operation,
                    host=action.host,
                    depends_on=tuple(needs[action.id]),
                )
                for action in plan.actions
            ],
        )
        world = ExecutionWorld(
            stack=stack,
            registry=self.registry,
            hosts=planned.hosts,
            documents=planned.request.documents,
            records=own_records(planned.request.records, stack),  # type: ignore[arg-type]
            shutdown_timeout=self.settings.shutdown_timeout,
            sources=ImageSources(registry=self.registry, settings=self.settings, documents=planned.request.documents),
            installation=self.installation(),
            specs=planned.final_specs,
            seal=lambda key, spec: seal_spec(key.kind, spec, self.store.secrets) or {},
        )
        programs = ProgramRecorder(self.store)
        hooks = self._hooks(planned, programs)
        # The journal's rounds run on one connection kept for the apply: they are on the executor's critical path.
        with self.store.keeping_connection() as journalled:
            journal = StoreJournal(
                journalled, apply_id, planned, world, on_events=hooks.dispatch if hooks else None, owner=user
            )
            journal.begin()
            executor = Executor(
                plan,
                lambda action: self.reconcilers[action.key.kind].realise(action, world),
                journal=journal,
                parallelism=parallelism or self.settings.parallelism,
                retry=self.settings.retry,
                timeout_for=lambda action: self.settings.timeout_for(action.family.value, action.operation),
                stop=stop,
                cancel=cancel,
                on_change=on_change,
                programs=programs,
            )
            report = executor.run()
        state = _apply_state(report)
        self.store.finish_apply(apply_id, state=state, summary=report_summary(report, plan))
        finished = EventRecord(
            type="apply.finished" if state == ApplyState.SUCCEEDED else f"apply.{state}",
            severity=Severity.INFO if state == ApplyState.SUCCEEDED else Severity.ERROR,
            message=f"apply #{apply_id} of stack {stack} {state}",
            stack=stack,
            data=report_summary(report, plan),
        )
        identifier = self.store.add_event(finished)
        if hooks is not None:
            hooks.dispatch([event_payload(finished, identifier)])
            hooks.wait()
        return ApplyResult(apply_id, report, resumed_from, state)

    def _trace_after(self, planned: PlannedApply, written: OwnWrites) -> None:
        """Move the stack's kept trace on past what this apply wrote (``KeptTraces.written``), when it held at the
        plan's counters and the counters now count nothing but this apply's writing: the next plan then reads the
        rows of the records it reads, not every row to tell those that moved. An apply that created or removed a
        record leaves it (the trace holds for the very records it was made from, no more, no fewer)."""
        before = planned.versions
        if self.traces is None or before is None or not planned.trace_holds:
            return
        now = self.store.change_versions()
        if now.access != before.access or now.resources != before.resources + written.raised:
            return  # another writer came between the plan and now
        keys = written.written
        records = planned.request.records
        if not keys or any(key not in records for key in keys):
            return
        rows = self.store.rows_of(keys)
        if len(rows) != len(keys):
            return
        self.traces.written(planned.plan.stack, before, now, self.store, rows.summaries())

    def _hooks(self, planned: PlannedApply, programs: ProgramRecorder) -> HookDispatcher | None:
        """The dispatcher of the manifests' hooks, through the hooks driver (``exec`` runs real programs)."""
        documents = planned.request.documents
        # By key first: the documents of a set read from the manifest cache are read back only when asked for.
        hooks = {key: doc for key in documents if key.kind is Kind.HOOK and isinstance(doc := documents[key], Hook)}
        if not hooks:
            return None
        name = str(self.settings.drivers.get("hooks", {}).get("driver", "exec"))
        driver: HookDriver = self.registry.get(Family.HOOKS, name)
        return HookDispatcher(store=self.store, driver=driver, hooks=hooks, programs=programs)

    def _close_interrupted(self, apply_id: int, actions: Sequence[ActionRecord], done: int) -> None:
        """Close an apply whose process died. Its journal would otherwise keep actions pending, queued or
        running forever; they are closed as cancelled (the outcome of one that was queued or running is whatever
        the hosts now report, which the new plan was made from), together with the apply, in one transaction."""
        with self.store.batch() as tx:
            for action in actions:
                if action.state == Outcome.RUNNING:
                    error = f"interrupted while running: the process of apply #{apply_id} died"
                elif action.state == Outcome.QUEUED:
                    # Its start was journalled: it may have begun, with no round after it to say so.
                    error = f"interrupted while starting or running: the process of apply #{apply_id} died"
                elif action.state == Outcome.PENDING:
                    error = f"not started: the process of apply #{apply_id} died"
                else:
                    continue
                tx.update_action(apply_id, action.action_id, state=Outcome.CANCELLED.value, error=error)
            tx.finish_apply(apply_id, state=ApplyState.INTERRUPTED, summary={"resumed": True, "done": done})


# The kinds whose records an observation words (``observing.observations``).
_WORDED = frozenset({Kind.HOST, Kind.VIRTUAL_MACHINE})


def _digests(joined: bytes) -> set[bytes]:
    """The digests ``RecordRows.row_digests`` gives, from their bytes end to end."""
    size = ROW_DIGEST_SIZE
    return {joined[start : start + size] for start in range(0, len(joined), size)}


@dataclass(frozen=True)
class _Wording:
    """The records an observation is worded from (``Controller._wording``), the digests of their rows (None: not
    rows), and whether those are every row."""

    views: Mapping[ResourceKey, ResourceRecord | RowView]
    worded: Mapping[ResourceKey, bytes] | None
    complete: bool


@dataclass(frozen=True)
class _Recorded:
    """What ``Controller._record_observations`` wrote: ``worded``, the digests of the records' rows its rows were
    worded from (``RecordRows.row_digests``), when it had them."""

    worded: bytes | None


@dataclass(frozen=True)
class _Observed:
    """The live view a plan reads (``Controller._observation``): when it was made, the kept observation it is (if
    it is one, as it was kept), and what was written of it to the database (None: nothing)."""

    live: LiveView
    at: float
    kept: KeptObservation | None
    recorded: _Recorded | None = None
    # A kept observation made up to date without writing to the database (its hosts' own probes made again), to keep
    # as it is: its rows are still those the database holds.
    renewed: KeptObservation | None = None


def _told_moved(
    previous: PlanTrace, kept: KeptTrace | None, stored: RecordRows | Sequence[ResourceRecord]
) -> dict[ResourceKey, RowSummary] | None:
    """The records that moved since the kept trace ``previous`` was made, told from every row (``stored``, read in
    one query) because the trace did not hold, with what their rows tell: for its state (``KeptTraces.advance``).
    Empty when none did (another process's writing moved the counters, not a record); None when the trace held."""
    if kept is None or kept.holds or not isinstance(stored, RecordRows) or previous.stamped is None:
        return None
    return {key: (*stored.summary(key), stored.may_hold_secrets(key)) for key in previous.stamped.moved}


def reveal_rows(
    rows: RecordRows, documents: Mapping[ResourceKey, AnyManifest], ring: KeyRing
) -> tuple[RecordRows, list[ResourceRecord]]:
    """``reveal_records`` of every record of ``rows``, reading only those whose stored specs may hold a secret
    (told from their text): the others are revealed as stored, and have nothing to seal again."""
    revealed, resealed = reveal_records([rows[key] for key in rows if rows.may_hold_secrets(key)], documents, ring)
    return rows.with_records(revealed), resealed


def reveal_records(
    records: Sequence[ResourceRecord], documents: Mapping[ResourceKey, AnyManifest], ring: KeyRing
) -> tuple[dict[ResourceKey, ResourceRecord], list[ResourceRecord]]:
    """The records by key, with each stored secret digest that the manifests' value matches replaced by that
    value (``database.sealing``), so the planner sees a secret as changed exactly when it changed; and those to
    write again: digests an older key made, secrets an older nebctl stored in clear. ``PlanError`` names every
    record sealed with a key not in ``ring``."""
    revealed: dict[ResourceKey, ResourceRecord] = {}
    resealed: list[ResourceRecord] = []
    problems: list[str] = []
    for record in records:
        key = record.key
        if key.kind not in SECRET_PATHS:
            revealed[key] = record
            continue
        document = documents.get(key)
        values = secret_values(key.kind, record.applied, record.desired)
        # Without a sealed secret there is nothing to reveal: the record as stored (most VMs, which carry no
        # cloud-init secret; the manifest's spec is not even dumped).
        if document is None or not any(is_sealed(value) for value in values):
            revealed[key] = record
            if any(isinstance(value, str) and not is_sealed(value) for value in values):
                resealed.append(record)  # stored in clear by an older nebctl: the next writer seals it
            continue
        clear = spec_document(document)
        try:
            applied = reveal_spec(key.kind, record.applied, clear, ring)
            desired = reveal_spec(key.kind, record.desired, clear, ring)
        except SecretKeyError as error:
            problems.append(
                f"{key}: {error}; put that key back in the key file (below the current key) to compare the "
                "manifests' secrets with what was applied"
            )
            continue
        clear_record = dataclasses.replace(record, applied=applied.spec, desired=desired.spec)
        revealed[key] = clear_record
        if applied.stale or desired.stale:
            resealed.append(clear_record)
    if problems:
        raise PlanError(problems)
    return revealed, resealed


def _apply_state(report: ExecutionReport) -> str:
    if report.interrupted:
        return ApplyState.INTERRUPTED
    if report.ok:
        return ApplyState.SUCCEEDED
    if report.with_state(Outcome.SUCCEEDED):
        return ApplyState.PARTIAL
    return ApplyState.FAILED
