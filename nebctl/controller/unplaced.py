"""Why VMs fit on no host, said briefly: the scheduler's reason per host, grouped by what is wrong.

``placement.place`` gives a VM that fits nowhere one reason per host. On a fleet of hundreds of hosts, one line
listing every host hides the reasons it holds; so the planner reports these through ``brief``, which groups the
hosts by reason, with counts and a few example hosts::

    vm/app-7: fits on no host: 48 hosts have no free vCPU (node-0001, node-0002, …); 2 hosts fail requirements
    labels.zone == 'b' (node-0049, node-0050); node-0051 has 2Gi free memory, 4Gi needed

and says once for all the VMs that fail for the same reasons (``3 VMs fit on no host (vm/a, vm/b, vm/c): ...``).
``every_host`` is the long form (``nebctl diff -v``): one line per host. Pure functions of the scheduler's
reasons; the texts they read are the scheduler's own (``placement._Host.shortage``, ``_Rule``'s rejections).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nebctl.core.quantities import QuantityError, parse_quantity

EXAMPLES = 2  # hosts named in a group of many
LISTED_VMS = 20  # VMs named in a line shared by many; every_host names them all

_SHORTAGE = re.compile(r"needs (?P<need>\S+) (?P<what>vCPU|memory|disk), (?P<free>-?\S+) free")
_REQUIREMENTS_NOT_MET = "requirements not met: "


@dataclass(frozen=True)
class Unplaced:
    """A VM that fits on no host: its address, the reason per host, and a note on what it was placed beside."""

    vm: str
    reasons: Mapping[str, str]
    beside: str = ""  # such as " beside the VM it replaces (...)", appended to "fits on no host"


@dataclass(frozen=True)
class HostGroup:
    """Hosts that refuse a VM for one reason: ``singular``/``plural`` are the verb phrase after the subject."""

    singular: str
    plural: str
    hosts: tuple[str, ...]

    def text(self) -> str:
        if len(self.hosts) == 1:
            return f"{self.hosts[0]} {self.singular}"
        examples = ", ".join(self.hosts[:EXAMPLES]) + (", …" if len(self.hosts) > EXAMPLES else "")
        return f"{len(self.hosts)} hosts {self.plural} ({examples})"


def group_reasons(reasons: Mapping[str, str]) -> list[HostGroup]:
    """The hosts grouped by reason: the largest group first, then by text; hosts in name order."""
    members: dict[tuple[str, ...], list[str]] = {}
    shortages: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
    for host in sorted(reasons):
        reason = reasons[host]
        parts = _SHORTAGE.findall(reason)
        if parts and "; ".join(f"needs {n} {w}, {f} free" for n, w, f in parts) == reason:
            # A host with none of a resource left and one with too little are told apart: a full fleet and a
            # fragmented one call for different remedies.
            key: tuple[str, ...] = ("short", *(f"{what}:{_amount(free) > 0}" for _need, what, free in parts))
            shortages.setdefault(key, []).extend((what, need, free) for need, what, free in parts)
        else:
            key = ("other", reason)
        members.setdefault(key, []).append(host)
    groups = []
    for key, hosts in members.items():
        if key[0] == "short":
            what = [part.split(":")[0] for part in key[1:]]
            singular, plural = _shortage_phrases(what, shortages[key], single=len(hosts) == 1)
        else:
            singular, plural = _phrases(key[1])
        groups.append(HostGroup(singular, plural, tuple(hosts)))
    groups.sort(key=lambda group: (-len(group.hosts), group.plural, group.hosts))
    return groups


def _phrases(reason: str) -> tuple[str, str]:
    if reason == "disabled":
        return "is disabled", "are disabled"
    if reason == "offline":
        return "is offline", "are offline"
    if reason == "no such host":
        return "is not a declared host", "are not declared hosts"
    if reason == "fits now":  # its rules read capacity, and this plan's other VMs changed it
        return "fits now, after this plan placed other VMs", "fit now, after this plan placed other VMs"
    if reason.startswith(_REQUIREMENTS_NOT_MET):
        expression = reason.removeprefix(_REQUIREMENTS_NOT_MET)
        return f"fails requirements {expression}", f"fail requirements {expression}"
    return f"refuses it: {reason}", f"refuse it: {reason}"


def _shortage_phrases(what: Sequence[str], figures: Sequence[tuple[str, str, str]], *, single: bool) -> tuple[str, str]:
    """``has no free vCPU``; ``has 2Gi free memory, 4Gi needed``; for a group, the most any of its hosts has."""
    pieces = []
    for resource in what:
        frees = [free for name, _need, free in figures if name == resource]
        need = next(need for name, need, _free in figures if name == resource)
        most = max(frees, key=_amount)
        if _amount(most) <= 0:
            pieces.append(f"no free {resource}")
        else:
            pieces.append(f"{'' if single else 'at most '}{most} free {resource}, {need} needed")
    text = " and ".join(pieces)
    return f"has {text}", f"have {text}"


def _amount(text: str) -> float:
    """A free figure of the scheduler's text as a number: vCPUs (``2``, ``0.5``) or bytes (``2Gi``, ``-1Gi``)."""
    sign = -1.0 if text.startswith("-") else 1.0
    digits = text.lstrip("-")
    try:
        return sign * float(digits)
    except ValueError:
        pass
    try:
        return sign * float(parse_quantity(digits))
    except QuantityError:
        return 0.0


def _line(vms: Sequence[Unplaced], groups: str) -> str:
    beside = vms[0].beside
    if len(vms) == 1:
        return f"{vms[0].vm}: fits on no host{beside}: {groups}"
    names = [vm.vm for vm in vms]
    shown = ", ".join(names[:LISTED_VMS])
    if len(names) > LISTED_VMS:
        shown += f" and {len(names) - LISTED_VMS} more (-v lists them all)"
    return f"{len(vms)} VMs fit on no host{beside} ({shown}): {groups}"


def brief(unplaced: Sequence[Unplaced]) -> list[str]:
    """One line per set of reasons: VMs refused for the same reasons by the same hosts share a line."""
    by_text: dict[tuple[str, str], list[Unplaced]] = {}
    for vm in unplaced:
        groups = "; ".join(group.text() for group in group_reasons(vm.reasons)) or "no hosts are declared"
        by_text.setdefault((vm.beside, groups), []).append(vm)
    return [_line(vms, groups) for (_beside, groups), vms in by_text.items()]


def every_host(unplaced: Sequence[Unplaced]) -> list[str]:
    """The long form: for each VM, every host and its reason, one per line."""
    lines = []
    for vm in unplaced:
        lines.append(f"{vm.vm}: fits on no host{vm.beside}:")
        lines += [f"  {host}: {vm.reasons[host]}" for host in sorted(vm.reasons)] or ["  (no hosts are declared)"]
    return lines
