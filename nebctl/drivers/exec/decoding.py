"""Turning an external program's JSON result back into the driver value types: the inverse of ``to_payload``.

Used by ``exec.programs``. It is strict where a mistake would mislead (a missing required field, a state that is
not one of ours, a wrong type) and lenient where programs differ harmlessly (unknown extra keys are ignored, so
a program can print more than nebctl reads). Errors are ``ValueError``; the caller names the program.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin

import nebctl.drivers.types as driver_types
from nebctl.core import jsontext

T = TypeVar("T")


@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(driver_types))


def _convert(hint: Any, value: Any, where: str) -> Any:  # noqa: PLR0912 - one branch per kind of type hint
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors: list[str] = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors) or f"{where}: unexpected null")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        item = get_args(hint)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        args = get_args(hint)
        item = args[1] if args else Any
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_payload(hint, value, where=where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError as error:
            allowed = ", ".join(str(m.value) for m in hint)
            raise ValueError(f"{where}: {value!r} is not one of {allowed}") from error
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in jsontext.EXACT_INTEGERS:
                # nebctl keeps values as JSON, which it reads back with 64-bit integers (core.jsontext).
                raise ValueError(f"{where}: {value} is outside the 64-bit range")
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


def from_payload(cls: type[T], data: Any, *, where: str = "result") -> T:
    """Build the dataclass ``cls`` from JSON data, converting nested values by the field types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)  # type: ignore[arg-type]  # classes are hashable; mypy cannot see it for type[T]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in data:
            values[field.name] = _convert(hints[field.name], data[field.name], f"{where}.{field.name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: missing field {field.name!r}")
    return cls(**values)
