"""Shell completion through the shells' own machinery: the script ``nebctl completion bash`` prints is sourced
by a real bash, which is given COMP_WORDS/COMP_CWORD as readline would and calls the completion function; the
test reads COMPREPLY. That function runs the real ``nebctl`` (found on PATH), which reads a real database.

zsh and fish are not installed here: their scripts are checked for what they hand the shell, and the answers
``nebctl`` gives to their callbacks (the same protocol the scripts use) are checked like bash's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nebctl.core.keys import Kind
from nebctl.database import ResourceRecord, Store

BIN = Path(sys.executable).parent  # the virtualenv's bin: where the ``nebctl`` script is
KINDS = ["datastore", "hook", "host", "image", "marketplace", "network", "securitygroup", "vm"]


@pytest.fixture()
def environment(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'nebctl.db'}"
    with Store.open(url) as store:
        store.save_resources(
            [
                ResourceRecord(Kind.VIRTUAL_MACHINE, "default", "web-1", "shop", status="running"),
                ResourceRecord(Kind.VIRTUAL_MACHINE, "default", "web-2", "shop", status="running"),
                ResourceRecord(Kind.VIRTUAL_MACHINE, "default", "db-1", "shop", status="running"),
                ResourceRecord(Kind.NETWORK, "default", "lan", "shop", status="ready"),
                ResourceRecord(Kind.HOST, "default", "kvm-1", "shop", status="ready"),
            ]
        )
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NEBCTL_DB": url}


def script(shell: str, environment: dict[str, str]) -> str:
    result = subprocess.run(
        ["nebctl", "completion", shell], env=environment, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout


def bash_complete(line: str, environment: dict[str, str], tmp_path: Path) -> list[str]:
    """COMPREPLY after bash completes ``line`` (the word being completed is the last one, maybe empty)."""
    path = tmp_path / "nebctl.bash"
    path.write_text(script("bash", environment))
    words = line.split(" ")
    program = "\n".join(
        [
            f"source {path}",
            "COMP_WORDS=(" + " ".join(f"'{word}'" for word in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            "COMPREPLY=()",
            "_nebctl_completion nebctl",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


CASES = [
    ("nebctl ge", ["get"]),
    ("nebctl d", ["db", "describe", "destroy", "diff", "drivers"]),
    ("nebctl completion ", ["bash", "zsh", "fish"]),
    ("nebctl get ", KINDS),
    ("nebctl get v", ["vm"]),
    ("nebctl get vm ", ["db-1", "web-1", "web-2"]),
    ("nebctl get vm w", ["web-1", "web-2"]),
    ("nebctl get network ", ["lan"]),
    ("nebctl get nope ", []),
    ("nebctl describe vm/w", ["vm/web-1", "vm/web-2"]),
    ("nebctl describe ", ["host/kvm-1", "network/lan", "vm/db-1", "vm/web-1", "vm/web-2"]),
    ("nebctl diff --target n", ["network/lan"]),
    ("nebctl apply -f manifests --exclude vm/d", ["vm/db-1"]),
    ("nebctl apply --p", ["--parallelism", "--plan", "--prune"]),
    ("nebctl --ver", ["--verbose", "--version"]),
    ("nebctl explain vm.spec.d", ["vm.spec.disks", "vm.spec.dependsOn"]),
    ("nebctl explain se", ["securitygroup"]),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[line for line, _ in CASES])
def test_bash_completes(line: str, expected: list[str], environment: dict[str, str], tmp_path: Path) -> None:
    assert sorted(bash_complete(line, environment, tmp_path)) == sorted(expected)


def test_without_a_database_kinds_complete_and_no_database_is_created(
    environment: dict[str, str], tmp_path: Path
) -> None:
    absent = tmp_path / "absent" / "nebctl.db"
    environment = {**environment, "NEBCTL_DB": f"sqlite:///{absent}"}
    assert bash_complete("nebctl describe ", environment, tmp_path) == [f"{kind}/" for kind in KINDS]
    assert bash_complete("nebctl get vm ", environment, tmp_path) == []
    assert not absent.exists() and not absent.parent.exists()


def test_the_db_option_given_on_the_line_is_the_database_completed_from(
    environment: dict[str, str], tmp_path: Path
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with Store.open(other) as store:
        store.save_resource(ResourceRecord(Kind.IMAGE, "default", "debian-12", "base", status="ready"))
    assert bash_complete(f"nebctl --db {other} get image ", environment, tmp_path) == ["debian-12"]


def _callback(shell: str, words: str, cword: str, environment: dict[str, str]) -> str:
    answer = subprocess.run(
        ["nebctl"],
        env={**environment, "_NEBCTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return answer.stdout


def test_zsh_script_and_answers(environment: dict[str, str]) -> None:
    text = script("zsh", environment)
    assert text.startswith("#compdef nebctl")
    assert "_NEBCTL_COMPLETE=zsh_complete" in text and "compdef _nebctl_completion nebctl" in text
    # zsh's protocol: type, value, help, one per line.
    assert _callback("zsh", "nebctl get vm w", "3", environment).splitlines() == [
        "plain", "web-1", "_", "plain", "web-2", "_",
    ]  # fmt: skip


def test_fish_script_and_answers(environment: dict[str, str]) -> None:
    text = script("fish", environment)
    assert "_NEBCTL_COMPLETE=fish_complete" in text
    assert 'complete --no-files --command nebctl --arguments "(_nebctl_completion)"' in text
    # fish's protocol: the command line so far and the current token; answers as type,value.
    assert _callback("fish", "nebctl describe vm/w", "vm/w", environment).splitlines() == [
        "plain,vm/web-1", "plain,vm/web-2",
    ]  # fmt: skip


def test_an_unknown_shell_is_refused(environment: dict[str, str]) -> None:
    result = subprocess.run(
        ["nebctl", "completion", "tcsh"], env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr
