"""The service's pure parts, against tables worked out by hand: the backoff's delays, the health and sync
status rules, which file names are editors' scratch files, the custom probes' output, and URL redaction."""

from __future__ import annotations

import pytest

from nebctl.controller.probing import parse_output
from nebctl.controller.serving.backoff import Backoff
from nebctl.controller.serving.sources import ignored, redacted
from nebctl.controller.serving.statuses import HealthFacts, resource_health, stack_status
from nebctl.core.keys import ResourceKey
from nebctl.database.records import Health, SyncStatus


@pytest.mark.parametrize(
    ("initial", "factor", "maximum", "delays"),
    [
        (2, 3, 300, [2, 6, 18, 54, 162, 300, 300]),
        (1, 2, 10, [1, 2, 4, 8, 10, 10]),
        (5, 1, 60, [5, 5, 5]),
        (0.5, 3, 4.5, [0.5, 1.5, 4.5, 4.5]),
    ],
)
def test_backoff_delays(initial: float, factor: float, maximum: float, delays: list[float]) -> None:
    backoff: Backoff[str] = Backoff(initial=initial, factor=factor, maximum=maximum)
    now = 1000.0
    for failures, delay in enumerate(delays, start=1):
        attempts = backoff.failed("vm/a", now)
        assert attempts.failures == failures
        assert attempts.next_at == pytest.approx(now + delay)
        assert not backoff.ready("vm/a", now + delay - 0.01)
        assert backoff.ready("vm/a", now + delay)
        now += delay
    assert backoff.delay(10_000) == delays[-1]  # no overflow for a resource failing for ever


def test_backoff_is_per_resource_and_reset() -> None:
    backoff: Backoff[str] = Backoff(initial=2, factor=3, maximum=300)
    backoff.failed("a", 0)
    backoff.failed("a", 2)  # next at 2 + 6
    backoff.failed("b", 1)  # next at 3
    assert backoff.waiting(["a", "b", "c"], 2.5) == {"a", "b"}
    assert backoff.waiting(["a", "b", "c"], 3.0) == {"a"}
    assert backoff.next_deadline() == 3
    assert backoff.reset("b") is not None and backoff.reset("b") is None
    assert backoff.next_deadline() == 8
    backoff.reset("a")
    assert backoff.failed("a", 100).next_at == 102  # starts again from the first delay


VM_A = ResourceKey.parse("vm/a")
VM_B = ResourceKey.parse("vm/b")
NET = ResourceKey.parse("network/lan")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (HealthFacts([VM_A, NET], {}, {}, {}, {}), {VM_A: Health.HEALTHY, NET: Health.HEALTHY}),
        (HealthFacts([VM_A], {}, {VM_A: "3 heals failed"}, {VM_A: "next in 5s"}, {}), {VM_A: Health.DEGRADED}),
        (HealthFacts([VM_A], {}, {}, {VM_A: "next in 5s"}, {}), {VM_A: Health.OUT_OF_SYNC}),
        (HealthFacts([VM_A], {}, {}, {}, {VM_A: "was stopped"}), {VM_A: Health.OUT_OF_SYNC}),
        (HealthFacts([VM_A], {}, {}, {}, {}, unknown=[VM_A]), {VM_A: Health.UNKNOWN}),
        (
            HealthFacts([VM_A, VM_B], {VM_A: "h1", VM_B: "h2"}, {}, {}, {VM_B: "x"}, hosts_in_error=frozenset({"h2"})),
            {VM_A: Health.HEALTHY, VM_B: Health.UNKNOWN},  # its host is not answering: unknown beats out of sync
        ),
        (HealthFacts([VM_A], {}, {}, {}, {}, failed={VM_A: "boom"}), {VM_A: Health.DEGRADED}),
        (HealthFacts([VM_A], {}, {}, {}, {}, pending=[VM_A]), {VM_A: Health.OUT_OF_SYNC}),
    ],
)
def test_resource_health(facts: HealthFacts, expected: dict[ResourceKey, Health]) -> None:
    assert {key: value for key, (value, _) in resource_health(facts).items()} == expected


@pytest.mark.parametrize(
    ("health", "invalid", "expected"),
    [
        ([], False, SyncStatus.SYNCED),
        ([Health.HEALTHY, Health.HEALTHY], False, SyncStatus.SYNCED),
        ([Health.HEALTHY, Health.UNKNOWN], False, SyncStatus.UNKNOWN),
        ([Health.UNKNOWN, Health.OUT_OF_SYNC], False, SyncStatus.OUT_OF_SYNC),
        ([Health.OUT_OF_SYNC, Health.DEGRADED, Health.UNKNOWN], False, SyncStatus.DEGRADED),
        ([Health.HEALTHY], True, SyncStatus.UNKNOWN),
    ],
)
def test_stack_status(health: list[Health], invalid: bool, expected: SyncStatus) -> None:
    assert stack_status(health, invalid=invalid) is expected


@pytest.mark.parametrize(
    ("path", "scratch"),
    [
        ("/m/vms.yaml", False),
        ("/m/sub/vms.yml", False),
        ("/m/.vms.yaml.swp", True),
        ("/m/.vms.yaml.swx", True),
        ("/m/vms.yaml~", True),
        ("/m/#vms.yaml#", True),
        ("/m/.#vms.yaml", True),
        ("/m/4913", True),
        ("/m/vms.yaml.tmp", True),
        ("/m/.hidden.yaml", True),
        ("/m/49130.yaml", False),
    ],
)
def test_editor_scratch_files(path: str, scratch: bool) -> None:
    assert ignored(path) is scratch


def test_probe_output() -> None:
    text = "gpu=2\n\n# a comment\n  zone = a  \nnot a pair\n9bad=1\nempty=\nurl=http://x/?a=b\n"
    assert parse_output(text) == {"gpu": "2", "zone": "a", "empty": "", "url": "http://x/?a=b"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@git.example.org/infra.git", "https://***@git.example.org/infra.git"),
        ("https://token@git.example.org:8443/infra.git", "https://***@git.example.org:8443/infra.git"),
        ("https://git.example.org/infra.git", "https://git.example.org/infra.git"),
        ("ssh://git@git.example.org/infra.git", "ssh://git@git.example.org/infra.git"),
        ("file:///srv/infra", "file:///srv/infra"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_git_source_never_shows_the_password_of_its_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nebctl.controller.revisions import GitError
    from nebctl.controller.serving.sources import GitSource

    source = GitSource("https://alice:s3cret@127.0.0.1:1/infra.git", tmp_path)
    with pytest.raises(GitError) as raised:
        source.refresh()  # nothing listens on port 1: the clone fails, with git's own words
    snapshot = source.load()
    assert not snapshot.valid and snapshot.problems
    for text in (str(raised.value), *snapshot.problems, str(source.describe())):
        assert "s3cret" not in text
    assert source.describe()["url"] == "https://***@127.0.0.1:1/infra.git"
