"""What the command line's logging lets through to stderr: nebctl's own lines, not a library's second account of
a failure the command already reported in one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy

from nebctl.cli.app import LogFormat, configure_logging


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """``configure_logging`` changes process-wide loggers (levels, handlers, and nebctl's propagation, which the
    other tests' ``caplog`` relies on): each is put back as it was."""
    loggers = [logging.getLogger(name) for name in ("nebctl", "psycopg", "sqlalchemy.pool")]
    saved = [(logger.level, list(logger.handlers), logger.propagate) for logger in loggers]
    yield
    for logger, (level, handlers, propagate) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def _pool_reports_a_failed_reset() -> None:
    engine = sqlalchemy.create_engine("sqlite://")
    try:
        raise TimeoutError("timed out")
    except TimeoutError:
        # The very call SQLAlchemy's pool makes when a rollback fails on a connection it takes back.
        engine.pool.logger.error("Exception during reset or similar", exc_info=True)


# ``caplog`` sees every record a logger lets out (with no handler of its own, Python's last-resort handler would
# print it on stderr, traceback and all): none at the default verbosity, the traceback with -vv.
def test_a_failed_pool_reset_prints_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(LogFormat.TEXT, 0)
    _pool_reports_a_failed_reset()
    assert caplog.records == []


def test_verbose_runs_show_it(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(LogFormat.TEXT, 2)
    _pool_reports_a_failed_reset()
    [record] = caplog.records
    assert record.getMessage() == "Exception during reset or similar" and record.exc_info is not None
