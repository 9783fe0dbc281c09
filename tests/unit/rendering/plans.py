"""Small plans built by hand from plan values, for exact assertions on one renderer feature at a time."""

from __future__ import annotations

from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldChange
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, DriftItem, Plan, ResourceChange

GiB = 1024**3


def key(kind: Kind, name: str, namespace: str = "default") -> ResourceKey:
    return ResourceKey.of(kind, name, namespace)


def field(
    path: str, before: Any, after: Any, effect: Effect = Effect.IN_PLACE, *, sensitive: bool = False
) -> FieldChange:
    return FieldChange(path=path, before=before, after=after, effect=effect, sensitive=sensitive)


def spec_example() -> Plan:
    """A small plan (a network, three VMs created, updated or replaced) as the CLI shows them, without host
    placements."""
    lan, web1, db1, web2 = (
        key(Kind.NETWORK, "lan"),
        key(Kind.VIRTUAL_MACHINE, "web-1"),
        key(Kind.VIRTUAL_MACHINE, "db-1"),
        key(Kind.VIRTUAL_MACHINE, "web-2"),
    )
    changes = (
        ResourceChange(
            lan,
            ChangeType.CREATE,
            (field("cidr", None, "10.10.0.0/24", Effect.NONE), field("mode", None, "nat", Effect.NONE)),
        ),
        ResourceChange(
            web1,
            ChangeType.UPDATE,
            (field("memory", GiB, 2 * GiB, Effect.RESTART),),
            restart=True,
            unchanged=6,
        ),
        ResourceChange(db1, ChangeType.REPLACE, (field("disks[0].image", "debian-11", "debian-12", Effect.REPLACE),)),
        ResourceChange(web2, ChangeType.NOOP, drift=(DriftItem(web2, "was stopped", "it will be started"),)),
    )
    actions = (
        Action("network/lan:create:kvm-a1", lan, Family.NETWORK, "create", "kvm-a1"),
        Action("vm/web-1:shutdown", web1, Family.VIRTUALIZATION, "shutdown", "kvm-a1"),
        Action("vm/web-1:start", web1, Family.VIRTUALIZATION, "start", "kvm-a1", {"memory": 2 * GiB}),
    )
    edges = (("vm/web-1:shutdown", "vm/web-1:start"), ("network/lan:create:kvm-a1", "vm/web-1:start"))
    return Plan("demo", changes, actions, edges, "0" * 64)


SPEC_TEXT = """\
nebctl will perform the following actions:

  # network/lan will be created
  + network "lan" {
      + cidr = "10.10.0.0/24"
      + mode = "nat"
    }

  # vm/web-1 will be updated in-place (restart required)
  ~ vm "web-1" {
      ~ memory = "1Gi" -> "2Gi"
        # (6 unchanged attributes hidden)
    }

  # vm/db-1 must be replaced
-/+ vm "db-1" {
      ~ disks[0].image = "debian-11" -> "debian-12" # forces replacement
    }

Changed outside nebctl:
  # vm/web-2 was stopped; it will be started

Plan: 2 to add, 1 to change, 1 to destroy.
"""


def many_vms(count: int, *, fields_per_vm: int = 20) -> Plan:
    """``count`` VM creates with ``fields_per_vm`` fields each and two actions each: a big plan, quickly."""
    changes, actions, edges = [], [], []
    for index in range(count):
        vm = key(Kind.VIRTUAL_MACHINE, f"vm-{index}")
        host = f"kvm-{index % 1000}"
        fields = [field("memory", None, 2 * GiB, Effect.NONE), field("host", None, host, Effect.NONE)]
        fields += [field(f"labels.l{n}", None, f"value-{n}", Effect.NONE) for n in range(fields_per_vm - 2)]
        changes.append(ResourceChange(vm, ChangeType.CREATE, tuple(fields), host=host))
        clone = Action(f"{vm}:disk0:clone", vm, Family.STORAGE, "clone", host, {"size": 20 * GiB})
        deploy = Action(f"{vm}:deploy", vm, Family.VIRTUALIZATION, "deploy", host, {"start": True})
        actions += [clone, deploy]
        edges.append((clone.id, deploy.id))
    return Plan("big", tuple(changes), tuple(actions), tuple(edges), "f" * 64)
