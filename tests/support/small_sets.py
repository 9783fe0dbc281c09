"""Small manifest sets as text, for the tests of loading and caching manifests: a host and a network (``INFRA``),
and a VM on them (``vm``)."""

from __future__ import annotations

from typing import Any

INFRA = """\
apiVersion: nebctl/v1
kind: Host
metadata: {name: h1}
spec: {uri: "sim://h1?cpus=8&memory=16Gi&disk=1Ti"}
---
apiVersion: nebctl/v1
kind: Network
metadata: {name: net}
spec: {mode: nat, cidr: 10.0.0.0/24}
"""


def vm(
    name: str,
    vcpu: Any = 1,
    network: str = "net",
    *,
    ip: str | None = None,
    depends_on: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
) -> str:
    """A VM on ``h1`` with one NIC on ``network`` (at ``ip``, when given), ordered after ``depends_on`` and
    ignoring changes to the paths of ``ignore``."""
    nic = f"{{network: {network}, ip: {ip}}}" if ip is not None else f"{{network: {network}}}"
    text = (
        f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vcpu: {vcpu}\n  memory: 1Gi\n  nics: [{nic}]\n  placement: {{host: h1}}\n"
    )
    if depends_on:
        text += f"  dependsOn: [{', '.join(depends_on)}]\n"
    if ignore:
        text += f"  lifecycle: {{ignoreChanges: [{', '.join(ignore)}]}}\n"
    return text
