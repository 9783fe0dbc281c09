"""The fields of pydantic models, found through their annotations (``X | None``, ``Annotated[...]``, lists).

Used for the field names of 'did you mean' hints (``schemas.model_errors``) and to check the field paths that
``lifecycle.ignoreChanges`` names (``schemas.validation``).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from nebctl.schemas.diagnostics import DataPath


def model_fields_at(model: type[BaseModel], path: DataPath) -> list[str]:
    """The field names of the model found at ``path`` below ``model`` (for 'did you mean')."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            current = item_type(current)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
        current = model_in(current) or current
    found = model_in(current)
    return list(found.model_fields) if found is not None else []


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated or origin is typing.Union or origin is types.UnionType:
        for argument in typing.get_args(annotation):
            found = model_in(argument)
            if found is not None:
                return found
    return None


def item_type(annotation: Any) -> Any:
    """The type of a list's items, inside an annotation such as ``list[X] | None``; None when it is no list."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return item_type(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        for argument in typing.get_args(annotation):
            item = item_type(argument)
            if item is not None:
                return item
        return None
    if origin is list:
        return typing.get_args(annotation)[0]
    return None
