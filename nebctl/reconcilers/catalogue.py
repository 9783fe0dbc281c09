"""The reconciler of each kind, for the planner and the executor to look up."""

from __future__ import annotations

from nebctl.core.keys import Kind
from nebctl.reconcilers import datastore, image, network, registered, securitygroup, vm
from nebctl.reconcilers.base import Reconciler

RECONCILERS: dict[Kind, Reconciler] = {
    Kind.HOST: registered.HOST,
    Kind.DATASTORE: datastore.RECONCILER,
    Kind.MARKETPLACE: registered.MARKETPLACE,
    Kind.IMAGE: image.RECONCILER,
    Kind.NETWORK: network.RECONCILER,
    Kind.SECURITY_GROUP: securitygroup.RECONCILER,
    Kind.VIRTUAL_MACHINE: vm.RECONCILER,
    Kind.HOOK: registered.HOOK,
}
