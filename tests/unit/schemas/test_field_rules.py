"""Decision tables for the rules of every manifest field: each row is a value and whether (and why) it fails."""

from __future__ import annotations

from typing import Any

import pytest

from nebctl.schemas.loading import ManifestError, ManifestSet, load_text
from tests.unit.schemas.documents import as_yaml, document, fleet, with_value

VALID = None


def messages_for(doc: dict[str, Any], *, with_fleet: bool = False) -> list[str]:
    docs = [*fleet(), doc] if with_fleet else [doc]
    try:
        load_text(as_yaml(*docs), "t.yaml")
    except ManifestError as error:
        return [d.message for d in error.diagnostics]
    return []


def check(doc: dict[str, Any], expected: str | None, *, with_fleet: bool = False) -> None:
    found = messages_for(doc, with_fleet=with_fleet)
    if expected is None:
        assert found == []
    else:
        assert any(expected in message for message in found), found


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", VALID),
        ("web-1", VALID),
        ("0x", VALID),
        ("a" * 63, VALID),
        ("a" * 64, "at most 63 characters"),
        ("Web", "invalid name 'Web'"),
        ("-a", "invalid name '-a'"),
        ("a-", "invalid name 'a-'"),
        ("a_b", "invalid name 'a_b'"),
        ("a.b", "invalid name 'a.b'"),
        ("", "invalid name ''"),
        (12, "metadata.name: expected a string, got 12"),
    ],
)
def test_metadata_name(name: Any, expected: str | None) -> None:
    check(with_value(document("Datastore"), "metadata.name", name), expected)


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [("team-a", VALID), ("default", VALID), ("Team", "invalid name 'Team'"), ("a" * 64, "at most 63")],
)
def test_metadata_namespace(namespace: str, expected: str | None) -> None:
    check(with_value(document("Hook"), "metadata.namespace", namespace), expected)


@pytest.mark.parametrize(
    ("kind", "namespace", "expected"),
    [
        ("Host", "default", VALID),
        ("Host", "team-a", "Host is cluster-scoped"),
        ("Datastore", "team-a", "Datastore is cluster-scoped"),
        ("Marketplace", "x", "Marketplace is cluster-scoped"),
        ("Hook", "team-a", VALID),
    ],
)
def test_cluster_scoped_kinds_have_no_namespace(kind: str, namespace: str, expected: str | None) -> None:
    check(document(kind, namespace=namespace), expected)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web"}, VALID),
        ({"app.example.org/tier": "a_b"}, VALID),
        ({"bad key": "x"}, "invalid key 'bad key'"),
        ({"-x": "y"}, "invalid key '-x'"),
        ({"version": 2}, "expected a string, got 2 (quote it"),
        ({"a": "x" * 254}, "at most 253 characters"),
        (["app"], "expected a mapping"),
    ],
)
def test_labels(labels: Any, expected: str | None) -> None:
    check(with_value(document("Hook"), "metadata.labels", labels), expected)


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("2Gi", VALID),
        ("512Mi", VALID),
        ("10G", VALID),
        ("1.5Gi", VALID),
        (1073741824, VALID),
        ("16Mi", VALID),
        ("15Mi", "memory must be at least 16Mi"),
        ("2GB", "invalid quantity '2GB'"),
        ("-1Gi", "invalid quantity '-1Gi'"),
        ("lots", "invalid quantity 'lots'"),
        ("1.0000001Ki", "not a whole number of bytes"),
        ("2Ei", "invalid quantity '2Ei'"),
        ("2000000Pi", "larger than 1Ei"),
        (True, "got a boolean"),
        (None, "got NoneType"),
    ],
)
def test_vm_memory_quantity(memory: Any, expected: str | None) -> None:
    check(with_value(document("VirtualMachine"), "spec.memory", memory), expected)


@pytest.mark.parametrize(
    ("vcpu", "expected"),
    [
        (1, VALID),
        (512, VALID),
        (0, "must be >= 1, got 0"),
        (513, "must be <= 512, got 513"),
        ("two", "expected an integer, got 'two'"),
        (1.5, "expected a whole number, got 1.5"),
    ],
)
def test_vm_vcpu(vcpu: Any, expected: str | None) -> None:
    check(with_value(document("VirtualMachine"), "spec.vcpu", vcpu), expected)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("running", VALID),
        ("stopped", VALID),
        ("suspended", VALID),
        ("runing", "did you mean 'running'?"),
        ("paused", "expected 'running', 'stopped' or 'suspended'"),
    ],
)
def test_vm_state(state: str, expected: str | None) -> None:
    check(with_value(document("VirtualMachine"), "spec.state", state), expected)


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        ({"image": "debian-12"}, VALID),
        ({"image": "debian-12", "size": "20Gi", "clone": "full"}, VALID),
        ({"size": "5Gi"}, VALID),
        ({"size": "5Gi", "datastore": "local"}, VALID),
        ({}, "a blank disk (no 'image') needs a 'size'"),
        ({"size": "512Ki"}, "a disk must be at least 1Mi"),
        ({"image": "debian-12", "clone": "copy"}, "expected 'overlay' or 'full'"),
        ({"image": "Debian"}, "invalid name 'Debian'"),
        ({"image": "debian-12", "sise": "1Gi"}, "unknown field 'sise', did you mean 'size'?"),
    ],
)
def test_vm_disks(disk: dict[str, Any], expected: str | None) -> None:
    check(document("VirtualMachine", disks=[disk]), expected, with_fleet=True)


@pytest.mark.parametrize(
    ("nic", "expected"),
    [
        ({"network": "lan"}, VALID),
        ({"network": "lan", "ip": "10.10.0.50", "securityGroups": ["ssh"]}, VALID),
        ({"network": "lan", "ip": "10.10.0.300"}, "expected an IPv4 address, got '10.10.0.300'"),
        ({"network": "lan", "ip": "fe80::1"}, "expected an IPv4 address"),
        ({"ip": "10.10.0.50"}, "missing required field 'network'"),
        ({"network": "lan", "securityGroups": "ssh"}, "expected a list"),
    ],
)
def test_vm_nics(nic: dict[str, Any], expected: str | None) -> None:
    check(document("VirtualMachine", nics=[nic]), expected, with_fleet=True)


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ({}, VALID),
        ({"host": "kvm-1"}, VALID),
        ({"requirements": "free_memory >= 4Gi and labels.zone == 'a'", "policy": "striping"}, VALID),
        ({"requirements": "cpu > 2", "rank": "free_cpu"}, VALID),
        ({"host": "kvm-1", "policy": "packing"}, "set either 'host' or 'requirements'/'rank'/'policy'"),
        ({"host": "kvm-1", "requirements": "cpu > 1"}, "set either 'host'"),
        ({"rank": "free_cpu", "policy": "load"}, "set either 'rank' or 'policy'"),
        ({"policy": "spread"}, "expected 'packing', 'striping' or 'load'"),
        ({"requirements": "free_memory >="}, "spec.placement.requirements:"),
        ({"requirements": "  "}, "spec.placement.requirements:"),
        ({"rank": "free_cpu +"}, "spec.placement.rank:"),
    ],
)
def test_vm_placement(placement: dict[str, Any], expected: str | None) -> None:
    check(document("VirtualMachine", placement=placement), expected, with_fleet=True)


@pytest.mark.parametrize(
    ("depends_on", "expected"),
    [
        (["network/lan"], VALID),
        (["net/lan", "image/debian-12", "host/kvm-1"], VALID),
        (["lan"], "invalid reference 'lan': expected KIND/NAME"),
        (["network/Lan"], "invalid reference 'network/Lan'"),
        (["netwrk/lan"], "unknown kind 'netwrk' in dependsOn 'netwrk/lan', did you mean 'network'?"),
    ],
)
def test_vm_depends_on(depends_on: list[str], expected: str | None) -> None:
    check(document("VirtualMachine", dependsOn=depends_on), expected, with_fleet=True)


@pytest.mark.parametrize(
    ("cloud_init", "expected"),
    [
        ({"userData": "#cloud-config\n"}, VALID),
        ({"userData": "x", "metaData": "y", "networkConfig": "z"}, VALID),
        ({"userData": 5}, "spec.cloudInit.userData: expected a string, got 5"),
        ({"vendorData": "x"}, "unknown field 'vendorData'"),
    ],
)
def test_vm_cloud_init(cloud_init: dict[str, Any], expected: str | None) -> None:
    check(document("VirtualMachine", cloudInit=cloud_init), expected)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("qemu:///system", VALID),
        ("qemu+ssh://kvm1/system", VALID),
        ("test:///default", VALID),
        ("sim://kvm-1?cpus=16&memory=64Gi&disk=1Ti", VALID),
        ("exec://custom", VALID),
        ("xen:///system", "unsupported host URI 'xen:///system'"),
        ("kvm1", "unsupported host URI 'kvm1'"),
        ("", "at least 1 characters"),
    ],
)
def test_host_uri(uri: str, expected: str | None) -> None:
    check(document("Host", uri=uri), expected)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("overcommit", {"cpu": 4, "memory": 1.5}, VALID),
        ("overcommit", {"cpu": 0}, "spec.overcommit.cpu: must be > 0"),
        ("overcommit", {"cpu": 65}, "spec.overcommit.cpu: must be <= 64"),
        ("overcommit", {"memory": 9}, "spec.overcommit.memory: must be <= 8"),
        ("reserved", {"cpu": 1, "memory": "2Gi"}, VALID),
        ("reserved", {"cpu": -1}, "spec.reserved.cpu: must be >= 0"),
        ("reserved", {"memory": "2 apples"}, "invalid quantity"),
        ("enabled", False, VALID),
        ("enabled", "maybe", "spec.enabled: expected true or false, got 'maybe'"),
        ("drivers", {"virtualization": "sim"}, VALID),
        ("drivers", {"hooks": "exec"}, "unknown field 'hooks'"),
    ],
)
def test_host_fields(field: str, value: Any, expected: str | None) -> None:
    check(document("Host", **{field: value}), expected)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"path": "/var/lib/ds", "type": "dir"}, VALID),
        ({"path": "relative/dir"}, "spec.path: expected an absolute path (starting with '/'), got 'relative/dir'"),
        ({"path": "/x", "type": "lvm"}, "expected 'dir'"),
        ({"path": "/x", "hosts": ["Kvm"]}, "invalid name 'Kvm'"),
    ],
)
def test_datastore(spec: dict[str, Any], expected: str | None) -> None:
    check(document("Datastore", **spec), expected)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"path": "/srv/index.json"}, VALID),
        ({"path": None, "url": "https://hub.example.org/index.json"}, VALID),
        ({"url": "https://hub.example.org/index.json"}, "set exactly one of 'url' and 'path'"),
        ({"path": None}, "set exactly one of 'url' and 'path'"),
        ({"driver": "sim", "refresh": "10m"}, VALID),
        ({"driver": "exec:hub"}, VALID),
        ({"driver": "Not A Driver"}, "spec.driver"),
        ({"refresh": "soon"}, "invalid duration 'soon'"),
        ({"path": None, "url": "ftp://hub"}, "spec.url: expected an http:// or https:// URL, got 'ftp://hub'"),
    ],
)
def test_marketplace(spec: dict[str, Any], expected: str | None) -> None:
    check(document("Marketplace", **spec), expected)


SHA = "a" * 64


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"source": "/srv/x.qcow2", "format": "qcow2"}, VALID),
        ({"source": "file:///srv/x.raw", "format": "raw"}, VALID),
        ({"source": "https://example.org/x.qcow2", "sha256": SHA}, VALID),
        ({"source": "https://example.org/x.qcow2"}, "an http(s) source needs 'sha256'"),
        ({"source": "ftp://example.org/x"}, "unsupported image source 'ftp://example.org/x'"),
        ({"source": " "}, "source must not be empty"),
        ({"source": "/x", "sha256": "ABC"}, "invalid sha256 'ABC'"),
        ({"source": "/x", "format": "vmdk"}, "expected 'qcow2' or 'raw'"),
        ({"source": {"marketplace": "hub/debian-12"}}, VALID),
        ({"source": {"marketplace": "hub/debian-12@1.2"}}, VALID),
        ({"source": {"marketplace": "hub/debian-12@12.5-1+b2"}}, VALID),
        ({"source": {"marketplace": "hub/debian-12@"}}, "invalid marketplace source 'hub/debian-12@'"),
        ({"source": {"marketplace": "hub/debian-12@1@2"}}, "invalid marketplace source 'hub/debian-12@1@2'"),
        ({"source": {"marketplace": "debian-12"}}, "invalid marketplace source 'debian-12'"),
        ({"source": {"marketplace": "hub/x", "version": 1}}, "unknown field 'version'"),
        ({"source": 42}, "spec.source: expected a string or a mapping, got 42"),
        ({"datastore": None}, "spec.datastore: expected a string, got null"),
    ],
)
def test_image(spec: dict[str, Any], expected: str | None) -> None:
    docs = [document("Datastore", "local"), document("Marketplace", "hub"), document("Image", "img", **spec)]
    try:
        load_text(as_yaml(*docs), "t.yaml")
        found: list[str] = []
    except ManifestError as error:
        found = [d.message for d in error.diagnostics]
    if expected is None:
        assert found == []
    else:
        assert any(expected in message for message in found), found


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"mode": "nat", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "dns": ["1.1.1.1"], "mtu": 1500}, VALID),
        ({"mode": "bridge", "bridge": "br0"}, VALID),
        ({"mode": "isolated", "range": {"first": "10.10.0.5", "last": "10.10.0.9"}}, VALID),
        ({"mode": "bridge"}, "mode 'bridge' needs 'bridge'"),
        ({"mode": "nat", "bridge": "br0"}, "'bridge' is only for mode 'bridge', not 'nat'"),
        ({"mode": "bridge", "bridge": "a-very-long-bridge-name"}, "at most 15 characters"),
        ({"mode": "natted"}, "did you mean 'nat'?"),
        ({"cidr": "10.10.0.1/24"}, "has host bits set; did you mean 10.10.0.0/24?"),
        ({"cidr": "10.10.0.0/31"}, "is too small"),
        ({"cidr": "10.10.0.0/33"}, "spec.cidr: '33' is not a valid netmask"),
        ({"cidr": "lan"}, "spec.cidr: expected an IPv4 network"),
        ({"gateway": "10.20.0.1"}, "gateway 10.20.0.1 is outside 10.10.0.0/24"),
        ({"range": {"first": "10.10.0.9", "last": "10.10.0.5"}}, "range first 10.10.0.9 is after last 10.10.0.5"),
        ({"range": {"first": "10.10.0.9", "last": "10.10.1.5"}}, "range address 10.10.1.5 is outside"),
        ({"mtu": 100}, "spec.mtu: must be >= 576"),
        ({"mtu": 10000}, "spec.mtu: must be <= 9216"),
        ({"dns": ["8.8.8"]}, "spec.dns[0]: expected an IPv4 address"),
    ],
)
def test_network(spec: dict[str, Any], expected: str | None) -> None:
    check(document("Network", **spec), expected)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"direction": "in", "protocol": "tcp", "ports": [22, "8000-8080"]}, VALID),
        ({"direction": "out"}, VALID),
        ({"direction": "in", "protocol": "udp", "ports": 53}, VALID),
        ({"direction": "in", "protocol": "icmp", "cidr": "192.168.0.0/16"}, VALID),
        ({"direction": "inbound"}, "expected 'in' or 'out'"),
        ({"direction": "in", "protocol": "sctp"}, "expected 'tcp', 'udp', 'icmp' or 'any'"),
        ({"direction": "in", "protocol": "icmp", "ports": [22]}, "ports apply to tcp and udp only"),
        ({"direction": "in", "protocol": "tcp", "ports": [0]}, "invalid port range '0'"),
        ({"direction": "in", "protocol": "tcp", "ports": [70000]}, "invalid port range '70000'"),
        ({"direction": "in", "protocol": "tcp", "ports": ["8080-80"]}, "invalid port range '8080-80'"),
        ({"direction": "in", "protocol": "tcp", "ports": ["http"]}, "invalid port 'http'"),
        ({"protocol": "tcp"}, "missing required field 'direction'"),
    ],
)
def test_security_rules(rule: dict[str, Any], expected: str | None) -> None:
    check(document("SecurityGroup", rules=[rule]), expected)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"on": ["vm.running", "apply.finished", "*"], "timeout": "5m", "env": {"CHANNEL": "ops"}}, VALID),
        ({"timeout": 30}, VALID),
        ({"command": "notify --all"}, "command must be a list of arguments"),
        ({"command": []}, "spec.command: needs at least 1 item, got 0"),
        ({"command": [""]}, "spec.command[0]: must have at least 1 characters"),
        ({"on": []}, "spec.on: needs at least 1 item, got 0"),
        ({"on": ["vm.fialed"]}, "unknown event 'vm.fialed', did you mean 'vm.failed'?"),
        ({"on": ["everything"]}, "unknown event 'everything'; expected one of vm.created"),
        ({"timeout": "soon"}, "invalid duration 'soon'"),
        ({"env": {"1BAD": "x"}}, "invalid variable name '1BAD'"),
        ({"env": {"GOOD": 1}}, "spec.env.GOOD: expected a string, got 1"),
    ],
)
def test_hook(spec: dict[str, Any], expected: str | None) -> None:
    check(document("Hook", **spec), expected)


@pytest.mark.parametrize(
    ("kind", "api_version", "expected"),
    [
        ("Hook", "nebctl/v1", VALID),
        ("Hook", "nebctl/v2", "unsupported apiVersion 'nebctl/v2': expected 'nebctl/v1'"),
        ("Hook", 1, "unsupported apiVersion 1"),
        ("VirtualMachin", "nebctl/v1", "unknown kind 'VirtualMachin', did you mean 'VirtualMachine'?"),
        ("network", "nebctl/v1", "unknown kind 'network', did you mean 'Network'?"),
        ("securitygroups", "nebctl/v1", "unknown kind 'securitygroups', did you mean 'SecurityGroup'?"),
        ("Pod", "nebctl/v1", "unknown kind 'Pod': expected one of Host, Datastore"),
        (["Host"], "nebctl/v1", "'kind' must be a string"),
    ],
)
def test_kind_and_api_version(kind: Any, api_version: Any, expected: str | None) -> None:
    doc = document("Hook")
    doc["kind"], doc["apiVersion"] = kind, api_version
    check(doc, expected)


def test_valid_fleet_with_vm_loads_into_a_set() -> None:
    vm = document("VirtualMachine", "web-1", disks=[{"image": "debian-12"}], nics=[{"network": "lan"}])
    loaded = load_text(as_yaml(*fleet(), vm), "t.yaml")
    assert isinstance(loaded, ManifestSet)
    assert len(loaded) == 6
