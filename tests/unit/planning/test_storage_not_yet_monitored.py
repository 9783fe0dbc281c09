"""Placement on a host whose storage nebctl has not created yet.

A fresh libvirt host reports no storage at all (``disk_total`` 0) until the plan's own Datastore creates its
pool. That capacity is unknown, not zero: the first apply of manifests/examples-libvirt/ used to fail with
"fits on no host (needs 128Mi disk, 0 free)". A host that does report storage is still checked.
"""

from __future__ import annotations

import dataclasses

import pytest

from nebctl.controller.planning import PlanError, PlanRequest, make_plan
from nebctl.reconcilers.base import LiveView
from tests.unit.planning.world import BASE, GiB, change_of, documents, probe, vm


def _request(disk_total: int, disk_free: int) -> PlanRequest:
    hosts = {
        name: dataclasses.replace(probe(name), disk_total=disk_total, disk_free=disk_free) for name in ("h1", "h2")
    }
    return PlanRequest(stack="demo", documents=documents(BASE, vm()), records={}, live=LiveView(hosts=hosts))


def test_a_host_reporting_no_storage_yet_takes_vms_with_disks() -> None:
    plan = make_plan(_request(disk_total=0, disk_free=0))
    assert change_of(plan, "vm/web").host == "h1"


def test_a_host_reporting_too_little_storage_is_still_refused() -> None:
    with pytest.raises(PlanError, match=r"^vm/web: fits on no host: h1 has 1Gi free disk, 10Gi needed$"):
        make_plan(_request(disk_total=100 * GiB, disk_free=1 * GiB))
