"""Applying a plan: the controller (observe, plan, apply), the executor that runs the action graph, the journal
that writes every step to the database, and the world a reconciler acts through.

``controller`` is the I/O shell around the pure planner; ``executing`` runs a plan's actions in parallel with
retries and timeouts; ``journal`` records each round of changes in one transaction and finalises a resource once
all its actions are done; ``world`` is what a reconciler's ``realise`` may touch; ``values`` holds what they hand
around. Used by the CLI, the benchmarks and the service.
"""

from nebctl.controller.applying.controller import Controller
from nebctl.controller.applying.values import ApplyResult, PlannedApply, PlanOptions

__all__ = ["ApplyResult", "Controller", "PlanOptions", "PlannedApply"]
