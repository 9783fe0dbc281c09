"""What a plan is: resource changes for people, and a graph of driver actions for the executor.

A ``Plan`` is a pure value: ``planning.make_plan`` builds it, ``rendering`` prints it, the executor runs its
actions, and ``--out PLANFILE`` saves it with the fingerprint of the state it was made from. Actions carry only
JSON data and never a secret: anything sensitive (cloud-init data) is read from the manifests when the action
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from nebctl.core.families import Family
from nebctl.core.fields import FieldChange
from nebctl.core.keys import ResourceKey

if TYPE_CHECKING:
    import networkx as nx


class ChangeType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


class Phase(StrEnum):
    """Which side of a resource's change an action is on; its reconciler says (``reconcilers.base.ActionGroup``).

    The planner orders resources by it: what a resource builds waits for what it refers to being built, and what
    it destroys or releases goes before what it used is destroyed."""

    BUILD = "build"  # creates or changes the resource (a new VM's disks, a network created on a host)
    RELEASE = "release"  # an update stops using something: a shutdown, a NIC released, a disk deleted, a host left
    DESTROY = "destroy"  # the resource, or the old one a replacement deletes first, goes away

    @property
    def tears_down(self) -> bool:
        """Release and destroy are one side of the order: both must end before what they stop using goes. Kept
        apart from the build side, which may need that very resource built again (one side would be a cycle)."""
        return self is not Phase.BUILD


@dataclass(frozen=True, slots=True)
class DriftItem:
    """A difference between what was last applied and what monitoring sees, made outside nebctl."""

    key: ResourceKey
    message: str  # "was stopped", "was deleted", "memory was changed from 2Gi to 1Gi"
    correction: str | None  # "it will be started"; None when nebctl will not act (host not answering)
    # The host the difference is on, for a resource living on several hosts (a network changed on one): what
    # the plan does about it depends on the host (repaired, deleted where the manifests drop it, or refused).
    host: str | None = None


class ResourceChange(NamedTuple):
    """One resource's change, for people. A named tuple, not a frozen dataclass: a plan holds one per resource, and
    a kept plan or trace of 10,000 unchanged resources builds them all again when read; a tuple is built a third as
    fast as a frozen dataclass, each field set through ``object.__setattr__``."""

    key: ResourceKey
    type: ChangeType
    fields: Sequence[FieldChange] = ()  # for a create, listed when read (``fields.AddedFields``)
    restart: bool = False  # an update that stops and starts the VM
    host: str | None = None  # where the resource is (or goes, for a new VM)
    previous_host: str | None = None  # set when a VM moves
    reason: str = ""  # extra words for the plan: "resuming an interrupted create", "deleted outside nebctl"
    drift: tuple[DriftItem, ...] = ()
    unchanged: int = 0  # attributes without change, for "(N unchanged attributes hidden)"
    # A replacement that creates the new resource before the old one goes (``lifecycle.createBeforeDestroy``):
    # the old one's deletion is then a change of its own, of its deposed record.
    create_first: bool = False
    # The live objects already are as declared and only the record is behind (an update interrupted after its
    # last action, or a change made outside nebctl that happens to be the declared one): no action, the apply
    # brings the record up to date.
    record_only: bool = False

    @property
    def is_change(self) -> bool:
        return self.type is not ChangeType.NOOP


@dataclass(frozen=True, slots=True)
class Action:
    """One driver call. ``id`` is unique within the plan and stable across re-plans of the same change."""

    id: str
    key: ResourceKey
    family: Family
    operation: str
    host: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


class Edges(Sequence[tuple[str, str]]):
    """The order between a plan's actions: ``(before, after)`` pairs of action ids, kept as two lists of ids.

    A full plan of 100,000 VMs has about two million edges, and a tuple per edge (72 bytes with its place in
    the list) was the second largest part of it after the actions; the ids themselves are the actions' own
    strings. It reads as, and compares equal to, the tuple of its pairs; once made it does not change."""

    __slots__ = ("_after", "_before")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._before: list[str] = []
        self._after: list[str] = []
        for before, after in pairs:
            self._before.append(before)
            self._after.append(after)

    @classmethod
    def of(cls, before: list[str], after: list[str]) -> Edges:
        """Edges from ``before[i] -> after[i]``; the lists are taken over, not copied."""
        if len(before) != len(after):
            raise ValueError("an edge needs both ends")
        edges = cls()
        edges._before, edges._after = before, after
        return edges

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(self._before, self._after, strict=True)

    def __len__(self) -> int:
        return len(self._before)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[tuple[str, str], ...]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, str] | tuple[tuple[str, str], ...]:
        if isinstance(index, slice):
            return tuple(zip(self._before[index], self._after[index], strict=True))
        return self._before[index], self._after[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Edges):
            return self._before == other._before and self._after == other._after
        if isinstance(other, tuple):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


@dataclass(frozen=True)
class Summary:
    add: int = 0
    change: int = 0
    destroy: int = 0

    def __str__(self) -> str:
        return f"Plan: {self.add} to add, {self.change} to change, {self.destroy} to destroy."


@dataclass(frozen=True)
class Plan:
    stack: str
    changes: tuple[ResourceChange, ...]
    actions: tuple[Action, ...]
    edges: Sequence[tuple[str, str]]  # (before, after): ``after`` starts once ``before`` has succeeded; ``Edges``
    # The digest of the desired and observed state the plan was made from (``fingerprint``), or how to compute it:
    # an apply records it and a saved plan carries it, but a ``diff`` that prints the plan never reads it, and at
    # 10,000 resources computing it costs a tenth of the plan. None: a plan read back without it (``__getstate__``).
    fingerprinted: str | Callable[[], str] | None = field(compare=False, repr=False)
    drift: tuple[DriftItem, ...] = ()  # drift nebctl does not correct (a host that does not answer)
    warnings: tuple[str, ...] = ()

    @cached_property
    def fingerprint(self) -> str:
        """The digest a saved plan is checked with: it is refused once the state it was made from has moved."""
        source = self.fingerprinted
        if source is None:
            raise LookupError("this plan was kept without its fingerprint")  # who needs one asks ``fingerprinted``
        return source if isinstance(source, str) else source()

    @property
    def has_fingerprint(self) -> bool:
        """Whether ``fingerprint`` can be told: a plan read back from a pickle may have been written without it."""
        return self.fingerprinted is not None or "fingerprint" in self.__dict__

    def __getstate__(self) -> dict[str, Any]:
        """A plan is pickled (a kept plan) with its fingerprint if it was computed (something showed it), else
        without: never with what it is computed from, which is most of what the plan was made from."""
        state = dict(self.__dict__)
        known = state.pop("fingerprint", None)
        source = self.fingerprinted
        state["fingerprinted"] = known if known is not None else source if isinstance(source, str) else None
        return state

    @property
    def summary(self) -> Summary:
        add = change = destroy = 0
        for item in self.changes:
            if item.type is ChangeType.CREATE:
                add += 1
            elif item.type is ChangeType.UPDATE:
                change += 1
            elif item.type is ChangeType.DELETE:
                destroy += 1
            elif item.type is ChangeType.REPLACE:
                add += 1
                destroy += 0 if item.create_first else 1  # then the deposed record's deletion counts
        return Summary(add, change, destroy)

    @property
    def has_changes(self) -> bool:
        return any(item.is_change for item in self.changes)

    def graph(self) -> nx.DiGraph[str]:
        """The action graph: one node per action id (attribute ``action``), an edge per dependency."""
        import networkx as nx  # imported by what wants a graph only (about 0.08 s)

        graph: nx.DiGraph[str] = nx.DiGraph()
        for action in self.actions:
            graph.add_node(action.id, action=action)
        graph.add_edges_from(self.edges)
        return graph

    def dependencies(self) -> dict[str, list[str]]:
        """For each action id, the ids it waits for."""
        needs: dict[str, list[str]] = {action.id: [] for action in self.actions}
        for before, after in self.edges:
            needs[after].append(before)
        return needs
