"""The corpus of invalid manifests (tests/manifests/invalid/): each file's exact diagnostics.

Every ``NAME.yaml`` has a ``NAME.expected`` with the lines ``nebctl validate`` must print, each one
``FILE:LINE:COL: Kind/name: message``, paths relative to the repository root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nebctl.schemas.loading import ManifestError, load_paths
from tests.conftest import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "manifests" / "invalid"
CASES = sorted(path.stem for path in CORPUS.glob("*.yaml"))


def expected_lines(name: str) -> list[str]:
    return (CORPUS / f"{name}.expected").read_text(encoding="utf-8").splitlines()


def diagnostics_of(*paths: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_paths(list(paths))
    return [str(diagnostic) for diagnostic in caught.value.diagnostics]


def test_corpus_has_forty_cases_each_with_its_expectations() -> None:
    assert len(CASES) >= 40
    for name in CASES:
        lines = expected_lines(name)
        assert lines, f"{name}.expected is empty"
        assert all(line.startswith(f"tests/manifests/invalid/{name}.yaml:") for line in lines), name
    assert sorted(path.stem for path in CORPUS.glob("*.expected")) == CASES


@pytest.mark.parametrize("name", CASES)
def test_invalid_manifest_reports_exact_location_and_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert diagnostics_of(f"tests/manifests/invalid/{name}.yaml") == expected_lines(name)


def test_errors_of_several_files_are_all_reported_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    names = ["bad-state", "host-bad-uri", "yaml-syntax-error", "document-is-list"]
    found = diagnostics_of(*(f"tests/manifests/invalid/{name}.yaml" for name in names))
    assert found == [line for name in names for line in expected_lines(name)]


def test_an_invalid_file_does_not_hide_problems_of_a_valid_looking_one(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text("apiVersion: nebctl/v1\nkind: Image\nmetadata: {name: img}\nspec: {source: /x, datastore: ds}\n")
    bad = tmp_path / "b.yaml"
    bad.write_text("apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: ds}\nspec: {path: relative}\n")
    # The datastore is invalid, so the image's reference to it dangles as well: both are reported.
    found = diagnostics_of(str(tmp_path))
    assert len(found) == 2
    assert found[0].startswith(f"{bad}:4:14: Datastore/ds: spec.path: expected an absolute path")
    assert found[1] == f"{good}:4:31: Image/img: Datastore 'ds' not found"
