"""The manifest models build their validators when first used (``defer_build``), not when imported: a command
pays only for the kinds its manifests hold. Validation itself is what every other schema test checks."""

from __future__ import annotations

import subprocess
import sys

BUILT = "print(sorted(kind.value for kind, model in MODEL_BY_KIND.items() if model.__pydantic_complete__))\n"


def test_a_kind_builds_its_validator_when_a_document_of_it_is_validated() -> None:
    code = (
        "from nebctl.schemas.models import MODEL_BY_KIND, Host\n"
        + BUILT
        + "Host.model_validate({'apiVersion': 'nebctl/v1', 'kind': 'Host', 'metadata': {'name': 'kvm1'},"
        " 'spec': {'uri': 'sim://kvm1'}})\n" + BUILT
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "['Host']"]
