"""Checks across manifest documents: references, duplicates, dependency cycles, static addresses.

``validate_documents`` runs after every document has passed its own model (``schemas.loading`` calls it before
returning a ``ManifestSet``); it is pure and returns diagnostics located at the offending field. The references
checked here are read by ``schemas.references``, which the planner orders actions by too, so that the order the
plan follows and the references validated here cannot disagree.

Scoping: namespaced kinds (Image, Network, SecurityGroup, VirtualMachine, Hook) reference namespaced kinds of
their own namespace; cluster-scoped kinds (Host, Datastore, Marketplace) are referenced by name from anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

from nebctl.core.keys import Kind, ResourceKey, parse_kind
from nebctl.core.memos import IdentityMemo
from nebctl.core.ordering import never_free
from nebctl.schemas.checking import LoadedDocument
from nebctl.schemas.diagnostics import (
    DataPath,
    Diagnostic,
    SourceLocation,
    closest_match,
    escape_non_ascii,
    format_path,
    non_ascii_note,
)
from nebctl.schemas.model_fields import item_type, model_fields_at, model_in
from nebctl.schemas.models import (
    AnyManifest,
    Network,
    VirtualMachine,
    VirtualMachineSpec,
)
from nebctl.schemas.references import BY_KIND, Reference


def references_of(key: ResourceKey, manifest: AnyManifest) -> list[Reference]:
    """Every reference a manifest makes, implicit (disks, nics, placement...) and explicit (``dependsOn``), with
    paths from the document's root: the kind's reading of references (``schemas.references``), which the planner
    orders actions by too. Malformed ``dependsOn`` entries are left out; ``validate_documents`` reports them."""
    spec = manifest.spec.model_dump()
    return [
        Reference(("spec", *reference.path), reference.target, reference.explicit)
        for reference in BY_KIND[key.kind](key, spec)
    ]


# The references of the documents of the last check (with the key each was read under). A service checks its whole
# set again after each edit, and the documents of its unchanged files are the very objects it checked before
# (``schemas.caching`` keeps them in memory): only the edited file's references need reading again. The manifests
# are frozen, so an object's references never change. Only the last check's are kept.
_LAST_REFERENCES: IdentityMemo[AnyManifest, tuple[ResourceKey, list[Reference]]] = IdentityMemo()


def remember_references(known: Iterable[tuple[ResourceKey, AnyManifest, list[Reference]]]) -> None:
    """Take these references (``references_of(key, manifest)``, read before: the manifest cache keeps each
    document's) as those of their documents, for the next check: it then computes only the others'."""
    _LAST_REFERENCES.add((manifest, (key, references)) for key, manifest, references in known)


def references_known(manifest: AnyManifest) -> bool:
    """Whether the next check already holds this very document's references."""
    return _LAST_REFERENCES.get(manifest) is not None


def validate_documents(documents: Sequence[LoadedDocument]) -> list[Diagnostic]:
    """Every cross-document problem of a set of individually valid documents, sorted by file position."""
    unique, diagnostics = _duplicates(documents)
    # Each document's references to documents of the set, in order, with the path of the first to each target.
    edges: dict[ResourceKey, dict[ResourceKey, DataPath]] = {}
    kept: list[tuple[AnyManifest, tuple[ResourceKey, list[Reference]]]] = []
    for document in unique.values():
        targets = edges[document.key] = {}
        diagnostics.extend(own_problems(document))
        known = _LAST_REFERENCES.get(document.manifest)
        if known is None or known[0] != document.key:
            known = (document.key, references_of(document.key, document.manifest))
        kept.append((document.manifest, known))
        for reference in known[1]:
            if reference.target in unique:
                targets.setdefault(reference.target, reference.path)
            else:
                diagnostics.append(_dangling(document, reference, unique))
    _LAST_REFERENCES.replace(kept)
    if _has_cycle(edges):
        diagnostics.extend(_cycles(edges, unique))
    diagnostics.extend(_static_addresses(unique))
    file_order: dict[str, int] = {}
    for document in documents:
        file_order.setdefault(document.location.file, len(file_order))
    return sorted(diagnostics, key=lambda d: _position(d, file_order))


def own_problems(document: LoadedDocument) -> list[Diagnostic]:
    """The problems ``validate_documents`` finds in a document whatever the other documents are: a malformed
    ``dependsOn`` entry, an ``ignoreChanges`` path the VM spec does not have."""
    manifest = document.manifest
    if not isinstance(manifest, VirtualMachine):
        return []
    return [*_malformed_depends_on(document), *_ignore_changes(document, manifest)]


def crossing(key: ResourceKey, manifest: AnyManifest, references: Sequence[Reference]) -> tuple[object, ...]:
    """Everything the checks of ``validate_documents`` that span documents read of one (``references`` are its
    ``references_of``): its key (duplicates), the targets of its references (dangling ones, cycles), a VM's static
    addresses and a network's spec (addresses in range, taken twice). A set whose documents all passed their own
    checks (``own_problems``) and in which these are as they were in a set that passed, passes too. Whoever adds a
    check across documents adds what it reads here."""
    addresses: object = None
    if isinstance(manifest, VirtualMachine):
        addresses = tuple((nic.network, nic.ip) for nic in manifest.spec.nics)
    elif isinstance(manifest, Network):
        addresses = manifest.spec.model_dump()
    return (key, tuple(reference.target for reference in references), addresses)


def _position(diagnostic: Diagnostic, file_order: dict[str, int]) -> tuple[int, int, int]:
    location = diagnostic.location
    if location is None:
        return (-1, 0, 0)
    return (file_order.get(location.file, 0), location.line, location.column)


def _duplicates(
    documents: Sequence[LoadedDocument],
) -> tuple[dict[ResourceKey, LoadedDocument], list[Diagnostic]]:
    unique: dict[ResourceKey, LoadedDocument] = {}
    diagnostics: list[Diagnostic] = []
    for document in documents:
        first = unique.get(document.key)
        if first is None:
            unique[document.key] = document
            continue
        scope = "" if document.key.kind.cluster_scoped else f" in namespace '{document.key.namespace}'"
        diagnostics.append(
            Diagnostic(
                document.locate("metadata", "name"),
                document.subject,
                f"duplicate {document.key.kind.value} '{document.key.name}'{scope}: "
                f"also defined at {first.locate('metadata', 'name')}",
            )
        )
    return unique, diagnostics


def _malformed_depends_on(document: LoadedDocument) -> list[Diagnostic]:
    manifest = document.manifest
    if not isinstance(manifest, VirtualMachine):
        return []
    diagnostics = []
    for index, text in enumerate(manifest.spec.dependsOn):
        try:
            ResourceKey.parse(text, namespace=document.key.namespace)
        except ValueError:
            kind_text = text.split("/")[-2] if text.count("/") >= 1 else text
            try:
                parse_kind(kind_text)
                note = non_ascii_note("reference", text)
                message = (
                    f"invalid reference '{escape_non_ascii(text)}' in dependsOn: {note}"
                    if note is not None
                    else f"invalid reference '{text}' in dependsOn: expected KIND/NAME, such as network/lan"
                )
            except ValueError:
                names = sorted({kind.short for kind in Kind} | {kind.value for kind in Kind})
                suggestion = closest_match(kind_text, names)
                hint = f", did you mean '{suggestion}'?" if suggestion else ""
                message = f"unknown kind '{escape_non_ascii(kind_text)}' in dependsOn '{escape_non_ascii(text)}'{hint}"
                note = non_ascii_note("kind", kind_text)
                if note is not None:
                    message += f" ({note})"
            diagnostics.append(Diagnostic(document.locate("spec", "dependsOn", index), document.subject, message))
    return diagnostics


def _dangling(document: LoadedDocument, reference: Reference, unique: dict[ResourceKey, LoadedDocument]) -> Diagnostic:
    target = reference.target
    candidates = [key.name for key in unique if key.kind is target.kind and key.namespace == target.namespace]
    suggestion = closest_match(target.name, candidates)
    hint = f", did you mean '{suggestion}'?" if suggestion else ""
    scope = "" if target.kind.cluster_scoped else f" in namespace '{target.namespace}'"
    label = "dependsOn: " if reference.explicit else ""
    return Diagnostic(
        document.locate(*reference.path),
        document.subject,
        f"{label}{target.kind.value} '{target.name}' not found{scope}{hint}",
    )


def _has_cycle(edges: dict[ResourceKey, dict[ResourceKey, DataPath]]) -> bool:
    """Whether the reference graph has a cycle: some document is never freed of references (a document waits for
    those it refers to)."""
    return bool(never_free(edges, ((target, source) for source, targets in edges.items() for target in targets)))


def _cycles(
    edges: dict[ResourceKey, dict[ResourceKey, DataPath]], unique: dict[ResourceKey, LoadedDocument]
) -> list[Diagnostic]:
    import networkx as nx  # only to report cycles, which _has_cycle found: an import worth 0.08 s otherwise

    graph: nx.DiGraph[ResourceKey] = nx.DiGraph()
    for source, targets in edges.items():
        graph.add_node(source)
        for target, path in targets.items():
            graph.add_edge(source, target, path=path)
    load_order = {key: index for index, key in enumerate(unique)}
    diagnostics = []
    for component in nx.strongly_connected_components(graph):
        members = sorted(component, key=load_order.__getitem__)
        start = members[0]
        if len(members) == 1 and not graph.has_edge(start, start):
            continue
        # One cycle per strongly connected component, from its first document: enough to show what to break.
        cycle = [start]
        for _, target in nx.find_cycle(graph.subgraph(component), source=start):
            cycle.append(target)
        while cycle[-1] != cycle[0]:
            cycle.append(cycle[0])  # pragma: no cover - find_cycle from ``start`` always closes at ``start``
        text = " -> ".join(str(key) for key in cycle)
        first = unique[start]
        path = graph.edges[cycle[0], cycle[1]]["path"]
        diagnostics.append(Diagnostic(first.locate(*path), first.subject, f"dependency cycle: {text}"))
    return diagnostics


def _static_addresses(unique: dict[ResourceKey, LoadedDocument]) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    taken: dict[tuple[ResourceKey, ipaddress.IPv4Address], SourceLocation] = {}
    for document in unique.values():
        manifest = document.manifest
        if not isinstance(manifest, VirtualMachine):
            continue
        for index, nic in enumerate(manifest.spec.nics):
            if nic.ip is None:
                continue
            network_key = ResourceKey.of(Kind.NETWORK, nic.network, document.key.namespace)
            network_doc = unique.get(network_key)
            if network_doc is None or not isinstance(network_doc.manifest, Network):
                continue  # reported as a dangling reference
            where = document.locate("spec", "nics", index, "ip")
            problem = _address_problem(nic.ip, network_doc.manifest)
            if problem is not None:
                diagnostics.append(Diagnostic(where, document.subject, problem))
                continue
            first = taken.setdefault((network_key, nic.ip), where)
            if first is not where:
                diagnostics.append(
                    Diagnostic(
                        where,
                        document.subject,
                        f"address {nic.ip} on network '{nic.network}' is already taken at {first}",
                    )
                )
    return diagnostics


def _address_problem(address: ipaddress.IPv4Address, network: Network) -> str | None:
    spec = network.spec
    name = network.metadata.name
    if address not in spec.cidr:
        return f"address {address} is outside network '{name}' ({spec.cidr})"
    if address == spec.effective_gateway:
        return f"address {address} is the gateway of network '{name}'"
    first, last = spec.effective_range
    if not first <= address <= last:
        return f"address {address} is outside the range of network '{name}' ({first} - {last})"
    return None


_SEGMENT = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9]*)(?:\[(?P<index>\d+|\*)\])?$")


def _ignore_changes(document: LoadedDocument, manifest: VirtualMachine) -> list[Diagnostic]:
    diagnostics = []
    spec_data = manifest.spec.model_dump(mode="python")
    for index, path in enumerate(manifest.spec.lifecycle.ignoreChanges):
        problem = ignore_path_problem(path, spec_data)
        if problem is not None:
            where = document.locate("spec", "lifecycle", "ignoreChanges", index)
            diagnostics.append(Diagnostic(where, document.subject, f"lifecycle.ignoreChanges: {problem}"))
    return diagnostics


def ignore_path_problem(path: str, spec_data: dict[str, Any]) -> str | None:
    """Why ``path`` (``memory``, ``disks[0].size``, ``nics[*].ip``, ``metadata.labels``) names nothing in a VM
    spec or its recorded metadata, or None."""
    if path == "metadata" or path.startswith("metadata."):
        # Labels and annotations are recorded with the spec; their keys are free text (dots included).
        head, _, _ = path.removeprefix("metadata.").partition(".")
        if path == "metadata" or head in ("labels", "annotations"):
            return None
        suggestion = closest_match(head, ["labels", "annotations"])
        hint = f", did you mean '{suggestion}'?" if suggestion else ""
        return f"'{path}': no field '{head}' in metadata (labels and annotations can be ignored){hint}"
    annotation: Any = VirtualMachineSpec
    value: Any = spec_data
    walked: list[str | int] = []
    for segment in path.split("."):
        match = _SEGMENT.match(segment)
        if match is None:
            return f"invalid path '{path}': expected field names and [N] indexes, such as disks[0].size"
        name = match["name"]
        model = model_in(annotation)
        if model is None:
            return f"'{path}': {format_path(walked) or 'the spec'} has no fields"
        fields = model_fields_at(model, ())
        if name not in fields:
            suggestion = closest_match(name, fields)
            hint = f", did you mean '{suggestion}'?" if suggestion else ""
            return f"'{path}': no field '{name}' in {format_path(walked) or 'the VM spec'}{hint}"
        walked.append(name)
        annotation = model.model_fields[name].annotation
        value = value.get(name) if isinstance(value, dict) else None
        index = match["index"]
        if index is None:
            continue
        element = item_type(annotation)
        if element is None:
            return f"'{path}': {format_path(walked)} is not a list"
        annotation = element
        if index == "*":
            value = None
            continue
        size = len(value) if isinstance(value, list) else 0
        if int(index) >= size:
            return f"'{path}': {format_path(walked)} has {size} item{'s' if size != 1 else ''}"
        value = value[int(index)]
        walked.append(int(index))
    return None
