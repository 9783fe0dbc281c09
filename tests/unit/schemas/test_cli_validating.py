"""``nebctl validate`` and ``nebctl schema``, through click's runner and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nebctl.cli import main
from nebctl.schemas.jsonschema import schema_files
from tests.conftest import REPO_ROOT

NEBCTL = Path(sys.executable).parent / "nebctl"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(REPO_ROOT)
    # Keep the user's own configuration out of the tests.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return CliRunner()


def test_validate_examples_succeeds_with_a_summary(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", "-f", "manifests/examples"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid: 18 resources in 5 files (4 host, 1 datastore, 2 image, 2 network, ")
    assert "7 vm, 1 hook)" in result.stdout


def test_validate_prints_every_diagnostic_on_stderr_and_exits_1(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "validate",
            "-f",
            "tests/manifests/invalid/bad-state.yaml",
            "-f",
            "tests/manifests/invalid/missing-kind.yaml",
            "-f",
            "nope.yaml",
        ],
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "nope.yaml: no such file or directory",
        "tests/manifests/invalid/bad-state.yaml:8:10: VirtualMachine/web-1: spec.state: invalid value 'runing': "
        "expected 'running', 'stopped' or 'suspended', did you mean 'running'?",
        "tests/manifests/invalid/missing-kind.yaml:2:1: missing 'kind': expected one of Host, Datastore, "
        "Marketplace, Image, Network, SecurityGroup, VirtualMachine, Hook",
        "error: 3 problems found; nothing was changed",
    ]


def test_validate_needs_a_path(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate"])
    assert result.exit_code == 2
    assert "Missing option '-f'" in result.stderr


def test_schema_prints_the_combined_schema(runner: CliRunner) -> None:
    result = runner.invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.stdout == schema_files()["manifest.schema.json"]


def test_schema_of_one_kind_and_an_unknown_kind(runner: CliRunner) -> None:
    result = runner.invoke(main, ["schema", "--kind", "vm"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["properties"]["kind"]["const"] == "VirtualMachine"
    result = runner.invoke(main, ["schema", "--kind", "pod"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown kind 'pod'")


def test_schema_out_writes_the_files(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["schema", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(schema_files())
    assert len(result.stdout.splitlines()) == len(schema_files())


def test_real_process_validate_and_schema(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    ok = subprocess.run(
        [str(NEBCTL), "validate", "-f", "manifests/examples/"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("valid: 18 resources in 5 files")
    bad = subprocess.run(
        [str(NEBCTL), "validate", "-f", "tests/manifests/invalid/dependency-cycle.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "tests/manifests/invalid/dependency-cycle.yaml:8:15: VirtualMachine/web-1: dependency cycle: "
        "vm/web-1 -> vm/web-2 -> vm/web-1",
        "error: 1 problem found; nothing was changed",
    ]
    schema = subprocess.run(
        [str(NEBCTL), "schema", "--out", str(tmp_path / "json")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert schema.returncode == 0, schema.stderr
    assert (tmp_path / "json" / "manifest.schema.json").read_text() == schema_files()["manifest.schema.json"]
