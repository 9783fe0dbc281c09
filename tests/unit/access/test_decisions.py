"""The built-in authorization against a decision table written by hand: subjects, actions, kinds,
namespaces and stacks, deny by default, a deny winning over any allow; and the throttle of failed logins."""

from __future__ import annotations

import pytest

from nebctl.controller.access.throttling import LoginThrottle
from nebctl.core.access import Identity, RuleError, Target, decide, make_rule

RULES = [
    make_rule(id=1, effect="allow", subject_type="group", subject="ops", actions=["get", "diff", "apply"]),
    make_rule(
        id=2, effect="deny", subject_type="group", subject="ops", actions=["apply", "delete"], namespaces=["prod"]
    ),
    make_rule(id=3, effect="allow", subject_type="user", subject="carol", actions=["get"], kinds=["vm"]),
    make_rule(id=4, effect="allow", subject_type="user", subject="carol", actions=["apply"], namespaces=["team-*"]),
    make_rule(id=5, effect="allow", subject_type="everyone", subject="*", actions=["get"], kinds=["host"]),
    make_rule(id=6, effect="deny", subject_type="user", subject="dave", actions=["get"]),
    make_rule(id=7, effect="allow", subject_type="group", subject="ci", actions=["apply"], stacks=["web-*"]),
    make_rule(id=8, effect="allow", subject_type="group", subject="admins", actions=["admin"]),
]

ALICE = Identity("alice", ("ops",))  # ops: get/diff/apply everywhere, no apply or delete in prod
BOB = Identity("bob", ())  # in no group: only what everyone may
CAROL = Identity("carol", ("dev",))  # get vms; apply in team-* namespaces
DAVE = Identity("dave", ("ops",))  # ops too, but denied every get
ERIN = Identity("erin", ("ci", "admins"))

VM_A = Target("vm", "team-a", "web", "site")
VM_PROD = Target("vm", "prod", "db", "site")
NET_A = Target("network", "team-a", "lan", "site")
HOST = Target("host", "default", "h1", "fleet")
VM_WEB = Target("VirtualMachine", "default", "w1", "web-blue")  # a manifest kind name matches the short name


@pytest.mark.parametrize(
    ("identity", "action", "target", "allowed", "rule"),
    [
        # alice (ops): the allow covers every kind and namespace; the deny takes prod's apply and delete
        (ALICE, "get", VM_A, True, 1),
        (ALICE, "diff", VM_PROD, True, 1),
        (ALICE, "apply", VM_A, True, 1),
        (ALICE, "apply", VM_PROD, False, 2),
        (ALICE, "delete", VM_PROD, False, 2),
        (ALICE, "delete", VM_A, False, None),  # no rule allows delete anywhere
        (ALICE, "admin", VM_A, False, None),
        (ALICE, "get", HOST, True, 1),  # rule 1 has the lower id than rule 5
        # bob: nothing but what everyone may
        (BOB, "get", HOST, True, 5),
        (BOB, "get", VM_A, False, None),
        (BOB, "diff", HOST, False, None),
        # carol: get on vms only; apply in team-* only
        (CAROL, "get", VM_A, True, 3),
        (CAROL, "get", VM_PROD, True, 3),
        (CAROL, "get", NET_A, False, None),
        (CAROL, "apply", NET_A, True, 4),
        (CAROL, "apply", VM_PROD, False, None),
        (CAROL, "get", HOST, True, 5),
        # dave: his deny wins over his group's allow and over everyone's
        (DAVE, "get", VM_A, False, 6),
        (DAVE, "get", HOST, False, 6),
        (DAVE, "diff", VM_A, True, 1),
        (DAVE, "apply", VM_PROD, False, 2),
        # erin: ci may apply the web-* stacks only; admins may administer
        (ERIN, "apply", VM_WEB, True, 7),
        (ERIN, "apply", VM_A, False, None),
        (ERIN, "admin", Target(), True, 8),
        (ERIN, "get", VM_WEB, False, None),
    ],
)
def test_decision_table(identity: Identity, action: str, target: Target, allowed: bool, rule: int | None) -> None:
    decision = decide(RULES, identity, action, target)
    assert decision.allowed is allowed
    assert (decision.rule.id if decision.rule else None) == rule


def test_no_rules_denies_everything() -> None:
    for action in ("get", "diff", "apply", "delete", "admin"):
        decision = decide([], ALICE, action, VM_A)
        assert not decision.allowed and decision.rule is None and "no rule allows" in decision.reason


def test_unknown_fields_are_covered_only_by_a_star() -> None:
    """A listing across namespaces (namespace unknown) is allowed by a rule for every namespace only."""
    listing = Target("vm", None, None, None)
    assert decide(RULES, ALICE, "get", listing).rule.id == 1  # type: ignore[union-attr]
    assert not decide(RULES, CAROL, "apply", Target("vm", None, None, None)).allowed  # team-* is not every ns
    assert not decide(RULES, ERIN, "apply", Target("vm", "default", "w", None)).allowed  # web-* is not every stack


def test_deny_order_does_not_matter() -> None:
    """The deny wins whether it comes before or after the allow."""
    deny_first = [
        make_rule(id=1, effect="deny", subject_type="everyone", subject="*", actions=["get"], kinds=["image"]),
        make_rule(id=2, effect="allow", subject_type="user", subject="alice", actions=["get"]),
    ]
    image = Target("image", "default", "base", "s")
    assert decide(deny_first, ALICE, "get", image).rule.id == 1  # type: ignore[union-attr]
    assert decide(list(reversed(deny_first)), ALICE, "get", image).allowed is False
    assert decide(deny_first, ALICE, "get", VM_A).allowed is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"effect": "permit"}, "effect must be allow or deny"),
        ({"subject_type": "robot"}, "subject_type must be"),
        ({"actions": ["get", "frob"]}, "unknown action 'frob'"),
        ({"actions": []}, "actions: give at least one"),
        ({"kinds": [""]}, "kinds: give at least one"),
        ({"subject": ""}, "names its user"),
    ],
)
def test_bad_rules_are_refused(values: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"id": 1, "effect": "allow", "subject_type": "user", "subject": "a", "actions": ["get"]}
    with pytest.raises(RuleError, match=message):
        make_rule(**{**base, **values})  # type: ignore[arg-type]


def test_throttle_delays_double_per_user_and_per_address() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free=2, delay=1.0, max_delay=4.0, window=60.0, clock=lambda: now[0])
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.9") == 1.0  # third attempt waits 1 s: by the user's count
    assert throttle.retry_after("bob", "10.0.0.1") == 1.0  # and by the address's
    assert throttle.retry_after("bob", "10.0.0.2") == 0.0
    throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", None) == 2.0
    throttle.failed("alice", None)
    throttle.failed("alice", None)
    assert throttle.retry_after("alice", None) == 4.0  # capped
    now[0] += 4.0
    assert throttle.retry_after("alice", None) == 0.0
    throttle.succeeded("alice")
    assert throttle.retry_after("alice", None) == 0.0
    assert throttle.retry_after("carol", "10.0.0.1") == 0.0  # the address's 3 failures are 4 s old: it waited
    now[0] += 61.0  # outside the window everything is forgotten
    throttle.failed("zed", "10.0.0.1")
    assert throttle.retry_after("zed", "10.0.0.1") == 0.0
