"""What both YAML readers give: a document's plain data with the positions of its values, and the YAML tags
that plain data may carry.

``reading.positioned`` fills every position; ``reading.fast`` only the document's own (its documents are
checked, and a problem sends the file back to the positioned reader). ``schemas.checking`` and
``schemas.model_errors`` read the positions to locate diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nebctl.schemas.diagnostics import DataPath, SourceLocation

YAML_TAG = "tag:yaml.org,2002:"
"""The prefix of YAML's own tags (``!!str`` is ``tag:yaml.org,2002:str``)."""

SCALAR_TAGS = {YAML_TAG + name for name in ("null", "bool", "int", "float", "str")}
"""The scalars manifests hold; a date (``!!timestamp``) is kept as the text written, any other tag is refused."""


@dataclass
class RawDocument:
    """A document's plain data and the positions of its values and mapping keys."""

    data: Any
    location: SourceLocation
    positions: dict[DataPath, SourceLocation]
    key_positions: dict[DataPath, SourceLocation]
    # For one-line scalars: how far the text starts after the value's position (1 past an opening quote), so
    # an error at an offset in the text (a placement expression's) can point at its exact column.
    text_offsets: dict[DataPath, int] = field(default_factory=dict)
