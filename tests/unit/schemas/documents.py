"""Builders of manifest documents for the schema tests: minimal valid documents of every kind, as plain data.

Documents are written out as JSON, which is YAML too, so that a test states the data and not its layout.
"""

from __future__ import annotations

import copy
import json
from typing import Any

BASES: dict[str, dict[str, Any]] = {
    "Host": {"spec": {"uri": "sim://kvm-1"}},
    "Datastore": {"spec": {"path": "/srv/ds"}},
    "Marketplace": {"spec": {"path": "/srv/index.json"}},
    "Image": {"spec": {"source": "/srv/debian.qcow2", "datastore": "local"}},
    "Network": {"spec": {"mode": "nat", "cidr": "10.10.0.0/24"}},
    "SecurityGroup": {"spec": {"rules": [{"direction": "in", "protocol": "tcp", "ports": [22]}]}},
    "VirtualMachine": {"spec": {"memory": "1Gi"}},
    "Hook": {"spec": {"on": ["vm.failed"], "command": ["/usr/bin/true"]}},
}


def document(kind: str, name: str = "x", *, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A valid document of ``kind`` (the base spec updated with ``spec``)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    body = copy.deepcopy(BASES[kind]["spec"])
    body.update(spec)
    return {"apiVersion": "nebctl/v1", "kind": kind, "metadata": metadata, "spec": body}


def with_value(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``path`` set to ``value`` (list indexes as numbers: spec.disks.0.size)."""
    result = copy.deepcopy(doc)
    parts = path.split(".")
    node: Any = result
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def as_yaml(*documents: dict[str, Any]) -> str:
    # Not ASCII-escaped: YAML reads a JSON surrogate pair (\\ud800\\udc00) as two lone surrogates.
    return "\n---\n".join(json.dumps(doc, ensure_ascii=False) for doc in documents) + "\n"


def fleet() -> list[dict[str, Any]]:
    """The infrastructure most VM tests need: a host, a datastore, an image, a network, a security group."""
    return [
        document("Host", "kvm-1"),
        document("Datastore", "local"),
        document("Image", "debian-12"),
        document("Network", "lan", range={"first": "10.10.0.10", "last": "10.10.0.100"}),
        document("SecurityGroup", "ssh"),
    ]
