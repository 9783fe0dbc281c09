"""``nebctl validate`` and ``nebctl schema``: the commands that check manifests without touching anything.

Both work without a database or drivers. ``validate`` prints every diagnostic of ``schemas.loading`` and
``schemas.validation``; ``schema`` prints or writes the JSON Schemas of ``schemas.jsonschema``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from nebctl.cli.app import CliError
from nebctl.core.keys import parse_kind
from nebctl.schemas import jsonschema
from nebctl.schemas.loading import ManifestError, ManifestSet, load_paths


def load_manifests(paths: Sequence[str], cache: Path | None = None) -> ManifestSet:
    """Load and validate ``paths`` for any command; on a problem, print every diagnostic on stderr and exit 1.

    With ``cache`` (a directory), files loaded before are not parsed again (``schemas.caching``); the result and
    the diagnostics are the same. Kept in this light module (no database, drivers or planner imports) so
    ``validate`` stays fast.
    """
    try:
        if cache is not None:
            from nebctl.schemas.caching import load_paths_cached

            return load_paths_cached(paths, cache)
        return load_paths(paths)
    except ManifestError as error:
        for diagnostic in error.diagnostics:
            click.echo(str(diagnostic), err=True)
        count = len(error.diagnostics)
        if not error.complete:
            count -= 1  # the last line says where the reading stopped; it is not a problem of the manifests
            raise CliError(f"{count} problems shown, and the reading stopped there; nothing was changed") from None
        raise CliError(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed") from None


@click.command("validate")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="PATH",
    type=click.Path(),
    help="Manifest file or directory (read recursively: *.yaml, *.yml); repeat for several.",
)
def validate_command(paths: tuple[str, ...]) -> None:
    """Check manifests: fields, types, references, duplicates, cycles, addresses.

    Exits 0 when every manifest is valid (with a summary of what was found), 1 otherwise, with every problem
    on stderr as FILE:LINE:COL: Kind/name: message.
    """
    manifests = load_manifests(paths)
    counts = ", ".join(f"{number} {kind.short}" for kind, number in manifests.counts().items())
    files = len(manifests.files)
    click.echo(
        f"valid: {len(manifests)} resource{'s' if len(manifests) != 1 else ''} "
        f"in {files} file{'s' if files != 1 else ''} ({counts or 'none'})"
    )


@click.command("schema")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write one schema per kind and the combined manifest.schema.json into DIR instead of printing.",
)
@click.option("--kind", "kind_text", metavar="KIND", help="Print only this kind's schema (vm, network, Host...).")
def schema_command(out_dir: Path | None, kind_text: str | None) -> None:
    """Print the JSON Schema of the manifests (for editors such as yaml-language-server).

    Without --out, prints the combined schema (or one kind's with --kind) on stdout.
    """
    if out_dir is not None:
        if kind_text is not None:
            raise CliError("--kind and --out do not go together: --out writes every kind")
        try:
            written = jsonschema.write_schemas(out_dir)
        except OSError as error:
            raise CliError(f"{out_dir}: cannot write schemas: {error.strerror or error}") from error
        for path in written:
            click.echo(str(path))
        return
    if kind_text is None:
        click.echo(jsonschema.render(jsonschema.combined_schema()), nl=False)
        return
    try:
        kind = parse_kind(kind_text)
    except ValueError as error:
        raise CliError(str(error)) from None
    click.echo(jsonschema.render(jsonschema.kind_schema(kind)), nl=False)


commands: list[click.Command] = [validate_command, schema_command]
