"""The hosts each multi-host resource spans, which a plan resolves before comparing anything (through each kind's
reconciler). What a kind resolves for its own resources (a VM's leases, MACs and disk datastores) is its
reconciler's ``resolve``, which the planner calls next.
"""

from __future__ import annotations

from collections.abc import Sequence

from nebctl.controller.planning.request import PlanRequest
from nebctl.core.keys import ResourceKey


def spans_of(request: PlanRequest, hosts: Sequence[str]) -> dict[ResourceKey, tuple[str, ...]]:
    spans = {}
    documents = request.documents
    for key, document in documents.items():
        span = request.reconcilers[key.kind].span(key, document, documents, hosts)
        if span is not None:
            spans[key] = span
    return spans
