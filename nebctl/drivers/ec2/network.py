"""The EC2 network driver: a host's networks are subnets of one VPC, a NIC is a network interface.

Each cloud host has a VPC of its own (tagged ``nebctl:host``), created with the first network; a network whose
CIDR lies outside the VPC's blocks adds its CIDR as one more block. A Network becomes a subnet of that CIDR,
tagged with the network's name and address range. ``pre`` creates the NIC's network interface with its address
(the static one, else the lowest free one of the range) and the NIC's security groups, tagged with the NIC's
MAC and the VM's UUID, so the virtualization driver launches the instance on it; ``clean`` deletes it. A
SecurityGroup becomes an EC2 security group of the VPC whose rules are replaced as a whole by ``update_sg``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers.ec2.common import HOST_TAG, host_filters, ownership_tags, tag_map
from nebctl.drivers.ec2.failures import DRIVER, edge
from nebctl.drivers.ec2.virtualization import MAC_TAG, VM_TAG, EC2Driver
from nebctl.drivers.errors import ConflictError, NotFoundError, PermanentError
from nebctl.drivers.types import (
    HostRef,
    NetworkDefinition,
    NetworkStatus,
    NicDefinition,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
)

NETWORK_TAG = "nebctl:network"
RANGE_TAG = "nebctl:range"
GROUP_TAG = "nebctl:security-group"
VPC_TAG = "nebctl:vpc"
DEFAULT_VPC_CIDR = "10.0.0.0/16"
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "any": "-1"}


def permission(rule: SecurityRuleDefinition) -> list[dict[str, Any]]:
    """The EC2 IP permissions of one rule: one per port or port range ('22', '8000-8080')."""
    protocol = PROTOCOLS.get(rule.protocol)
    if protocol is None:
        raise PermanentError(f"security rule protocol {rule.protocol!r}: expected tcp, udp, icmp or any", driver=DRIVER)
    ranges = [{"CidrIp": rule.cidr}]
    if protocol in ("-1", "icmp") or not rule.ports:
        low, high = (-1, -1) if protocol in ("-1", "icmp") else (0, 65535)
        return [{"IpProtocol": protocol, "FromPort": low, "ToPort": high, "IpRanges": ranges}]
    result = []
    for ports in rule.ports:
        first, _, last = ports.partition("-")
        result.append(
            {"IpProtocol": protocol, "FromPort": int(first), "ToPort": int(last or first), "IpRanges": ranges}
        )
    return result


_VPC_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_VPC_LOCKS_GUARD = threading.Lock()


def _vpc_lock(host: HostRef) -> threading.Lock:
    """The lock of one cloud host's VPC (by its URI and name), shared by every driver object in this process."""
    with _VPC_LOCKS_GUARD:
        return _VPC_LOCKS.setdefault((host.uri, host.name), threading.Lock())


class EC2Network(EC2Driver):
    family: ClassVar[Family] = Family.NETWORK
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"create", "delete", "pre", "post", "clean", "update_sg", "delete_sg", "security-groups", "monitor"}
    )

    # --- lookups -----------------------------------------------------------------------------------------

    def _vpc(self, host: HostRef, *, create: bool) -> dict[str, Any] | None:
        # The host's VPC is made by the first network or security group that needs it; both can be created at
        # once (parallel actions), so the look-and-create is serialised, or each would make its own VPC.
        with _vpc_lock(host):
            return self._vpc_unlocked(host, create=create)

    def _vpc_unlocked(self, host: HostRef, *, create: bool) -> dict[str, Any] | None:
        client = self.client(host)
        found = client.describe_vpcs(
            Filters=[*host_filters(host, self.options), {"Name": f"tag:{VPC_TAG}", "Values": ["host"]}]
        )["Vpcs"]
        if found or not create:
            # Oldest-made first would be best; the smallest id is at least the same choice for every caller.
            return min(found, key=lambda vpc: str(vpc["VpcId"])) if found else None
        cidr = str(self.options.get("vpc_cidr", DEFAULT_VPC_CIDR))
        tags = [*ownership_tags(host, None, self.options), {"Key": VPC_TAG, "Value": "host"}]
        vpc: dict[str, Any] = client.create_vpc(
            CidrBlock=cidr, TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}]
        )["Vpc"]
        return vpc

    def _subnets(self, host: HostRef, name: str | None = None) -> list[dict[str, Any]]:
        filters = [*host_filters(host, self.options), {"Name": "tag-key", "Values": [NETWORK_TAG]}]
        if name is not None:
            filters.append({"Name": f"tag:{NETWORK_TAG}", "Values": [name]})
        found = self.client(host).describe_subnets(Filters=filters)["Subnets"]
        return [s for s in found if tag_map(s).get(HOST_TAG) == host.name and NETWORK_TAG in tag_map(s)]

    def _subnet(self, host: HostRef, name: str) -> dict[str, Any]:
        found = self._subnets(host, name)
        if not found:
            raise NotFoundError(f"no network {name!r} on host {host.name}", driver=DRIVER)
        return found[0]

    def _interfaces(self, host: HostRef, subnet_id: str | None = None) -> list[dict[str, Any]]:
        filters = [*host_filters(host, self.options), {"Name": "tag-key", "Values": [MAC_TAG]}]
        if subnet_id is not None:
            filters.append({"Name": "subnet-id", "Values": [subnet_id]})
        found = self.client(host).describe_network_interfaces(Filters=filters)["NetworkInterfaces"]
        # Checked here too: an EC2-compatible endpoint may ignore a filter it does not know (moto's tag-key).
        return [eni for eni in found if tag_map(eni).get(HOST_TAG) == host.name and MAC_TAG in tag_map(eni)]

    def _group(self, host: HostRef, name: str) -> dict[str, Any] | None:
        found = self.client(host).describe_security_groups(
            Filters=[*host_filters(host, self.options), {"Name": f"tag:{GROUP_TAG}", "Values": [name]}]
        )["SecurityGroups"]
        return found[0] if found else None

    def _status(self, subnet: Mapping[str, Any], interfaces: list[dict[str, Any]]) -> NetworkStatus:
        tags = tag_map(subnet)
        leases = {
            tag_map(eni)[MAC_TAG]: eni["PrivateIpAddress"]
            for eni in interfaces
            if eni["SubnetId"] == subnet["SubnetId"]
        }
        return NetworkStatus(name=tags[NETWORK_TAG], active=True, bridge=subnet["SubnetId"], leases=leases)

    # --- networks ------------------------------------------------------------------------------------------

    @edge
    def create(self, host: HostRef, network: NetworkDefinition) -> NetworkStatus:
        existing = self._subnets(host, network.name)
        if existing:
            return self._status(existing[0], self._interfaces(host, existing[0]["SubnetId"]))
        client = self.client(host)
        vpc = self._vpc(host, create=True)
        assert vpc is not None
        wanted = ipaddress.ip_network(network.cidr)
        blocks = [ipaddress.ip_network(b["CidrBlock"]) for b in vpc.get("CidrBlockAssociationSet", [])] or [
            ipaddress.ip_network(vpc["CidrBlock"])
        ]
        if not any(wanted.version == b.version and wanted.subnet_of(b) for b in blocks):  # type: ignore[arg-type]
            client.associate_vpc_cidr_block(VpcId=vpc["VpcId"], CidrBlock=network.cidr)
        tags = [
            *ownership_tags(host, network.owner, self.options),
            {"Key": NETWORK_TAG, "Value": network.name},
            {"Key": RANGE_TAG, "Value": f"{network.range_first}-{network.range_last}"},
        ]
        subnet = client.create_subnet(
            VpcId=vpc["VpcId"], CidrBlock=network.cidr, TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}]
        )["Subnet"]
        return self._status(subnet, [])

    @edge
    def delete(self, host: HostRef, name: str) -> None:
        subnet = self._subnet(host, name)
        if self._interfaces(host, subnet["SubnetId"]):
            raise ConflictError(f"network {name!r} on host {host.name} still has NICs", driver=DRIVER)
        self.client(host).delete_subnet(SubnetId=subnet["SubnetId"])
        self._drop_empty_vpc(host)

    def _drop_empty_vpc(self, host: HostRef) -> None:
        """Delete the host's VPC once nebctl's last network and security group in it are gone: nebctl made it
        for them, and a destroy leaves nothing of nebctl's behind. The next network or group makes it again."""
        client = self.client(host)
        with _vpc_lock(host):
            vpc = self._vpc_unlocked(host, create=False)
            if vpc is None:
                return
            inside = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
            if client.describe_subnets(Filters=inside)["Subnets"]:
                return
            groups = client.describe_security_groups(Filters=inside)["SecurityGroups"]
            if any(group.get("GroupName") != "default" for group in groups):
                return
            client.delete_vpc(VpcId=vpc["VpcId"])

    @edge
    def monitor(self, host: HostRef) -> Mapping[str, NetworkStatus]:
        interfaces = self._interfaces(host)
        return {tag_map(s)[NETWORK_TAG]: self._status(s, interfaces) for s in self._subnets(host)}

    # --- NICs ----------------------------------------------------------------------------------------------

    @edge
    def pre(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        subnet = self._subnet(host, nic.network)
        interfaces = self._interfaces(host, subnet["SubnetId"])
        taken = {eni["PrivateIpAddress"]: tag_map(eni)[MAC_TAG] for eni in interfaces}
        if nic.mac in taken.values():
            return  # made by an earlier pre
        if nic.ip is not None:
            if nic.ip in taken:
                raise ConflictError(
                    f"address {nic.ip} of network {nic.network!r} is leased to {taken[nic.ip]}", driver=DRIVER
                )
            address = nic.ip
        else:
            first, _, last = tag_map(subnet).get(RANGE_TAG, "-").partition("-")
            if not first or not last:
                raise PermanentError(f"network {nic.network!r} has no address range tag", driver=DRIVER)
            low, high = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
            used = {int(ipaddress.IPv4Address(ip)) for ip in taken}
            free = next((n for n in range(low, high + 1) if n not in used), None)
            if free is None:
                raise ConflictError(f"network {nic.network!r} has no free address left", driver=DRIVER)
            address = str(ipaddress.IPv4Address(free))
        groups = []
        for group_name in nic.security_groups:
            group = self._group(host, group_name)
            if group is None:
                raise NotFoundError(f"no security group {group_name!r} on host {host.name}", driver=DRIVER)
            groups.append(group["GroupId"])
        tags = [
            *ownership_tags(host, None, self.options),
            {"Key": MAC_TAG, "Value": nic.mac},
            {"Key": VM_TAG, "Value": vm_uuid},
        ]
        request: dict[str, Any] = {
            "SubnetId": subnet["SubnetId"],
            "PrivateIpAddress": address,
            "TagSpecifications": [{"ResourceType": "network-interface", "Tags": tags}],
        }
        if groups:
            request["Groups"] = groups
        self.client(host).create_network_interface(**request)

    @edge
    def post(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        self._subnet(host, nic.network)  # the interface was attached at launch: nothing is left to do

    @edge
    def clean(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        subnet = self._subnet(host, nic.network)
        client = self.client(host)
        for eni in self._interfaces(host, subnet["SubnetId"]):
            if tag_map(eni).get(MAC_TAG) != nic.mac:
                continue
            attachment = eni.get("Attachment")
            if attachment and attachment.get("AttachmentId") and attachment.get("DeviceIndex", 0) != 0:
                client.detach_network_interface(AttachmentId=attachment["AttachmentId"], Force=True)
            client.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])

    # --- security groups ---------------------------------------------------------------------------------

    @edge
    def update_sg(self, host: HostRef, group: SecurityGroupDefinition) -> None:
        client = self.client(host)
        existing = self._group(host, group.name)
        if existing is None:
            vpc = self._vpc(host, create=True)
            assert vpc is not None
            tags = [*ownership_tags(host, group.owner, self.options), {"Key": GROUP_TAG, "Value": group.name}]
            group_id = client.create_security_group(
                GroupName=f"{host.name}-{group.name}",
                Description=f"nebctl security group {group.name}",
                VpcId=vpc["VpcId"],
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )["GroupId"]
            existing = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        group_id = existing["GroupId"]
        # Replaced as a whole: the old permissions go, the new ones come. With no outbound rule, outbound
        # traffic stays open, as EC2 leaves a new group.
        ingress = [p for rule in group.rules if rule.direction == "in" for p in permission(rule)]
        egress = [p for rule in group.rules if rule.direction == "out" for p in permission(rule)]
        if not egress:
            egress = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        old_in, old_out = existing.get("IpPermissions", []), existing.get("IpPermissionsEgress", [])
        if old_in != ingress:
            if old_in:
                client.revoke_security_group_ingress(GroupId=group_id, IpPermissions=_plain(old_in))
            if ingress:
                client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
        if _plain(old_out) != _plain(egress):
            if old_out:
                client.revoke_security_group_egress(GroupId=group_id, IpPermissions=_plain(old_out))
            client.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)

    @edge
    def delete_sg(self, host: HostRef, name: str) -> None:
        existing = self._group(host, name)
        if existing is None:
            raise NotFoundError(f"no security group {name!r} on host {host.name}", driver=DRIVER)
        self.client(host).delete_security_group(GroupId=existing["GroupId"])
        self._drop_empty_vpc(host)


def _plain(permissions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Permissions as a request takes them (describe adds empty lists of what a rule does not use)."""
    keep = ("IpProtocol", "FromPort", "ToPort", "IpRanges")
    result = []
    for p in permissions:
        item = {k: p[k] for k in keep if k in p}
        if "IpRanges" in item:
            item["IpRanges"] = [{"CidrIp": r["CidrIp"]} for r in item["IpRanges"]]
        result.append(item)
    return result
