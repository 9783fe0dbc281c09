"""What the command line's logging lets through to stderr: nebctl's own lines, not a library's second account of
a failure the command already reported in one line."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy

from nebctl.cli.app import LogFormat, configure_logging


@pytest.fixture(autouse=True)
def _restore_levels() -> object:
    names = ("nebctl", "psycopg", "sqlalchemy.pool")
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    yield None
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


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
