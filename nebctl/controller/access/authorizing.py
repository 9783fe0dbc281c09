"""Authorization: the access rules of the database decide (``core.access.decide``: deny by default, a deny wins),
then the optional external authorize program, given that verdict, may confirm or overturn it. A program that
fails (a crash, a hang, garbage) denies: access control fails closed. Used by the API, the dashboard and
``nebctl acl check``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict

from nebctl.controller.access import programs
from nebctl.core.access import Decision, Identity, Rule, Target, decide, make_rule
from nebctl.core.settings import AccessSettings
from nebctl.database.records import AccessRuleRecord
from nebctl.database.store import Store

log = logging.getLogger(__name__)


def rule_of(record: AccessRuleRecord) -> Rule:
    return make_rule(
        id=record.id,
        effect=record.effect,
        subject_type=record.subject_type,
        subject=record.subject,
        actions=record.actions,
        kinds=record.kinds,
        namespaces=record.namespaces,
        stacks=record.stacks,
    )


class Authorizer:
    def __init__(self, store: Store, settings: AccessSettings | None = None) -> None:
        self.store = store
        self.settings = settings or AccessSettings()
        self._kept: tuple[int, list[Rule]] | None = None

    def rules(self, access_version: int | None = None) -> list[Rule]:
        """The rules as stored now (read at each call: a rule added or removed counts at once). Given the
        ``access`` change counter (``Store.change_versions``, read before this call), the rules read under that
        same counter are reused: adding or removing a rule raises it."""
        kept = self._kept
        if access_version is not None and kept is not None and kept[0] == access_version:
            return kept[1]
        rules = [rule_of(record) for record in self.store.list_access_rules()]
        if access_version is not None:
            self._kept = (access_version, rules)
        return rules

    def authorize(
        self, identity: Identity, action: str, target: Target, *, rules: Sequence[Rule] | None = None
    ) -> Decision:
        decision = decide(self.rules() if rules is None else rules, identity, action, target)
        program = self.settings.authorize_program
        if program is None:
            return decision
        payload = {
            "identity": {"name": identity.name, "groups": list(identity.groups), "driver": identity.driver},
            "action": action,
            "target": asdict(target),
            "decision": {
                "allowed": decision.allowed,
                "rule": decision.rule.id if decision.rule is not None else None,
                "reason": decision.reason,
            },
        }
        try:
            allowed, reason = programs.authorize(program, payload, timeout=self.settings.authorize_timeout)
        except programs.ProgramError as error:
            log.warning("authorize program: %s; denied", error)
            return Decision(False, decision.rule, f"denied: the authorize program failed ({error})", decision.matched)
        why = f"{'allowed' if allowed else 'denied'} by the authorize program" + (f": {reason}" if reason else "")
        return Decision(allowed, decision.rule, f"{why} (the rules said: {decision.reason})", decision.matched)
