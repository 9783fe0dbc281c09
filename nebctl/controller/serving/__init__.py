"""The continuous reconciliation service behind ``nebctl serve``.

``service.Service`` runs it: ``sources`` give the manifests (a watched directory or a git repository),
``syncing`` plans and applies one stack through the same controller and journal as ``nebctl apply``,
``backoff`` spaces out the heals of a resource that keeps failing, ``monitoring`` probes hosts and VMs on their
intervals (and on the drivers' lifecycle events), ``statuses`` works out each stack's sync status and each
resource's health, and ``metrics`` holds the Prometheus metrics that the HTTP layer (``nebctl.api``) serves.
Only the CLI's ``serve`` command and the HTTP layer import this package.
"""
