"""boto3 exceptions turned into the project's typed driver errors, at the EC2 drivers' edge.

Used by every method of the EC2 drivers through ``edge``. The error code decides whether a retry can help:
throttling, capacity and service hiccups are temporary (the executor retries them with backoff), a bad AMI or
an invalid parameter is permanent, a missing object is ``NotFoundError`` and an object in the wrong state is
``ConflictError``. A connection that fails is temporary: the endpoint may come back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError, NoCredentialsError

from nebctl.drivers.errors import (
    ConflictError,
    DriverError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)

P = ParamSpec("P")
R = TypeVar("R")

DRIVER = "ec2"

# Codes a retry can cure: the account is throttled, the zone is out of that type for now, or EC2 is busy.
TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientAddressCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)
CONFLICT_CODES = frozenset(
    {"IncorrectInstanceState", "IncorrectState", "DependencyViolation", "InvalidGroup.Duplicate"}
)


def is_not_found(code: str) -> bool:
    return code.endswith(".NotFound") and not code.startswith("InvalidAMIID")


def convert(error: Exception) -> DriverError:
    """The typed error for a boto3 exception."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "Unknown"))
        message = f"{code}: {details.get('Message', error)}"
        if code in TEMPORARY_CODES:
            return TemporaryError(message, driver=DRIVER)
        if is_not_found(code):
            return NotFoundError(message, driver=DRIVER)
        if code in CONFLICT_CODES:
            return ConflictError(message, driver=DRIVER)
        # InvalidAMIID.*, InvalidParameterValue, UnauthorizedOperation, AuthFailure...: a retry cannot fix these.
        return PermanentError(message, driver=DRIVER)
    if isinstance(error, NoCredentialsError):
        return PermanentError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or drivers.ec2 in the config",
            driver=DRIVER,
        )
    if isinstance(error, EndpointConnectionError | ConnectionError):
        return TemporaryError(f"cannot reach the EC2 endpoint: {error}", driver=DRIVER)
    return PermanentError(f"{type(error).__name__}: {error}", driver=DRIVER)


def edge(function: Callable[P, R]) -> Callable[P, R]:
    """Convert boto3 exceptions escaping a driver method into typed driver errors, chained with ``from``."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise convert(error) from error

    return wrapper
