"""The EC2 virtualization driver: a VM is an instance, found again by its ``nebctl:uuid`` tag.

Registered as ``ec2`` (nebctl/drivers/registry.py) for hosts whose URI is ``ec2://REGION``. Deploy launches an
instance of the VM's ``instance_type`` (placement's choice from the Host's capacity map), or of the smallest
known type that fits its vCPUs and memory, from its ``image`` (an AMI) or the ``drivers.ec2.ami`` default, with
its cloud-init user data and the network interfaces ``network.pre`` made; then it waits for ``running`` within
the action's deadline. A deploy interrupted at any point is finished by the next one: the tags are set in the
launch request itself, so the instance is found, never launched twice.

EC2 has no pause (hibernation stops the instance) and no migration between hosts: suspend, resume and migrate
raise ``CapabilityError`` and are not declared. A VM's status reports the vCPUs and memory its definition asked
for (kept in tags), the instance type being the cloud's rounding of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers import context
from nebctl.drivers.ec2.common import (
    LIVE,
    UUID_TAG,
    Clients,
    host_filters,
    instances,
    owner_of,
    ownership_tags,
    shared_clients,
    tag_map,
)
from nebctl.drivers.ec2.failures import DRIVER, edge
from nebctl.drivers.errors import CapabilityError, ConflictError, DriverTimeoutError, NotFoundError, PermanentError
from nebctl.drivers.registry import DriverContext
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition, VMStatus
from nebctl.schemas.instance_types import KNOWN, smallest_fitting

VCPU_TAG = "nebctl:vcpu"
MEMORY_TAG = "nebctl:memory"
MAC_TAG = "nebctl:mac"
VM_TAG = "nebctl:vm"

STATES: Mapping[str, VMLiveState] = {
    "pending": VMLiveState.TRANSITIONING,
    "running": VMLiveState.RUNNING,
    "stopping": VMLiveState.TRANSITIONING,
    "stopped": VMLiveState.STOPPED,
    "shutting-down": VMLiveState.TRANSITIONING,
}


def status_of(instance: Mapping[str, Any]) -> VMStatus:
    tags = tag_map(instance)
    state = STATES.get(instance.get("State", {}).get("Name", ""), VMLiveState.UNKNOWN)
    return VMStatus(
        uuid=tags.get(UUID_TAG, ""),
        name=tags.get("Name", instance.get("InstanceId", "")),
        state=state,
        vcpu=int(tags.get(VCPU_TAG, 0)),
        memory=int(tags.get(MEMORY_TAG, 0)),
        owner=owner_of(tags),
    )


class EC2Driver:
    """Base of the three EC2 drivers: the shared clients and options."""

    name: ClassVar[str] = "ec2"

    def __init__(self, clients: Clients, options: Mapping[str, Any]) -> None:
        self.clients = clients
        self.options = options
        self.poll_interval = float(options.get("poll_interval", 2.0))

    @classmethod
    def from_context(cls, ctx: DriverContext) -> EC2Driver:
        return cls(shared_clients(ctx.shared, ctx.options), ctx.options)

    def client(self, host: HostRef) -> Any:
        return self.clients.for_host(host)


class EC2Virtualization(EC2Driver):
    family: ClassVar[Family] = Family.VIRTUALIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset({"deploy", "shutdown", "cancel", "reboot", "undeploy", "poll"})

    # --- lookups ---------------------------------------------------------------------------------------------

    def _find(self, host: HostRef, uuid: str) -> dict[str, Any] | None:
        filters = [
            *host_filters(host, self.options),
            {"Name": f"tag:{UUID_TAG}", "Values": [uuid]},
            {"Name": "instance-state-name", "Values": list(LIVE)},
        ]
        found = sorted(instances(self.client(host), filters), key=lambda i: str(i.get("LaunchTime", "")))
        return found[0] if found else None

    def _get(self, host: HostRef, uuid: str) -> dict[str, Any]:
        instance = self._find(host, uuid)
        if instance is None:
            raise NotFoundError(f"no instance of VM {uuid} on host {host.name}", driver=DRIVER)
        return instance

    def _wait(
        self, host: HostRef, instance_id: str, wanted: Sequence[str], what: str, seconds: float | None = None
    ) -> dict[str, Any]:
        """Look at the instance until its state is one of ``wanted``; ``DriverTimeoutError`` past the deadline."""
        budget = context.current().remaining(float(self.options.get("timeout", 300.0)))
        if seconds is not None:
            budget = min(budget, seconds)
        deadline = time.monotonic() + budget
        client = self.client(host)
        while True:
            reply = client.describe_instances(InstanceIds=[instance_id])
            instance: dict[str, Any] = reply["Reservations"][0]["Instances"][0]
            state = instance["State"]["Name"]
            if state in wanted:
                return instance
            if state == "terminated" and "terminated" not in wanted:
                reason = instance.get("StateReason", {}).get("Message", "no reason given")
                raise PermanentError(f"instance {instance_id} terminated while {what}: {reason}", driver=DRIVER)
            if time.monotonic() >= deadline:
                raise DriverTimeoutError(
                    f"instance {instance_id} still {state} after {budget:g}s {what}", driver=DRIVER
                )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    # --- deploy ------------------------------------------------------------------------------------------

    def _instance_type(self, vm: VMDefinition) -> str:
        if vm.instance_type:
            return vm.instance_type
        kind = smallest_fitting(KNOWN.values(), vm.vcpu, vm.memory)
        if kind is None:
            raise PermanentError(
                f"VM {vm.name}: no known instance type has {vm.vcpu} vCPU and {vm.memory} bytes", driver=DRIVER
            )
        return kind.name

    def _interfaces(self, host: HostRef, vm: VMDefinition) -> list[dict[str, Any]]:
        """The interfaces ``network.pre`` made for the VM's NICs, in NIC order."""
        if not vm.nics:
            return []
        reply = self.client(host).describe_network_interfaces(
            Filters=[*host_filters(host, self.options), {"Name": f"tag:{VM_TAG}", "Values": [vm.uuid]}]
        )
        by_mac = {tag_map(eni).get(MAC_TAG): eni["NetworkInterfaceId"] for eni in reply["NetworkInterfaces"]}
        result = []
        for index, nic in enumerate(vm.nics):
            interface = by_mac.get(nic.mac)
            if interface is None:
                raise NotFoundError(
                    f"VM {vm.name}: no interface for NIC {nic.mac} on network {nic.network} (network.pre first)",
                    driver=DRIVER,
                )
            result.append({"DeviceIndex": index, "NetworkInterfaceId": interface})
        return result

    @edge
    def deploy(self, host: HostRef, vm: VMDefinition, *, start: bool = True) -> VMStatus:
        client = self.client(host)
        kind = self._instance_type(vm)
        instance = self._find(host, vm.uuid)
        size_tags = [{"Key": VCPU_TAG, "Value": str(vm.vcpu)}, {"Key": MEMORY_TAG, "Value": str(vm.memory)}]
        if instance is None:
            image = vm.image or self.options.get("ami")
            if not image:
                raise PermanentError(
                    f"VM {vm.name}: no AMI (the Image's cloud source, or drivers.ec2.ami in the config)", driver=DRIVER
                )
            tags = [
                *ownership_tags(host, vm.owner, self.options),
                {"Key": UUID_TAG, "Value": vm.uuid},
                {"Key": "Name", "Value": vm.name},
                *size_tags,
            ]
            request: dict[str, Any] = {
                "ImageId": image,
                "InstanceType": kind,
                "MinCount": 1,
                "MaxCount": 1,
                "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
            }
            interfaces = self._interfaces(host, vm)
            if interfaces:
                request["NetworkInterfaces"] = interfaces
            if vm.cloud_init is not None and vm.cloud_init.user_data:
                request["UserData"] = vm.cloud_init.user_data
            instance = client.run_instances(**request)["Instances"][0]
        instance_id = instance["InstanceId"]
        state = instance["State"]["Name"]
        if state in ("stopping", "shutting-down"):
            instance = self._wait(host, instance_id, ("stopped",), "stopping")
            state = "stopped"
        if state == "stopped":
            current = tag_map(instance)
            if instance.get("InstanceType") != kind:
                client.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": kind})
            if current.get(VCPU_TAG) != str(vm.vcpu) or current.get(MEMORY_TAG) != str(vm.memory):
                client.create_tags(Resources=[instance_id], Tags=size_tags)
            if start:
                client.start_instances(InstanceIds=[instance_id])
        if start:
            instance = self._wait(host, instance_id, ("running",), "starting")
        elif state in ("pending", "running"):
            # EC2 cannot define an instance without booting it: a VM deployed stopped is launched, then stopped.
            self._wait(host, instance_id, ("running",), "starting")
            client.stop_instances(InstanceIds=[instance_id])
            instance = self._wait(host, instance_id, ("stopped",), "stopping")
        return status_of(self._get(host, vm.uuid))

    # --- state changes ---------------------------------------------------------------------------------------

    @edge
    def shutdown(self, host: HostRef, uuid: str, *, timeout: float) -> None:
        instance = self._get(host, uuid)
        if instance["State"]["Name"] == "stopped":
            return
        client = self.client(host)
        client.stop_instances(InstanceIds=[instance["InstanceId"]])
        try:
            self._wait(host, instance["InstanceId"], ("stopped",), "shutting down", seconds=timeout)
        except DriverTimeoutError:
            client.stop_instances(InstanceIds=[instance["InstanceId"]], Force=True)
            self._wait(host, instance["InstanceId"], ("stopped",), "stopping (forced)")

    @edge
    def cancel(self, host: HostRef, uuid: str) -> None:
        instance = self._get(host, uuid)
        if instance["State"]["Name"] == "stopped":
            return
        self.client(host).stop_instances(InstanceIds=[instance["InstanceId"]], Force=True)
        self._wait(host, instance["InstanceId"], ("stopped",), "stopping (forced)")

    @edge
    def reboot(self, host: HostRef, uuid: str) -> None:
        instance = self._get(host, uuid)
        if instance["State"]["Name"] != "running":
            raise ConflictError(
                f"VM {uuid} is {instance['State']['Name']} on host {host.name}: only a running VM reboots",
                driver=DRIVER,
            )
        self.client(host).reboot_instances(InstanceIds=[instance["InstanceId"]])

    def _unsupported(self, host: HostRef, uuid: str, action: str) -> None:
        self._get(host, uuid)  # a missing VM is reported as such first, as by every driver
        raise CapabilityError(f"{action}: EC2 instances cannot be {action}ed in memory", driver=DRIVER)

    @edge
    def suspend(self, host: HostRef, uuid: str) -> None:
        self._unsupported(host, uuid, "suspend")

    @edge
    def resume(self, host: HostRef, uuid: str) -> None:
        self._unsupported(host, uuid, "resume")

    def migrate(self, source: HostRef, target: HostRef, vm: VMDefinition, *, live: bool = False) -> VMStatus:
        raise CapabilityError("migrate: an EC2 instance cannot move between hosts; replace the VM", driver=DRIVER)

    @edge
    def undeploy(self, host: HostRef, uuid: str) -> None:
        instance = self._get(host, uuid)
        self.client(host).terminate_instances(InstanceIds=[instance["InstanceId"]])
        self._wait(host, instance["InstanceId"], ("terminated",), "terminating")

    @edge
    def poll(self, host: HostRef, uuid: str) -> VMStatus:
        return status_of(self._get(host, uuid))


class EC2Storage(EC2Driver):
    """A cloud host keeps no datastores (a VM's root disk comes from its AMI): every storage action says so, so
    a plan that puts a datastore or a disk clone on a cloud host fails clearly instead of half-working."""

    family: ClassVar[Family] = Family.STORAGE
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def _refuse(self, action: str) -> CapabilityError:
        return CapabilityError(f"{action}: a cloud host has no datastores (disks come from the AMI)", driver=DRIVER)

    def create_datastore(self, host: HostRef, datastore: Any) -> Any:
        raise self._refuse("create_datastore")

    def delete_datastore(self, host: HostRef, name: str) -> None:
        raise self._refuse("delete_datastore")

    def import_image(self, host: HostRef, datastore: str, image: Any) -> Any:
        raise self._refuse("import_image")

    def clone(self, host: HostRef, datastore: str, volume: Any) -> Any:
        raise self._refuse("clone")

    def resize(self, host: HostRef, datastore: str, volume: str, size: int) -> Any:
        raise self._refuse("resize")

    def delete(self, host: HostRef, datastore: str, volume: str) -> None:
        raise self._refuse("delete")

    def snapshot(self, host: HostRef, datastore: str, volume: str, snapshot: str) -> Any:
        raise self._refuse("snapshot")

    def monitor(self, host: HostRef, datastore: str) -> Any:
        raise self._refuse("monitor")
