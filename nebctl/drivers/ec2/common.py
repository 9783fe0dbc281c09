"""What the EC2 drivers share: the client per region and endpoint, options, tags, and instance lookups.

A cloud Host's URI says where it is: ``ec2://REGION``, with ``?endpoint=URL`` for an EC2-compatible cloud (or
a local stand-in). Credentials never come from manifests: boto3 reads them from the environment (its usual
chain: ``AWS_ACCESS_KEY_ID``..., a profile, an instance role) unless the config file's ``drivers.ec2`` gives
``access_key_id`` and ``secret_access_key`` (or a ``profile``). Other options of ``drivers.ec2``:

- ``endpoint``: the endpoint for hosts whose URI names none;
- ``ami``: the AMI of a VM whose definition names none;
- ``poll_interval``: seconds between two looks at an instance that is on its way to a state (default 2);
- ``installation``: written on every object as the ``nebctl:installation`` tag, so two installations sharing
  an account tell their objects apart.

Ownership travels in tags, as the libvirt driver writes it into ``<metadata>``: ``nebctl:stack``,
``nebctl:kind``, ``nebctl:namespace``, ``nebctl:name``, and ``nebctl:uuid`` for the VM's identity, so
``recover`` and drift read the same facts from either backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nebctl.drivers.errors import PermanentError
from nebctl.drivers.types import HostRef, Ownership

DRIVER = "ec2"
TAG_PREFIX = "nebctl:"
UUID_TAG = "nebctl:uuid"
HOST_TAG = "nebctl:host"
INSTALLATION_TAG = "nebctl:installation"
LIVE = ("pending", "running", "stopping", "stopped", "shutting-down")  # every state but terminated


@dataclass(frozen=True)
class Endpoint:
    region: str
    url: str | None


def endpoint_of(host: HostRef, options: Mapping[str, Any]) -> Endpoint:
    """Region and endpoint of a cloud host's URI (``ec2://REGION[?endpoint=URL]``)."""
    parts = urlsplit(host.uri)
    if parts.scheme != "ec2" or not parts.netloc:
        raise PermanentError(f"host {host.name}: {host.uri!r} is not a cloud URI ec2://REGION", driver=DRIVER)
    url = parse_qs(parts.query).get("endpoint", [None])[0] or options.get("endpoint")
    return Endpoint(parts.netloc, str(url) if url else None)


class Clients:
    """One boto3 EC2 client per (region, endpoint), built on first use and shared by the three drivers."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self._clients: dict[Endpoint, Any] = {}
        self._lock = threading.Lock()

    def for_host(self, host: HostRef) -> Any:
        endpoint = endpoint_of(host, self.options)
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                import boto3  # an optional extra: importing it here keeps the module importable for messages
                from botocore.config import Config

                session = boto3.session.Session(
                    aws_access_key_id=self.options.get("access_key_id"),
                    aws_secret_access_key=self.options.get("secret_access_key"),
                    aws_session_token=self.options.get("session_token"),
                    profile_name=self.options.get("profile"),
                )
                # The executor retries temporary errors with its own backoff and journal: boto3's retries would
                # hide throttling from it and multiply the wait.
                config = Config(
                    retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60
                )
                client = session.client("ec2", region_name=endpoint.region, endpoint_url=endpoint.url, config=config)
                self._clients[endpoint] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def shared_clients(shared: dict[str, Any], options: Mapping[str, Any]) -> Clients:
    """The ``Clients`` of a registry (its ``shared`` dict), so every EC2 driver uses the same connections."""
    clients = shared.get("ec2.clients")
    if clients is None:
        clients = shared["ec2.clients"] = Clients(options)
    return clients


def ownership_tags(host: HostRef, owner: Ownership | None, options: Mapping[str, Any]) -> list[dict[str, str]]:
    tags = [{"Key": HOST_TAG, "Value": host.name}]
    if owner is not None:
        tags += [
            {"Key": "nebctl:stack", "Value": owner.stack},
            {"Key": "nebctl:kind", "Value": owner.kind},
            {"Key": "nebctl:namespace", "Value": owner.namespace},
            {"Key": "nebctl:name", "Value": owner.name},
        ]
        # Format 1's identity fields (docs/ownership.md); the applied spec does not fit in a tag's 256 characters.
        if owner.installation:
            tags += [
                {"Key": "nebctl:incarnation", "Value": str(owner.incarnation)},
                {"Key": "nebctl:owner-installation", "Value": owner.installation},
            ]
    installation = options.get("installation")
    if installation:
        tags.append({"Key": INSTALLATION_TAG, "Value": str(installation)})
    return tags


def tag_map(item: Mapping[str, Any]) -> dict[str, str]:
    """An object's tags as a dict (network interfaces call them ``TagSet``, everything else ``Tags``)."""
    return {tag["Key"]: tag["Value"] for tag in item.get("Tags") or item.get("TagSet") or []}


def owner_of(tags: Mapping[str, str]) -> Ownership | None:
    try:
        return Ownership(
            stack=tags["nebctl:stack"],
            kind=tags["nebctl:kind"],
            namespace=tags["nebctl:namespace"],
            name=tags["nebctl:name"],
            incarnation=int(tags.get("nebctl:incarnation", "0")),
            installation=tags.get("nebctl:owner-installation", ""),
        )
    except (KeyError, ValueError):
        return None


def host_filters(host: HostRef, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Filters selecting what this host (and installation) owns: a region may hold other hosts' objects."""
    filters: list[dict[str, Any]] = [{"Name": f"tag:{HOST_TAG}", "Values": [host.name]}]
    installation = options.get("installation")
    if installation:
        filters.append({"Name": f"tag:{INSTALLATION_TAG}", "Values": [str(installation)]})
    return filters


def instances(client: Any, filters: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every instance matching ``filters``, through describe_instances' paginator (one logical call)."""
    paginator = client.get_paginator("describe_instances")
    for page in paginator.paginate(Filters=list(filters)):
        for reservation in page.get("Reservations", []):
            yield from reservation.get("Instances", [])
