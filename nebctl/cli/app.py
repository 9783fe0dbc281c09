"""The context every CLI command receives: global options, settings, consoles and the log set-up.

Heavy resources (the database engine, the driver registry) are created lazily on first use, so that commands
which do not need them (``validate``, ``schema``) start fast and work without a database. The settings model
(pydantic), rich's consoles and platformdirs are imported only when used, so ``nebctl --help`` imports none of them.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from nebctl.core.settings import Settings


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class CliError(click.ClickException):
    """An error for the user: printed as one line on stderr, with the command's exit code."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class; ours varies

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            # UTC with milliseconds: log collectors order and correlate lines within a second by it.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        return json.dumps(entry, default=str)


def configure_logging(log_format: LogFormat, verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("nebctl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # psycopg warns of errors it ignores while closing a connection that nebctl already gave up on (a server
    # that stopped answering): the command's own error says what matters; -v shows them.
    logging.getLogger("psycopg").setLevel(level if verbosity else logging.ERROR)
    # SQLAlchemy's pool logs, with a traceback, a rollback that fails while it takes back such a connection
    # (PyMySQL's read timeout); that is the same failure again, already reported in the command's own words.
    logging.getLogger("sqlalchemy.pool").setLevel(level if verbosity else logging.CRITICAL)


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("nebctl", appauthor=False))


def default_db_url() -> str:
    return f"sqlite:///{default_data_dir() / 'nebctl.db'}"


def load_settings(config_path: str | None) -> Settings:
    """Read the configuration file; an explicit path must exist, the default one may be absent."""
    from platformdirs import user_config_dir
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from nebctl.core.settings import Settings, parse_settings

    path = Path(config_path) if config_path else Path(user_config_dir("nebctl", appauthor=False)) / "config.yaml"
    if not path.exists():
        if config_path:
            raise CliError(f"{path}: configuration file not found")
        return Settings()
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    except (YAMLError, UnicodeDecodeError, OSError) as error:
        raise CliError(f"{path}: cannot read configuration: {error}") from error
    if not isinstance(data, dict):
        raise CliError(f"{path}: the configuration must be a mapping")
    try:
        return parse_settings(data)
    except ValueError as error:
        raise CliError(f"{path}: invalid configuration: {error}") from error


@dataclass
class AppContext:
    db_url: str
    settings: Settings
    log_format: LogFormat
    verbosity: int
    program: bool = False  # run as the process's entry point (``cli.LazyGroup``), not in-process (tests)
    _resources: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console()

    @cached_property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True)

    @classmethod
    def create(
        cls,
        *,
        db_url: str | None,
        config_path: str | None,
        log_format: LogFormat,
        verbosity: int,
        program: bool = False,
    ) -> AppContext:
        configure_logging(log_format, verbosity)
        settings = load_settings(config_path)
        if settings.state_dir is None:
            settings = settings.model_copy(update={"state_dir": default_data_dir()})
        return cls(
            db_url=db_url or os.environ.get("NEBCTL_DB") or default_db_url(),
            settings=settings,
            log_format=log_format,
            verbosity=verbosity,
            program=program,
        )

    @contextmanager
    def long_lived(self) -> Iterator[None]:
        """Around the making of what a command keeps to its end (the manifests, the records, the live view, the
        plan). As a program, the cyclic collector is paused meanwhile and what was made is then frozen (left out of
        later passes), as ``cli.LazyGroup`` does with the imported modules: its passes, every 100,000 allocations,
        scanned these objects (about a million for 10,000 VMs) again and again, about a tenth of a no-op diff's
        CPU, and found nothing to free (the peak memory is the same without them). Reference counting still frees
        what is dropped. In-process (tests, ``CliRunner``), or nested, it changes nothing."""
        if not self.program or not gc.isenabled():
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            gc.enable()

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """A lazily created, per-invocation resource (the database, the driver registry...)."""
        if name not in self._resources:
            self._resources[name] = factory()
        return self._resources[name]


F = TypeVar("F", bound=Callable[..., Any])


def pass_app(function: F) -> F:
    """Decorator: hand the command the ``AppContext`` as its first argument."""
    return click.pass_obj(function)  # type: ignore[return-value]
