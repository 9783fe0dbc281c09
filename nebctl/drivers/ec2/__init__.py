"""The EC2 drivers: a public cloud (or an EC2-compatible one) as a host, through boto3.

Virtualization, network and monitoring drivers for hosts whose URI is ``ec2://REGION[?endpoint=URL]``; the
registry imports this package only when such a host is used, and boto3 is the optional extra ``ec2``. A cloud
host's storage driver refuses every action: a VM's root disk comes from its AMI.
"""

from __future__ import annotations

from nebctl.drivers.ec2.monitoring import EC2Monitoring
from nebctl.drivers.ec2.network import EC2Network
from nebctl.drivers.ec2.virtualization import EC2Storage, EC2Virtualization

DRIVER_CLASSES = (EC2Virtualization, EC2Network, EC2Monitoring, EC2Storage)

__all__ = ["DRIVER_CLASSES", "EC2Monitoring", "EC2Network", "EC2Storage", "EC2Virtualization"]
