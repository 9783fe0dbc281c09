"""Manifests written back as YAML: the inverse of ``schemas.loading``, which reads what ``dump_text`` writes into
equal models (tests/unit/schemas/test_properties.py checks it on generated manifests)."""

from __future__ import annotations

import io
from collections.abc import Iterable

from ruamel.yaml import YAML

from nebctl.schemas.models import API_VERSION, AnyManifest


def dump_text(manifests: Iterable[AnyManifest], *, reveal_secrets: bool = False) -> str:
    """Manifests as a multi-document YAML string that ``load_text`` reads back into equal models.

    Secrets print as ``**********`` unless ``reveal_secrets`` is set (which only tests and exports ask for).
    """
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    documents = [
        manifest.model_dump(mode="json", exclude_defaults=True, context={"reveal_secrets": reveal_secrets})
        for manifest in manifests
    ]
    for document in documents:
        # apiVersion and kind are literals with no default: exclude_defaults keeps them, spelled out for clarity.
        document.setdefault("apiVersion", API_VERSION)
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()
