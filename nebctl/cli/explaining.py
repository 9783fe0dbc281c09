"""``nebctl explain KIND[.FIELD]``: the field reference of a kind, as kubectl's ``explain`` gives it.

The text comes from ``schemas.explaining``, which reads the same JSON Schemas that ``nebctl schema`` writes for
editors. Needs no database.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from nebctl.cli.app import CliError


def _complete_target(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Kinds, then their fields: ``vm.sp<TAB>`` -> ``vm.spec``; silent on anything it cannot read."""
    from nebctl.core.keys import SHORT_NAMES
    from nebctl.schemas.explaining import ExplainError, children, parse_target, resolve

    if "." not in incomplete:
        return [CompletionItem(s) for s in sorted(SHORT_NAMES.values()) if s.startswith(incomplete.lower())]
    head, _, last = incomplete.rpartition(".")
    try:
        kind, path = parse_target(head)
        node, _followed, defs = resolve(kind, path)
    except ExplainError:
        return []
    return [CompletionItem(f"{head}.{name}") for name in children(node, defs) if name.startswith(last)]


@click.command("explain")
@click.argument("target", metavar="KIND[.FIELD]", shell_complete=_complete_target)
def explain_command(target: str) -> None:
    """The fields of a kind, or of one field, with their types and descriptions.

    \b
    nebctl explain vm                   the fields of a VirtualMachine document
    nebctl explain vm.spec.disks        one field and the fields under it
    nebctl explain vm.memory            a field of the spec (spec. may be left out)
    """
    from nebctl.schemas.explaining import ExplainError, explain

    try:
        click.echo(explain(target), nl=False)
    except ExplainError as error:
        raise CliError(str(error)) from None


commands: list[click.Command] = [explain_command]
