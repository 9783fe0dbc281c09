"""Access rules and their verdict: who may do which action on which resource. Pure values and one pure function.

``decide(rules, identity, action, target)`` is the whole of the built-in authorization: nothing is allowed that
no rule allows, and a matching deny wins over every matching allow. The API, the dashboard and
``nebctl acl check`` call it (through ``controller.access``, which reads the rules from the database and may
consult an external authorize program after it); its tests are a decision table written by hand.

A rule names a subject (a user, a group, or everyone), actions, and shell-style globs of kinds, namespaces and
stacks (``*`` matches all; ``team-*``, ``vm``). Kinds are matched by their CLI short name or their manifest kind
name, case-insensitively, so ``vm`` and ``VirtualMachine`` are the same kind in a rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase

from nebctl.core.keys import KIND_ALIASES


class Action(StrEnum):
    GET = "get"  # read records, status, events, hosts, applies
    DIFF = "diff"  # plan posted manifests
    APPLY = "apply"  # change infrastructure: syncs, and webhooks' fetches
    DELETE = "delete"  # remove resources
    ADMIN = "admin"  # users, tokens of others, access rules, quotas


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class SubjectType(StrEnum):
    USER = "user"
    GROUP = "group"
    EVERYONE = "everyone"


ACTIONS = tuple(a.value for a in Action)


class RuleError(ValueError):
    """A rule that cannot be stored: an unknown action, subject type or effect, or an empty list."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, as an authentication driver established it."""

    name: str
    groups: tuple[str, ...] = ()
    driver: str = "builtin"


@dataclass(frozen=True, slots=True)
class Target:
    """What an action is on. ``None`` fields are unknown (a listing across namespaces): only a rule whose glob
    for that field is ``*`` covers them."""

    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    stack: str | None = None

    def __str__(self) -> str:
        parts = [f"{self.kind or '*'}/{self.name or '*'}"]
        if self.namespace is not None:
            parts.append(f"namespace {self.namespace}")
        if self.stack is not None:
            parts.append(f"stack {self.stack}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    effect: Effect
    subject_type: SubjectType
    subject: str  # "*" for everyone
    actions: tuple[str, ...]
    kinds: tuple[str, ...] = ("*",)
    namespaces: tuple[str, ...] = ("*",)
    stacks: tuple[str, ...] = ("*",)

    def __str__(self) -> str:
        who = "everyone" if self.subject_type is SubjectType.EVERYONE else f"{self.subject_type} {self.subject}"
        return (
            f"rule {self.id}: {self.effect} {who} {','.join(self.actions)} kinds={','.join(self.kinds)} "
            f"namespaces={','.join(self.namespaces)} stacks={','.join(self.stacks)}"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: Rule | None  # the rule that decided; None when nothing matched (denied by default)
    reason: str
    matched: tuple[Rule, ...] = field(default=())  # every rule that matched, for `acl check`


def make_rule(
    *,
    id: int,
    effect: str,
    subject_type: str,
    subject: str,
    actions: Sequence[str],
    kinds: Sequence[str] = ("*",),
    namespaces: Sequence[str] = ("*",),
    stacks: Sequence[str] = ("*",),
) -> Rule:
    """A rule from plain values, checked: raises ``RuleError`` saying which value is wrong."""
    try:
        effect_value = Effect(effect)
    except ValueError:
        raise RuleError(f"effect must be allow or deny, not {effect!r}") from None
    try:
        subject_value = SubjectType(subject_type)
    except ValueError:
        raise RuleError(f"subject_type must be user, group or everyone, not {subject_type!r}") from None
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise RuleError(f"unknown action {unknown[0]!r} (known: {', '.join(ACTIONS)})")
    for label, values in (("actions", actions), ("kinds", kinds), ("namespaces", namespaces), ("stacks", stacks)):
        if not values or any(not v for v in values):
            raise RuleError(f"{label}: give at least one non-empty value (* for all)")
    if subject_value is not SubjectType.EVERYONE and (not subject or subject == "*"):
        raise RuleError(f"a {subject_value} rule names its {subject_value} (use everyone for all)")
    return Rule(
        id=id,
        effect=effect_value,
        subject_type=subject_value,
        subject="*" if subject_value is SubjectType.EVERYONE else subject,
        actions=tuple(actions),
        kinds=tuple(kinds),
        namespaces=tuple(namespaces),
        stacks=tuple(stacks),
    )


def _kind_names(kind: str) -> tuple[str, ...]:
    """The names a kind goes by in a rule, lower-case: its short and its manifest name (or the text as given)."""
    known = KIND_ALIASES.get(kind.lower())
    return (known.short, known.value.lower()) if known is not None else (kind.lower(),)


def _globs_match(globs: Iterable[str], value: str | None, *, kind: bool = False) -> bool:
    if value is None:
        return "*" in globs
    candidates = _kind_names(value) if kind else (value,)
    return any(fnmatchcase(c, g.lower() if kind else g) for g in globs for c in candidates)


def applies_to(rule: Rule, identity: Identity) -> bool:
    if rule.subject_type is SubjectType.EVERYONE:
        return True
    if rule.subject_type is SubjectType.USER:
        return rule.subject == identity.name
    return rule.subject in identity.groups


def matches(rule: Rule, identity: Identity, action: str, target: Target) -> bool:
    return (
        applies_to(rule, identity)
        and action in rule.actions
        and _globs_match(rule.kinds, target.kind, kind=True)
        and _globs_match(rule.namespaces, target.namespace)
        and _globs_match(rule.stacks, target.stack)
    )


def decide(rules: Iterable[Rule], identity: Identity, action: str, target: Target) -> Decision:
    """The built-in verdict: the first matching deny (by rule id) if any, else the first matching allow, else
    denied by default."""
    matched = tuple(sorted((r for r in rules if matches(r, identity, action, target)), key=lambda r: r.id))
    for rule in matched:
        if rule.effect is Effect.DENY:
            return Decision(False, rule, f"denied by {rule}", matched)
    for rule in matched:
        return Decision(True, rule, f"allowed by {rule}", matched)
    return Decision(False, None, f"denied: no rule allows {identity.name} to {action} {target}", matched)
