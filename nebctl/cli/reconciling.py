"""``nebctl diff``, ``nebctl apply`` and ``nebctl destroy``: plan, confirm, execute, report.

Exit codes: diff 0 no changes / 2 changes / 1 error; apply and destroy 0 converged / 1 failed
or partial / 3 lock not obtained. The lock is held from planning to the end of execution, so the plan that runs
is the plan that was shown. Ctrl-C once stops starting actions and waits for the running ones; twice cancels
them. A saved plan (``diff --out``) is applied only if nothing moved since it was made.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.completing import complete_reference
from nebctl.cli.database import open_store
from nebctl.cli.keeping import Keeping, early_options
from nebctl.cli.session import (
    cache_directory,
    check_stack,
    default_stack,
    open_controller,
    parse_keys,
)
from nebctl.cli.validating import load_manifests
from nebctl.controller.applying import ApplyResult, PlannedApply, PlanOptions
from nebctl.controller.applying.executing import Change, Outcome
from nebctl.controller.planning import PlanError
from nebctl.controller.reaping import ProgramRecorder, end_orphaned_programs
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.quantities import QuantityError, parse_duration
from nebctl.database.engines import describe_error
from nebctl.database.errors import DatabaseError, LockNotObtained
from nebctl.database.records import RevisionRecord
from nebctl.schemas.loading import ManifestSet
from nebctl.schemas.models import AnyManifest

PROGRESS_LINE_INTERVAL = 5.0  # seconds between two progress lines of one transfer, off a terminal
EXIT_CHANGES = 2
EXIT_LOCKED = 3
PLANFILE_FORMAT = "nebctl-plan/1"


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _paths_option(required: bool = True) -> Decorator:
    return click.option(
        "-f",
        "--filename",
        "paths",
        multiple=True,
        required=required,
        metavar="PATH",
        type=click.Path(),
        help="Manifest file or directory (read recursively); repeat for several.",
    )


def _selection_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--stack", metavar="NAME", help="Stack owning the resources (default: name of the first -f)."),
            click.option("--prune", is_flag=True, default=None, help="Delete resources removed from the manifests."),
            click.option(
                "--recover",
                "recover_first",
                is_flag=True,
                help="First rebuild the records of live objects the database lacks (nebctl recover).",
            ),
            click.option(
                "--target",
                "targets",
                multiple=True,
                metavar="KIND/NAME",
                help="Only this resource and what it needs.",
                shell_complete=complete_reference,
            ),
            click.option(
                "--exclude",
                "excludes",
                multiple=True,
                metavar="KIND/NAME",
                help="Leave this resource (and dependents) alone.",
                shell_complete=complete_reference,
            ),
        ]
    ):
        function = option(function)
    return function


def _options(
    app: AppContext,
    *,
    paths: Sequence[str],
    stack: str | None,
    prune: bool | None,
    targets: Sequence[str],
    excludes: Sequence[str],
) -> PlanOptions:
    return PlanOptions(
        stack=check_stack(stack or default_stack(paths)),
        prune=app.settings.prune if prune is None else prune,
        targets=parse_keys(targets, "--target"),
        excludes=parse_keys(excludes, "--exclude"),
    )


def _load(app: AppContext, paths: Sequence[str]) -> ManifestSet:
    with app.long_lived():
        return load_manifests(paths, cache_directory(app))


def _make_plan(app: AppContext, manifests: ManifestSet, options: PlanOptions) -> PlannedApply:
    controller = open_controller(app)
    try:
        with app.long_lived():
            return controller.plan(manifests.documents, options, manifests.stamps)
    except PlanError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        if error.details and app.verbosity > 0:
            click.echo("\n".join(error.details), err=True)
        elif error.details:
            click.echo("(-v says more: every host's reason)", err=True)
        raise CliError("the plan cannot be made; nothing was changed") from None
    except DatabaseError as error:
        raise CliError(str(error)) from error


def _color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


@click.command("diff")
@_paths_option()
@_selection_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLANFILE",
    help="Save the plan (with the fingerprint of the state it was made from) for apply --plan.",
)
@click.option("--graph", type=click.Choice(["dot"]), help="Print the action graph instead (Graphviz).")
@pass_app
def diff_command(
    app: AppContext,
    *,
    paths: tuple[str, ...],
    stack: str | None,
    prune: bool | None,
    recover_first: bool,
    targets: tuple[str, ...],
    excludes: tuple[str, ...],
    output: str,
    out_file: Path | None,
    graph: str | None,
) -> None:
    """Show what apply would do, without doing it.

    Exits 0 when there is nothing to do, 2 when there are changes, 1 on an error.
    """
    from nebctl import rendering

    selection = functools.partial(
        _options, app, paths=paths, stack=stack, prune=prune, targets=targets, excludes=excludes
    )
    keeping = Keeping(
        app, paths, early_options(selection), enabled=not recover_first and out_file is None and graph is None
    )
    kept = keeping.find(fingerprinted=output == "json")  # the JSON document shows the fingerprint
    made: tuple[PlannedApply, ManifestSet] | None = None
    if kept is not None:
        plan = kept
    else:
        manifests = _load(app, paths)
        options = selection()
        if recover_first:
            _recover_first(app, dict(manifests.documents), options.stack)
        planned = _make_plan(app, manifests, options)
        made = planned, manifests
        plan = planned.plan
    if graph == "dot":
        click.echo(rendering.render_dot(plan), nl=False)
    elif output == "json":
        click.echo(json.dumps(rendering.render_json(plan), indent=2))
    else:
        click.echo(rendering.render_text(plan, color=_color()), nl=False)
    if made is not None:  # once shown: with its fingerprint if the output told it
        keeping.keep(made[0], made[1].documents)
    if out_file is not None:
        document = {
            "format": PLANFILE_FORMAT,
            "stack": plan.stack,
            "fingerprint": plan.fingerprint,
            "paths": [str(Path(p).resolve()) for p in paths],
            "prune": options.prune,
            "targets": sorted(map(str, options.targets)),
            "excludes": sorted(map(str, options.excludes)),
            "plan": rendering.render_json(plan),
        }
        out_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        click.echo(f"Saved the plan to {out_file}; apply it with: nebctl apply --plan {out_file}", err=True)
    sys.exit(EXIT_CHANGES if plan.has_changes else 0)


def _recover_first(
    app: AppContext, documents: dict[ResourceKey, AnyManifest], stack: str, *, lock_timeout: float | None = None
) -> None:
    from nebctl.cli.recovering import recover

    if not recover(app, documents, stack=stack, lock_timeout=lock_timeout):
        raise CliError("some records could not be rebuilt (see above); nothing was planned")


def _read_planfile(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(f"{path}: cannot read the plan file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != PLANFILE_FORMAT:
        raise CliError(f"{path}: not a nebctl plan file (expected format {PLANFILE_FORMAT})")
    return document


def _lock_timeout(app: AppContext, text: str | None) -> float:
    if text is None:
        return app.settings.lock_timeout
    try:
        return parse_duration(text)
    except QuantityError as error:
        raise CliError(f"--lock-timeout: {error}") from None


@contextmanager
def writer_lock(app: AppContext, *, stack: str, command: str, timeout: float) -> Iterator[None]:
    store = open_store(app)
    try:
        lease = store.acquire_lock(holder=f"nebctl {command} (stack {stack})", timeout=timeout, ttl=60.0)
    except LockNotObtained as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_LOCKED)
    except DatabaseError as error:
        raise CliError(str(error)) from error
    lease.start_renewing()
    try:
        # Programs that a dead writer started (an exec driver's, a hook) and that still run are ended now.
        end_orphaned_programs(store)
    except DatabaseError as error:
        with contextlib.suppress(Exception):
            lease.release()
        raise CliError(str(error)) from error
    failed = True
    try:
        yield
        failed = False
    finally:
        try:
            lease.release()
        except Exception as error:  # the database failed: what went wrong before (if anything) is the news
            if not failed:
                click.echo(
                    f"warning: the writers' lock could not be released ({describe_error(error)}); the next writer "
                    "on this host takes it over, since this process will have ended",
                    err=True,
                )


def _confirm(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"refusing to {what} without --yes: standard input is not a terminal")
    answer = click.prompt(f"\nDo you want to {what}? Only 'yes' will be accepted", default="", show_default=False)
    if answer.strip() != "yes":
        raise CliError(f"{what} cancelled; nothing was changed")


class _Interrupts:
    """First Ctrl-C (or SIGTERM): stop starting actions. Second Ctrl-C: cancel the running ones."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.cancel = threading.Event()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop.is_set():
            self.stop.set()
            click.echo(
                "\nInterrupted: no new actions will start; waiting for the running ones "
                "(interrupt again to cancel them).",
                err=True,
            )
        else:
            self.cancel.set()
            click.echo("\nCancelling the running actions.", err=True)

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Progress:
    """Progress of an apply: a live bar on a terminal, one plain line per finished action elsewhere."""

    def __init__(self, total: int, *, terminal: bool) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.running: set[str] = set()
        self.terminal = terminal
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._downloads: dict[str, Any] = {}  # action id -> its transfer's task on the bar
        self._last_line: dict[str, float] = {}  # action id -> when its last progress line was printed

    def __enter__(self) -> _Progress:
        if self.terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("applying", total=self.total, status="", count=f"0/{self.total}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, changes: Sequence[Change]) -> None:
        for change in changes:
            action = change.action
            if change.state is Outcome.RUNNING:
                self.running.add(action.id)
                progress = (change.result or {}).get("progress")
                if isinstance(progress, dict):
                    self._transfer(action.id, progress)
                continue
            self.running.discard(action.id)
            self._transfer_done(action.id)
            if change.state in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED, Outcome.CANCELLED):
                self.done += 1
                self.failed += change.state is Outcome.FAILED
                if not self.terminal:
                    elapsed = time.monotonic() - self.started
                    detail = f": {change.error}" if change.error else ""
                    if change.blocked_by:
                        detail = f" (blocked by {change.blocked_by})"
                    click.echo(f"[{self.done}/{self.total}] {elapsed:7.2f}s {action.id} {change.state.value}{detail}")
            elif change.state is Outcome.PENDING and change.retry_in is not None and not self.terminal:
                click.echo(f"           {action.id} will retry in {change.retry_in:.1f}s: {change.error}")
        if self._bar is not None:
            status = f"running {len(self.running)}" + (f", [red]failed {self.failed}[/red]" if self.failed else "")
            self._bar.update(self._task, completed=self.done, status=status, count=f"{self.done}/{self.total}")

    def _transfer(self, action_id: str, progress: dict[str, Any]) -> None:
        """A download's (or upload's) bar, with bytes, rate and time left, on a terminal; elsewhere a line
        every few seconds, so that logs show a long download moving."""
        from nebctl.drivers.downloads.progress import human_bytes

        done, total = int(progress.get("bytes") or 0), progress.get("total")
        rate, eta = progress.get("rate") or 0, progress.get("eta")
        figures = f"{human_bytes(done)}" + (f"/{human_bytes(total)}" if total else "")
        status = f"{human_bytes(rate)}/s" + (f", ETA {eta:.0f}s" if eta is not None else "")
        if self._bar is not None:
            label = f"{progress.get('phase', 'download')} {action_id}"
            task = self._downloads.get(action_id)
            if task is None:
                task = self._bar.add_task(label, total=total, status=status, count=figures)
                self._downloads[action_id] = task
            # One bar per action: the download's, then (libvirt) the upload's into the volume.
            self._bar.update(task, description=label, completed=done, total=total, status=status, count=figures)
            return
        now = time.monotonic()
        if now - self._last_line.get(action_id, float("-inf")) >= PROGRESS_LINE_INTERVAL:
            self._last_line[action_id] = now
            click.echo(f"           {action_id} {progress.get('phase', 'download')}: {figures} at {status}")

    def _transfer_done(self, action_id: str) -> None:
        self._last_line.pop(action_id, None)
        task = self._downloads.pop(action_id, None)
        if task is not None and self._bar is not None:
            self._bar.remove_task(task)


def _report(result: ApplyResult, verb: str) -> None:
    report = result.report
    succeeded = report.with_state(Outcome.SUCCEEDED)
    failed = report.with_state(Outcome.FAILED)
    skipped = report.with_state(Outcome.SKIPPED)
    cancelled = report.with_state(Outcome.CANCELLED)
    if failed:
        click.echo("\nFailed:", err=True)
        for item in failed:
            click.echo(f"  {item.action.id}: {item.error}", err=True)
    if skipped:
        click.echo("\nSkipped (a dependency failed):", err=True)
        for item in skipped:
            click.echo(f"  {item.action.id} (blocked by {item.blocked_by})", err=True)
    if cancelled:
        click.echo(
            f"\n{len(cancelled)} action(s) did not run: the {verb} was interrupted; run it again to finish.", err=True
        )
    parts = [f"{len(succeeded)} succeeded"]
    if failed:
        parts.append(f"{len(failed)} failed")
    if skipped:
        parts.append(f"{len(skipped)} skipped")
    if cancelled:
        parts.append(f"{len(cancelled)} not run")
    title = f"{verb.capitalize()} complete" if report.ok else f"{verb.capitalize()} {result.state}"
    click.echo(f"\n{title}! Actions: {', '.join(parts)} in {report.wall_time:.1f}s (apply #{result.apply_id}).")


def _run_apply(
    app: AppContext,
    manifests: ManifestSet | Callable[[], ManifestSet],
    options: PlanOptions,
    *,
    yes: bool,
    parallelism: int | None,
    lock_timeout: str | None,
    verb: str,
    saved: dict[str, Any] | None = None,
    revision: Callable[[], RevisionRecord | None] | None = None,
    keeping: Keeping | None = None,
) -> None:
    """Plan and apply under the writers' lock. ``manifests`` may be a callable loading them, for a run that
    first looks for a kept plan (``keeping``) and loads the manifests only if it finds none."""
    with writer_lock(app, stack=options.stack, command=verb, timeout=_lock_timeout(app, lock_timeout)):
        try:
            if keeping is not None and _show_kept(app, options, keeping):
                return
            if callable(manifests):
                manifests = manifests()
            _plan_and_apply(
                app,
                manifests,
                options,
                yes=yes,
                parallelism=parallelism,
                verb=verb,
                saved=saved,
                revision=revision() if revision is not None else None,
                keeping=keeping,
            )
        except DatabaseError as error:
            # One line, and no traceback: every finished action is journalled, so the next run resumes.
            raise CliError(
                f"the state database failed during the {verb}: {error}; the journal keeps what was done; "
                f"run {verb} again when it is writable"
            ) from error


def _show_kept(app: AppContext, options: PlanOptions, keeping: Keeping) -> bool:
    """Print the kept plan, as an apply that finds nothing to do prints its plan, when one is found for this
    run's inputs and no apply of the stack is left unfinished (which the apply would resume). Under the lock."""
    from nebctl import rendering

    if open_store(app).last_unfinished_apply(options.stack) is not None:
        return False
    kept = keeping.find()
    if kept is None:
        return False
    click.echo(rendering.render_text(kept, color=_color()), nl=False)
    return True


def _plan_and_apply(
    app: AppContext,
    manifests: ManifestSet,
    options: PlanOptions,
    *,
    yes: bool,
    parallelism: int | None,
    verb: str,
    saved: dict[str, Any] | None,
    revision: RevisionRecord | None,
    keeping: Keeping | None = None,
) -> None:
    from nebctl import rendering

    planned = _make_plan(app, manifests, options)
    if keeping is not None:
        keeping.keep(planned, manifests.documents)
    plan = planned.plan
    if saved is not None and saved.get("fingerprint") != plan.fingerprint:
        raise CliError(
            "the saved plan is stale: the manifests or the infrastructure changed since it was made; "
            "run nebctl diff --out again"
        )
    controller = open_controller(app)
    unfinished = controller.store.last_unfinished_apply(options.stack)
    click.echo(rendering.render_text(plan, color=_color()), nl=False)
    if not plan.has_changes and unfinished is None:
        controller.reseal(planned)
        return
    if plan.has_changes:
        _confirm(yes or saved is not None, f"{verb} these changes" if verb == "apply" else "destroy everything listed")
    interrupts = _Interrupts()

    def resumed(apply_id: int, done: int, total: int) -> None:
        click.echo(
            f"Resuming interrupted apply #{apply_id} ({done} of {total} actions had finished); "
            "the state was observed again and the plan covers what remains."
        )

    with interrupts.installed(), _Progress(len(plan.actions), terminal=_color(sys.stderr)) as progress:
        result = controller.apply(
            planned,
            parallelism=parallelism,
            revision=revision,
            stop=interrupts.stop,
            cancel=interrupts.cancel,
            on_change=progress.update,
            on_resume=resumed,
        )
    _report(result, verb)
    if not result.report.ok:
        sys.exit(1)


@click.command("apply")
@_paths_option(required=False)
@_selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required when stdin is not a terminal).")
@click.option("--parallelism", type=click.IntRange(1, 1024), metavar="N", help="Actions run at once (default 16).")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="PLANFILE",
    help="Apply a plan saved by diff --out; refused if anything moved since.",
)
@click.option("--lock-timeout", metavar="DURATION", help="How long to wait for another writer (e.g. 30s). Default: 0.")
@pass_app
def apply_command(
    app: AppContext,
    *,
    paths: tuple[str, ...],
    stack: str | None,
    prune: bool | None,
    recover_first: bool,
    targets: tuple[str, ...],
    excludes: tuple[str, ...],
    yes: bool,
    parallelism: int | None,
    plan_file: Path | None,
    lock_timeout: str | None,
) -> None:
    """Make the infrastructure match the manifests.

    Shows the plan, asks for confirmation on a terminal, then executes it in parallel. Exits 0 when everything
    converged, 1 when something failed (the summary says what, why, and what it blocked), 3 when another writer
    holds the lock.
    """
    saved = None
    if plan_file is not None:
        saved = _read_planfile(plan_file)
        paths = paths or tuple(saved.get("paths", ()))
        stack = stack or saved.get("stack")
        prune = saved.get("prune") if prune is None else prune
        targets = targets or tuple(saved.get("targets", ()))
        excludes = excludes or tuple(saved.get("excludes", ()))
    if not paths:
        raise CliError("give the manifests with -f PATH (or a saved plan with --plan)")
    from nebctl.controller.revisions import checkout_revision

    selection = functools.partial(
        _options, app, paths=paths, stack=stack, prune=prune, targets=targets, excludes=excludes
    )
    keeping = Keeping(app, paths, early_options(selection), enabled=saved is None and not recover_first)

    def manifests() -> ManifestSet:
        return _load(app, paths)

    # Looked for before the lock too, so that the manifests' problems come before the lock's, as they always did:
    # without a kept plan the manifests are loaded first; with one they are known to load.
    loaded = None if keeping.find() is not None else manifests()
    options = selection()
    if recover_first and loaded is not None:
        _recover_first(app, dict(loaded.documents), options.stack, lock_timeout=_lock_timeout(app, lock_timeout))
    _run_apply(
        app,
        manifests if loaded is None else loaded,
        options,
        yes=yes,
        parallelism=parallelism,
        lock_timeout=lock_timeout,
        verb="apply",
        saved=saved,
        # The commit of the manifests, when they are in a checkout: asked of git only by a run that plans.
        revision=lambda: checkout_revision(Path(paths[0])),
        keeping=keeping,
    )


@click.command("destroy")
@_paths_option(required=False)
@click.option("--stack", metavar="NAME", help="The stack to destroy (default: name of the first -f).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required when stdin is not a terminal).")
@click.option("--parallelism", type=click.IntRange(1, 1024), metavar="N", help="Actions run at once (default 16).")
@click.option("--lock-timeout", metavar="DURATION", help="How long to wait for another writer (e.g. 30s).")
@pass_app
def destroy_command(
    app: AppContext,
    *,
    paths: tuple[str, ...],
    stack: str | None,
    yes: bool,
    parallelism: int | None,
    lock_timeout: str | None,
) -> None:
    """Delete everything a stack owns, in reverse dependency order.

    Resources with lifecycle.preventDestroy stop the whole destroy before anything is touched.
    """
    if not paths and not stack:
        raise CliError("name the stack with --stack NAME or -f PATH")
    options = PlanOptions(stack=check_stack(stack or default_stack(paths)), prune=True)
    nothing = ManifestSet(documents={}, locations={}, files=())
    _run_apply(app, nothing, options, yes=yes, parallelism=parallelism, lock_timeout=lock_timeout, verb="destroy")


@click.command("import")
@click.argument("reference", metavar="KIND/NAME")
@click.option(
    "--id", "identifier", required=True, metavar="ID", help="UUID or name of a VM; live name of another object."
)
@click.option("--host", metavar="HOST", help="The host it runs on (default: look on every known host).")
@_paths_option(required=False)
@click.option("--stack", metavar="NAME", help="Stack to adopt it into (default: name of the first -f).")
@click.option("--lock-timeout", metavar="DURATION", help="How long to wait for another writer.")
@pass_app
def import_command(
    app: AppContext,
    *,
    reference: str,
    identifier: str,
    host: str | None,
    paths: tuple[str, ...],
    stack: str | None,
    lock_timeout: str | None,
) -> None:
    """Adopt an existing live VM, network, datastore or image into a stack, as KIND/NAME.

    With -f, the manifests say what the VM should be (and which hosts exist); the next diff shows what differs
    from what was found, and apply brings it in line and writes the ownership on the VM.
    """
    from nebctl.controller.importing import AdoptionError, adopted_object, adopted_record, find_object, find_vm
    from nebctl.controller.observing import known_hosts

    try:
        key = ResourceKey.parse(reference)
    except ValueError as error:
        raise CliError(str(error)) from None
    if not paths and not stack:
        raise CliError("name the stack with --stack NAME or -f PATH")
    documents = dict(load_manifests(paths, cache_directory(app)).documents) if paths else {}
    stack_name = check_stack(stack or default_stack(paths))
    with writer_lock(app, stack=stack_name, command="import", timeout=_lock_timeout(app, lock_timeout)):
        controller = open_controller(app)
        records = {r.key: r for r in controller.store.list_resources()}
        hosts = known_hosts(documents, records)
        try:
            if key.kind is Kind.VIRTUAL_MACHINE:
                where, status = find_vm(
                    identifier, hosts, controller.registry, host=host, programs=ProgramRecorder(controller.store)
                )
                record = adopted_record(
                    key,
                    stack=stack_name,
                    host=where,
                    status=status,
                    document=documents.get(key),
                    existing=records.get(key),
                )
                what = f"VM {status.uuid} on host {where}"
            else:
                found = find_object(key, identifier, hosts, controller.registry, host=host)
                record = adopted_object(
                    key, stack=stack_name, found=found, document=documents.get(key), existing=records.get(key)
                )
                what = f"{next(iter(found.values())).object} {identifier} on {', '.join(sorted(found))}"
        except AdoptionError as error:
            raise CliError(str(error)) from None
        with controller.store.batch() as tx:
            tx.save_resource(record)
            tx.add_event(
                type=f"{key.kind.short}.imported", message=f"{key} adopted from {what}", key=key, stack=stack_name
            )
    click.echo(f"Imported {key} ({what}) into stack {stack_name}.")


commands: list[click.Command] = [diff_command, apply_command, destroy_command, import_command]
