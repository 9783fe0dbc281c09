#!/usr/bin/env python3
"""Example nebctl exec driver: a toy hypervisor whose state is JSON files in $NEBCTL_EXAMPLE_STATE.

Every ACTION file under DRIVER_DIR/FAMILY/example/ is a link to this one script; it reads the nebctl payload
(action, family, host, resource, arguments) from stdin, prints the JSON result on stdout, logs on stderr with
`LEVEL: message` lines, and exits 0 (done), 75 (try again later) or 1 (failed, with an error object saying
whether the object was missing or in the way). Copy it as a starting point for a real driver.
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import sys

TEMPORARY = 75


class DriverError(Exception):
    def __init__(self, kind, message, status=1):
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


def log(level, message):
    print(f"{level}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked_state(host):
    """The host's state, its file locked while the block runs, and a function that writes it back."""
    root = os.environ.get("NEBCTL_EXAMPLE_STATE")
    if not root:
        raise DriverError("config", "NEBCTL_EXAMPLE_STATE is not set (drivers.exec.env in nebctl's configuration)")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{host}.json")
    with open(os.path.join(root, f"{host}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = {"vms": {}, "datastores": {}, "volumes": {}, "networks": {}, "leases": {}, "groups": {}}
        if os.path.exists(path):
            with open(path) as stream:
                state.update(json.load(stream))

        def save():
            with open(path + ".tmp", "w") as stream:
                json.dump(state, stream)
            os.replace(path + ".tmp", path)

        yield state, save


@contextlib.contextmanager
def host_state(host):
    """The host's state file, locked for the whole action so concurrent actions do not lose updates."""
    with locked_state(host) as (state, save):
        yield state
        save()


@contextlib.contextmanager
def host_states(*hosts):
    """Several hosts' states at once (a migration's source and target; the same host twice is one state),
    locked in name order so that two migrations in opposite directions cannot wait for each other forever,
    and written back last host first: a migration's target holds the VM before its source forgets it (a crash
    in between leaves it on both, and migrating again finishes the move)."""
    with contextlib.ExitStack() as stack:
        locked = {name: stack.enter_context(locked_state(name)) for name in sorted(set(hosts))}
        yield [locked[name][0] for name in hosts]
        for name in dict.fromkeys(reversed(hosts)):
            locked[name][1]()


def status(vm):
    running = vm["state"] == "running"
    return {
        "uuid": vm["uuid"],
        "name": vm["name"],
        "state": vm["state"],
        "vcpu": vm["vcpu"],
        "memory": vm["memory"],
        "cpu_usage": 0.1 * vm["vcpu"] if running else 0.0,
        "memory_used": vm["memory"] // 2 if running else 0,
        "owner": vm.get("owner"),
        "macs": vm.get("macs", []),
    }


def the_vm(state, uuid):
    if uuid not in state["vms"]:
        raise DriverError("not_found", f"no VM {uuid}")
    return state["vms"][uuid]


# --- virtualization -------------------------------------------------------------------------------------------


def virtualization(action, state, resource, arguments):
    moves = {  # action -> {from state: to state}; a state not listed is a conflict
        "shutdown": {"running": "stopped", "suspended": "stopped", "stopped": "stopped"},
        "cancel": {"running": "stopped", "suspended": "stopped", "stopped": "stopped"},
        "reboot": {"running": "running"},
        "suspend": {"running": "suspended", "suspended": "suspended"},
        "resume": {"suspended": "running", "running": "running"},
    }
    if action == "deploy":
        vm = state["vms"].get(resource["uuid"])
        if vm is None:
            vm = {"uuid": resource["uuid"], "state": "stopped"}
            state["vms"][resource["uuid"]] = vm
            log("INFO", f"defined VM {resource['name']}")
        if vm["state"] == "stopped" or "name" not in vm:
            vm.update(
                name=resource["name"],
                vcpu=resource["vcpu"],
                memory=resource["memory"],
                owner=resource.get("owner"),
                macs=[nic["mac"] for nic in resource.get("nics") or []],
            )
        if arguments.get("start", True) and vm["state"] != "running":
            vm["state"] = "running"
            log("INFO", f"started VM {vm['name']}")
        return status(vm)
    if action in moves:
        vm = the_vm(state, resource["uuid"])
        if vm["state"] not in moves[action]:
            raise DriverError("conflict", f"cannot {action} VM {vm['uuid']}: it is {vm['state']}")
        vm["state"] = moves[action][vm["state"]]
        return None
    if action == "undeploy":
        the_vm(state, resource["uuid"])
        del state["vms"][resource["uuid"]]
        return None
    if action == "poll":
        return status(the_vm(state, resource["uuid"]))
    raise DriverError("unsupported", f"virtualization action {action} is not implemented")


def migrate(source, target, resource, arguments):
    """Move the VM, and the disks the target lacks, from the source's state to the target's (both locked).
    Done again, it finds the VM on the target and returns it as it is. The toy has no memory to copy: a live
    and a cold migration both leave the VM in the state it was in."""
    uuid, target_name = resource["uuid"], arguments["target"]["name"]
    if source is target or (uuid not in source["vms"] and uuid in target["vms"]):
        return status(the_vm(target, uuid))
    vm = the_vm(source, uuid)
    if any(other["uuid"] != uuid and other.get("name") == vm.get("name") for other in target["vms"].values()):
        raise DriverError("conflict", f"host {target_name} already has a VM named {vm.get('name')}")
    disks = [(disk["datastore"], disk["volume"]) for disk in resource.get("disks") or []]
    for datastore, _name in disks:  # every check before anything moves
        if datastore not in target["datastores"]:
            raise DriverError("not_found", f"no datastore {datastore} on host {target_name}")
    for datastore, name in disks:
        key = volume_key(datastore, name)
        if key in source["volumes"] and key not in target["volumes"]:
            volume = source["volumes"].pop(key)
            volume["path"] = target["datastores"][datastore]["path"].rstrip("/") + "/" + name
            target["volumes"][key] = volume
    target["vms"][uuid] = source["vms"].pop(uuid)
    log("INFO", f"{'live' if arguments.get('live') else 'cold'} migrated VM {vm.get('name')} to {target_name}")
    return status(vm)


# --- monitoring -----------------------------------------------------------------------------------------------


def monitoring(action, state, host, arguments):
    if action == "list":
        return owned_objects(state)
    if action == "own":
        return own(state, arguments)
    if action == "probe_vms":
        return [status(vm) for vm in state["vms"].values()]
    if action == "probe_host":
        cpus, memory = 8, 32 * 1024**3
        active = [vm for vm in state["vms"].values() if vm["state"] != "stopped"]
        used = sum(vm["memory"] for vm in active)
        load = sum(status(vm)["cpu_usage"] for vm in active)
        return {
            "name": host["name"],
            "state": "online",
            "cpus": cpus,
            "memory": memory,
            "free_memory": max(0, memory - used),
            "cpu_usage": min(1.0, load / cpus),
            "load": load,
            "disk_total": 1024**4,
            "disk_free": 1024**4,
            "custom": {"example": "true"},
        }
    raise DriverError("unsupported", f"monitoring action {action} is not implemented")


def owned_objects(state):
    """The ``list`` action: every object that carries an ownership, other than VMs, with the attributes nebctl
    compares with what it applied, in the spec's terms (docs/ownership.md)."""
    found = []
    for name, net in state["networks"].items():
        if net.get("owner"):
            attributes = {
                "mode": net["mode"],
                "cidr": net["cidr"],
                "gateway": net["gateway"],
                "range": f"{net['range_first']}-{net['range_last']}",
            }
            if net["mode"] == "bridge":
                attributes["bridge"] = net.get("bridge") or ""
            else:
                attributes.update(mtu=net.get("mtu"), dns=list(net.get("dns") or []))
            found.append(
                {
                    "object": "network",
                    "name": name,
                    "owner": net["owner"],
                    "details": {"bridge": net.get("bridge")},
                    "attributes": attributes,
                }
            )
    for name, pool in state["datastores"].items():
        if pool.get("owner"):
            found.append(
                {
                    "object": "pool",
                    "name": name,
                    "owner": pool["owner"],
                    "details": {"capacity": 1024**4},
                    "attributes": {"type": pool.get("type", "dir"), "path": pool["path"]},
                }
            )
    for key, volume in state["volumes"].items():
        if volume.get("owner"):
            details = {
                "pool": key.split("/", 1)[0],
                "capacity": volume["capacity"],
                "format": volume["format"],
                "sha256": volume.get("sha256"),
            }
            found.append(
                {
                    "object": "volume",
                    "name": volume["name"],
                    "owner": volume["owner"],
                    "details": details,
                    "attributes": {"format": volume["format"], "size": volume["capacity"]},
                }
            )
    for name, owner in state.get("group_owners", {}).items():
        if name in state["groups"]:
            found.append(
                {
                    "object": "filter",
                    "name": name,
                    "owner": owner,
                    "details": {},
                    "attributes": {"rules": state["groups"][name]},
                }
            )
    return found


def own(state, arguments):
    """The ``own`` action: keep a new ownership for an object (its applied spec changed, labels say), the object
    itself untouched; ``list`` and ``probe_vms`` give it back."""
    what, name, owner = arguments["object"], arguments["name"], arguments["owner"]
    if what == "filter":
        if name not in state["groups"]:
            raise DriverError("not_found", f"no security group {name}")
        state.setdefault("group_owners", {})[name] = owner
        return None
    tables = {"vm": "vms", "network": "networks", "pool": "datastores", "volume": "volumes"}
    if what not in tables:
        raise DriverError("unsupported", f"no object kind {what}")
    key = volume_key(arguments.get("pool") or "", name) if what == "volume" else name
    target = state[tables[what]].get(key)
    if target is None:
        raise DriverError("not_found", f"no {what} {name}")
    target["owner"] = owner
    return None


# --- storage --------------------------------------------------------------------------------------------------


def volume_key(datastore, name):
    return f"{datastore}/{name}"


def storage(action, state, resource, arguments):
    datastore = arguments.get("datastore") or resource.get("datastore") or resource.get("name")
    if action == "create_datastore":
        state["datastores"][resource["name"]] = {
            "path": resource["path"],
            "type": resource.get("type", "dir"),
            "owner": resource.get("owner"),
        }
        return datastore_status(state, resource["name"])
    if datastore not in state["datastores"]:
        raise DriverError("not_found", f"no datastore {datastore}")
    if action == "delete_datastore":
        if any(key.startswith(datastore + "/") for key in state["volumes"]):
            raise DriverError("conflict", f"datastore {datastore} still holds volumes")
        del state["datastores"][datastore]
        return None
    if action == "monitor":
        return datastore_status(state, datastore)
    return volume_action(action, state, datastore, resource, arguments)


def volume_action(action, state, datastore, resource, arguments):
    """The storage actions on one volume of an existing datastore."""
    name = resource["volume"]
    key = volume_key(datastore, name)
    path = state["datastores"][datastore]["path"].rstrip("/") + "/" + name
    if action == "import":
        if key not in state["volumes"]:
            state["volumes"][key] = {
                "name": name,
                "path": path,
                "capacity": 1024**3,
                "allocation": 1024**3,
                "format": resource.get("format") or "qcow2",
                "sha256": resource.get("sha256"),
                "source": resource["source"],
                "owner": resource.get("owner"),
            }
        return volume_info(state["volumes"][key])
    if action == "clone":
        if key not in state["volumes"]:
            state["volumes"][key] = cloned_volume(state, datastore, name, path, resource)
        return volume_info(state["volumes"][key])
    if key not in state["volumes"]:
        raise DriverError("not_found", f"no volume {name} in {datastore}")
    volume = state["volumes"][key]
    if action == "resize":
        if arguments["size"] < volume["capacity"]:
            raise DriverError("invalid", f"shrinking volume {name} is refused")
        volume["capacity"] = arguments["size"]
        return volume_info(volume)
    if action == "delete":
        if any(v.get("backing") == name for k, v in state["volumes"].items() if k.startswith(datastore + "/")):
            raise DriverError("conflict", f"volume {name} is a backing file")
        del state["volumes"][key]
        return None
    if action == "snapshot":
        volume.setdefault("snapshots", []).append(arguments["snapshot"])
        return volume_info(volume)
    raise DriverError("unsupported", f"storage action {action} is not implemented")


def cloned_volume(state, datastore, name, path, resource):
    """A new volume: a copy-on-write (or full) clone of its backing volume, or blank with the size asked."""
    backing = resource.get("backing")
    if backing is not None:
        base = state["volumes"].get(volume_key(datastore, backing))
        if base is None:
            raise DriverError("not_found", f"no volume {backing} to clone")
        size = resource["size"] or base["capacity"]
        if size < base["capacity"]:
            raise DriverError("invalid", f"cannot clone {backing} into a smaller volume")
    else:
        if not resource.get("size"):
            raise DriverError("invalid", "a blank volume needs a size")
        size = resource["size"]
    return {
        "name": name,
        "path": path,
        "capacity": size,
        "allocation": 200 * 1024,
        "format": resource.get("format", "qcow2"),
        "backing": backing if resource.get("clone") != "full" else None,
        "source": backing,
        "owner": resource.get("owner"),
    }


def volume_info(volume):
    fields = ("name", "path", "capacity", "allocation", "format", "backing", "sha256")
    return {field: volume.get(field) for field in fields}


def datastore_status(state, datastore):
    volumes = {v["name"]: volume_info(v) for k, v in state["volumes"].items() if k.startswith(datastore + "/")}
    used = sum(v["allocation"] for v in volumes.values())
    return {"name": datastore, "total": 1024**4, "used": used, "free": 1024**4 - used, "volumes": volumes}


# --- network --------------------------------------------------------------------------------------------------


def network(action, state, resource, arguments):
    if action == "create":
        state["networks"][resource["name"]] = resource
        return {"name": resource["name"], "active": True, "bridge": resource.get("bridge")}
    if action == "update_sg":
        state["groups"][resource["name"]] = resource["rules"]
        state.setdefault("group_owners", {})[resource["name"]] = resource.get("owner")
        return None
    if action == "delete_sg":
        if resource["name"] not in state["groups"]:
            raise DriverError("not_found", f"no security group {resource['name']}")
        del state["groups"][resource["name"]]
        return None
    if action == "monitor":
        return {
            name: {
                "name": name,
                "active": True,
                "bridge": net.get("bridge"),
                "leases": {mac: lease["ip"] for mac, lease in state["leases"].get(name, {}).items()},
            }
            for name, net in state["networks"].items()
        }
    name = resource.get("network") or resource.get("name")
    if name not in state["networks"]:
        raise DriverError("not_found", f"no network {name}")
    leases = state["leases"].setdefault(name, {})
    if action == "delete":
        if leases:
            raise DriverError("conflict", f"network {name} still has NICs")
        del state["networks"][name]
        state["leases"].pop(name, None)
        return None
    return nic_action(action, state["networks"][name], leases, resource, arguments)


def nic_action(action, net, leases, resource, arguments):
    """The network actions on one NIC's lease on the network ``net``."""
    mac = resource["mac"]
    if action == "pre":
        taken = {lease["ip"] for other, lease in leases.items() if other != mac}
        ip = resource.get("ip") or next_free(net, taken)
        if ip in taken:
            raise DriverError("conflict", f"address {ip} is taken")
        leases[mac] = {"ip": ip, "vm": arguments["vm_uuid"]}
        log("DEBUG", f"leased {ip} to {mac}")
        return None
    if action == "post":
        if mac not in leases:
            raise DriverError("not_found", f"NIC {mac} was not prepared")
        return None
    if action == "clean":
        leases.pop(mac, None)
        return None
    raise DriverError("unsupported", f"network action {action} is not implemented")


def next_free(net, taken):
    first, last = int(ipaddress.ip_address(net["range_first"])), int(ipaddress.ip_address(net["range_last"]))
    for number in range(first, last + 1):
        candidate = str(ipaddress.ip_address(number))
        if candidate not in taken and candidate != net.get("gateway"):
            return candidate
    raise DriverError("invalid", "no free address left")


def act(family, action, host, resource, arguments):
    """Every action but a migration: on the one host's state."""
    with host_state(host["name"]) as state:
        if family == "virtualization":
            return virtualization(action, state, resource, arguments)
        if family == "monitoring":
            return monitoring(action, state, host, arguments)
        if family == "storage":
            return storage(action, state, resource, arguments)
        if family == "network":
            return network(action, state, resource, arguments)
        raise DriverError("unsupported", f"family {family} is not implemented")


def main():
    payload = json.load(sys.stdin)
    action, family = payload["action"], payload["family"]
    host = payload.get("host") or {"name": "_"}
    resource, arguments = payload.get("resource") or {}, payload.get("arguments") or {}
    try:
        if family == "virtualization" and action == "migrate":
            with host_states(host["name"], arguments["target"]["name"]) as (source, target):
                result = migrate(source, target, resource, arguments)
        else:
            result = act(family, action, host, resource, arguments)
    except DriverError as failure:
        log("ERROR", failure.message)
        print(json.dumps({"error": {"kind": failure.kind, "message": failure.message}}))
        return failure.status
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
