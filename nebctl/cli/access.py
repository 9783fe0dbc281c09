"""``nebctl user``, ``group``, ``token`` and ``acl``: the API's identities and access rules, administered directly
against the database (whoever can open the database is its administrator).

Passwords are read from a hidden prompt or, with ``--password-stdin``, from the first line of stdin; never from
the command line, where other users could read them in the process list. A token's secret is printed once, at
creation, and never again (only its digest is stored). ``acl check`` says which rule decided, as the API would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.database import open_store
from nebctl.core.access import ACTIONS, Identity, RuleError, Target
from nebctl.core.keys import ResourceKey
from nebctl.core.quantities import QuantityError, parse_duration
from nebctl.database.errors import DatabaseError, NotFound
from nebctl.database.records import UserRecord
from nebctl.database.store import Store

if TYPE_CHECKING:
    from nebctl.controller.access.passwords import PasswordHasher

NAME_LIMIT = 128


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)
    if not password:
        raise CliError("the password is empty")
    if len(password) > 4096:
        raise CliError("the password is longer than 4096 characters")
    return password


def _hasher(app: AppContext) -> PasswordHasher:
    from nebctl.controller.access.passwords import PasswordHasher

    return PasswordHasher(app.settings.access.passwords)


def _check_name(what: str, name: str) -> str:
    if not name or len(name) > NAME_LIMIT or any(c.isspace() or c in ",:/" for c in name):
        raise CliError(f"{what} {name!r}: give 1 to {NAME_LIMIT} characters, without spaces, commas, colons or /")
    return name


def _user(store: Store, name: str) -> UserRecord:
    user = store.get_user(name)
    if user is None:
        raise CliError(f"no user {name!r}")
    return user


def _print_rows(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- users --------------------------------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Users of the API: add, list, change passwords, disable, delete."""


@user_group.command("add")
@click.argument("name")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group of the user (repeatable).")
@click.option(
    "--driver",
    type=click.Choice(["builtin", "exec"]),
    default="builtin",
    show_default=True,
    help="How the user logs in: a password kept here (argon2id), or the access.exec_program.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_app
def user_add(app: AppContext, name: str, groups: tuple[str, ...], driver: str, password_stdin: bool) -> None:
    """Add user NAME (a builtin user is asked for a password)."""
    store = open_store(app)
    _check_name("user", name)
    for group in groups:
        _check_name("group", group)
    password_hash = _hasher(app).hash(_read_password(password_stdin)) if driver == "builtin" else None
    try:
        store.create_user(name, password_hash=password_hash, groups=list(dict.fromkeys(groups)), driver=driver)
    except DatabaseError as error:
        raise CliError(str(error)) from None
    click.echo(f"user {name} added ({driver})")


@user_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def user_list(app: AppContext, output: str) -> None:
    """Users, their driver, groups and whether they may log in."""
    users = open_store(app).list_users()
    if output == "json":
        document = [
            {
                "name": u.name,
                "driver": u.driver,
                "groups": list(u.groups),
                "enabled": u.enabled,
                "has_password": u.password_hash is not None,
                "created_at": _when(u.created_at),
            }
            for u in users
        ]
        click.echo(json.dumps(document, indent=2))
        return
    rows = [
        (u.name, u.driver, ",".join(u.groups) or "-", "yes" if u.enabled else "no", _when(u.created_at)) for u in users
    ]
    _print_rows(("NAME", "DRIVER", "GROUPS", "ENABLED", "CREATED"), rows)


@user_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_app
def user_passwd(app: AppContext, name: str, password_stdin: bool) -> None:
    """Set the password of builtin user NAME."""
    store = open_store(app)
    user = _user(store, name)
    if user.driver != "builtin":
        raise CliError(f"user {name} logs in through the {user.driver} driver: it has no password here")
    store.update_user(name, password_hash=_hasher(app).hash(_read_password(password_stdin)))
    click.echo(f"password of {name} changed")


def _set_enabled(app: AppContext, name: str, enabled: bool) -> None:
    store = open_store(app)
    _user(store, name)
    store.update_user(name, enabled=enabled)
    click.echo(f"user {name} {'enabled' if enabled else 'disabled'}")


@user_group.command("disable")
@click.argument("name")
@pass_app
def user_disable(app: AppContext, name: str) -> None:
    """Refuse every login and token of NAME, keeping the user."""
    _set_enabled(app, name, False)


@user_group.command("enable")
@click.argument("name")
@pass_app
def user_enable(app: AppContext, name: str) -> None:
    """Let NAME log in again."""
    _set_enabled(app, name, True)


@user_group.command("delete")
@click.argument("name")
@pass_app
def user_delete(app: AppContext, name: str) -> None:
    """Delete NAME and its tokens."""
    if not open_store(app).delete_user(name):
        raise CliError(f"no user {name!r}")
    click.echo(f"user {name} deleted")


# --- groups -------------------------------------------------------------------------------------------------------


@click.group("group")
def group_group() -> None:
    """Groups of users (each user lists its groups): list, add members, remove members."""


@group_group.command("list")
@pass_app
def group_list(app: AppContext) -> None:
    """Every group a user, a rule or a quota names, with its members."""
    store = open_store(app)
    members: dict[str, list[str]] = {}
    for user in store.list_users():
        for group in user.groups:
            members.setdefault(group, []).append(user.name)
    for rule in store.list_access_rules():
        if rule.subject_type == "group":
            members.setdefault(rule.subject, [])
    for quota in store.list_quotas():
        if quota.scope_type == "group":
            members.setdefault(quota.scope, [])
    _print_rows(("GROUP", "MEMBERS"), [(g, ",".join(sorted(m)) or "-") for g, m in sorted(members.items())])


@group_group.command("add")
@click.argument("group")
@click.argument("users", nargs=-1, required=True)
@pass_app
def group_add(app: AppContext, group: str, users: tuple[str, ...]) -> None:
    """Add USERS to GROUP."""
    store = open_store(app)
    _check_name("group", group)
    records = [_user(store, name) for name in users]  # all checked before any is changed
    for user in records:
        if group not in user.groups:
            store.update_user(user.name, groups=[*user.groups, group])
    click.echo(f"group {group}: added {', '.join(users)}")


@group_group.command("remove")
@click.argument("group")
@click.argument("users", nargs=-1, required=True)
@pass_app
def group_remove(app: AppContext, group: str, users: tuple[str, ...]) -> None:
    """Remove USERS from GROUP."""
    store = open_store(app)
    records = [_user(store, name) for name in users]
    for user in records:
        store.update_user(user.name, groups=[g for g in user.groups if g != group])
    click.echo(f"group {group}: removed {', '.join(users)}")


# --- tokens -------------------------------------------------------------------------------------------------------


@click.group("token")
def token_group() -> None:
    """API bearer tokens: create (shown once), list, revoke."""


@token_group.command("create")
@click.argument("user")
@click.option("--name", required=True, metavar="NAME", help="What the token is for (ci, laptop...).")
@click.option("--expires", metavar="DURATION", help="Lifetime (30d, 12h); default: never expires.")
@pass_app
def token_create(app: AppContext, user: str, name: str, expires: str | None) -> None:
    """Create a token for USER and print its secret (once: it cannot be shown again)."""
    store = open_store(app)
    _user(store, user)
    expires_at = None
    if expires is not None:
        try:
            seconds = parse_duration(expires)
        except QuantityError as error:
            raise CliError(f"--expires: {error}") from None
        if seconds <= 0:
            raise CliError("--expires: must be more than zero")
        expires_at = store.now() + timedelta(seconds=seconds)
    secret, record = store.create_token(user, name=name[:NAME_LIMIT], expires_at=expires_at)
    click.echo(secret)
    click.echo(f"token {record.id} ({record.name}) of {user}, expires {_when(record.expires_at)}", err=True)


@token_group.command("list")
@click.option("--user", metavar="USER", help="Only the tokens of USER.")
@pass_app
def token_list(app: AppContext, user: str | None) -> None:
    """Tokens (never their secrets): owner, name, creation, expiry, last use."""
    tokens = open_store(app).list_tokens(user=user)
    rows = [
        (str(t.id), t.user, t.name, _when(t.created_at), _when(t.expires_at), _when(t.last_used_at)) for t in tokens
    ]
    _print_rows(("ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED"), rows)


@token_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@pass_app
def token_revoke(app: AppContext, token_id: int) -> None:
    """Revoke token ID at once."""
    if not open_store(app).revoke_token(token_id):
        raise CliError(f"no token {token_id}")
    click.echo(f"token {token_id} revoked")


# --- access rules -------------------------------------------------------------------------------------------------


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.group("acl")
def acl_group() -> None:
    """Access rules of the API: nothing is allowed unless a rule allows it, and a deny wins."""


@acl_group.command("add")
@click.argument("effect", type=click.Choice(["allow", "deny"]))
@click.option("--user", "user", metavar="USER", help="The rule is about this user.")
@click.option("--group", "group", metavar="GROUP", help="The rule is about the members of this group.")
@click.option("--everyone", is_flag=True, help="The rule is about every authenticated user.")
@click.option(
    "--action", "actions", multiple=True, required=True, metavar="ACTION", help=f"One of {', '.join(ACTIONS)}."
)
@click.option("--kind", "kinds", multiple=True, metavar="GLOB", help="Kinds (vm, net*...); default all.")
@click.option("--namespace", "namespaces", multiple=True, metavar="GLOB", help="Namespaces; default all.")
@click.option("--stack", "stacks", multiple=True, metavar="GLOB", help="Stacks; default all.")
@pass_app
def acl_add(
    app: AppContext,
    *,
    effect: str,
    user: str | None,
    group: str | None,
    everyone: bool,
    actions: tuple[str, ...],
    kinds: tuple[str, ...],
    namespaces: tuple[str, ...],
    stacks: tuple[str, ...],
) -> None:
    """Add a rule: allow or deny a subject some actions on kinds, namespaces and stacks (comma lists, globs)."""
    subjects = [(t, s) for t, s in (("user", user), ("group", group), ("everyone", "*" if everyone else None)) if s]
    if len(subjects) != 1:
        raise CliError("name exactly one subject: --user USER, --group GROUP or --everyone")
    subject_type, subject = subjects[0]
    try:
        rule = open_store(app).add_access_rule(
            effect=effect,
            subject_type=subject_type,
            subject=subject,
            actions=_split(actions),
            kinds=_split(kinds) or ["*"],
            namespaces=_split(namespaces) or ["*"],
            stacks=_split(stacks) or ["*"],
        )
    except RuleError as error:
        raise CliError(str(error)) from None
    click.echo(f"rule {rule.id} added")


@acl_group.command("list")
@pass_app
def acl_list(app: AppContext) -> None:
    """Every rule, by id."""
    rows = [
        (
            str(r.id),
            r.effect,
            "everyone" if r.subject_type == "everyone" else f"{r.subject_type}:{r.subject}",
            ",".join(r.actions),
            ",".join(r.kinds),
            ",".join(r.namespaces),
            ",".join(r.stacks),
        )
        for r in open_store(app).list_access_rules()
    ]
    _print_rows(("ID", "EFFECT", "SUBJECT", "ACTIONS", "KINDS", "NAMESPACES", "STACKS"), rows)


@acl_group.command("remove")
@click.argument("rule_id", metavar="ID", type=int)
@pass_app
def acl_remove(app: AppContext, rule_id: int) -> None:
    """Remove rule ID."""
    if not open_store(app).delete_access_rule(rule_id):
        raise CliError(f"no rule {rule_id}")
    click.echo(f"rule {rule_id} removed")


@acl_group.command("check")
@click.argument("user")
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("resource", metavar="KIND/NAME")
@click.option("--namespace", metavar="NS", help="The resource's namespace (or write NS/KIND/NAME).")
@click.option("--stack", metavar="STACK", help="Its stack (default: the stack of its record, if any).")
@pass_app
def acl_check(
    app: AppContext, *, user: str, action: str, resource: str, namespace: str | None, stack: str | None
) -> None:
    """Whether USER may do ACTION on KIND/NAME, and which rule decided. Exits 0 if allowed, 1 if denied."""
    from nebctl.controller.access import Authorizer

    store = open_store(app)
    record = store.get_user(user)
    identity = Identity(user, record.groups, record.driver) if record is not None else Identity(user)
    try:
        key = ResourceKey.parse(resource, namespace=namespace or "default")
    except ValueError as error:
        raise CliError(f"{resource}: {error}") from None
    if stack is None:
        try:
            found = store.get_resource(key)
        except NotFound:
            found = None
        stack = found.stack if found is not None else None
    target = Target(kind=key.kind.short, namespace=key.namespace, name=key.name, stack=stack)
    decision = Authorizer(store, app.settings.access).authorize(identity, action, target)
    if record is None:
        click.echo(f"note: there is no user {user!r}; only rules about {user} or everyone apply", err=True)
    groups = f" (groups: {', '.join(identity.groups)})" if identity.groups else ""
    click.echo(f"{user}{groups} {action} {target}: {'ALLOWED' if decision.allowed else 'DENIED'}")
    click.echo(f"  {decision.reason}")
    for rule in decision.matched:
        if rule is not decision.rule:
            click.echo(f"  also matched: {rule}")
    sys.exit(0 if decision.allowed else 1)


commands: list[click.Command] = [user_group, group_group, token_group, acl_group]
