"""The EC2 monitoring driver: every instance of a cloud host in one paginated describe_instances.

A cloud has no fixed capacity to report: the probe of a host gives what its instances take (their VMs' vCPUs
and memory), with nothing free beyond that, and the count per instance type in ``custom`` (``type.t3.small``).
Placement reads a cloud host's room from the Host's capacity map instead (controller/planning/placing.py), so the probe
only says whether the endpoint answers and what runs there. An endpoint that does not answer gives a probe in
state ERROR, never an exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from nebctl.core.families import Family
from nebctl.drivers.ec2.common import LIVE, host_filters, instances
from nebctl.drivers.ec2.failures import convert, edge
from nebctl.drivers.ec2.virtualization import EC2Driver, status_of
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus


class EC2Monitoring(EC2Driver):
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset({"probe_host", "probe_vms"})

    def _live(self, host: HostRef) -> list[dict[str, object]]:
        filters = [*host_filters(host, self.options), {"Name": "instance-state-name", "Values": list(LIVE)}]
        return list(instances(self.client(host), filters))

    def probe_host(self, host: HostRef) -> HostProbe:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            live = self._live(host)
        except (ClientError, BotoCoreError) as error:
            return HostProbe(name=host.name, state=HostLiveState.ERROR, error=str(convert(error)))
        statuses = [status_of(instance) for instance in live]
        running = [s for s in statuses if s.state is not VMLiveState.STOPPED]
        types = Counter(str(instance.get("InstanceType", "?")) for instance in live)
        used_memory = sum(s.memory for s in running)
        return HostProbe(
            name=host.name,
            state=HostLiveState.ONLINE,
            cpus=sum(s.vcpu for s in running),
            memory=used_memory,
            free_memory=0,
            cpu_usage=0.0,
            custom={"cloud": "ec2", "instances": str(len(live)), **{f"type.{k}": str(v) for k, v in types.items()}},
        )

    @edge
    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return [status_of(instance) for instance in self._live(host)]
