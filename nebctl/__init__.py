"""nebctl: a declarative reconciliation controller for virtual infrastructure.

Users declare VMs, images, networks and what surrounds them in YAML manifests; nebctl compares them with its
database and with live monitoring, plans a graph of driver actions and executes it. The package is split as
DESIGN.md describes: ``schemas`` (manifest models), ``reconcilers`` (per-kind change rules), ``drivers``
(the backends), ``database`` (the state store) and ``controller`` (the loop, the CLI and the service).
"""

__version__ = "0.1.0"
