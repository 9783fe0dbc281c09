"""The catalogue marketplace driver: nebctl's index format and OpenNebula's appliance format, versions, bad
entries named, appliances without sha256 listed but refused, and the downloaded index kept with its ETag.

Indexes are written out here by hand; the expected appliances are written out too (a table), not derived from
the reader. The HTTP tests use the real loopback server of tests/support/httpserver.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebctl.drivers.catalogue import CatalogueMarketplace
from nebctl.drivers.catalogue.fetching import IndexStore
from nebctl.drivers.catalogue.index import catalogue_schema, read_index, version_key
from nebctl.drivers.errors import NotFoundError, PermanentError
from nebctl.drivers.types import Appliance, MarketplaceRef
from tests.support.httpserver import Behaviour, ImageServer, image_server

REPO = Path(__file__).resolve().parents[3]
A = "a" * 64
B = "b" * 64
C = "c" * 64

NEBCTL_INDEX = {
    "apiVersion": "nebctl/catalogue/v1",
    "appliances": [
        {
            "name": "debian-12",
            "description": "Debian 12 cloud image",
            "os": "debian 12",
            "versions": [
                {"version": "1.9", "images": [{"url": "images/debian-1.9.qcow2", "sha256": A, "size": 10}]},
                {
                    "version": "1.10",
                    "images": [
                        {"url": "https://mirror.example/debian-1.10.qcow2", "sha256": B.upper(), "format": "qcow2"}
                    ],
                },
            ],
        },
        {"name": "alpine", "versions": [{"version": "3.20", "images": [{"url": "/srv/alpine.raw", "sha256": C}]}]},
    ],
}


def test_the_nebctl_format_reads_into_one_appliance_per_version_newest_first() -> None:
    index = read_index(json.dumps(NEBCTL_INDEX), base="https://hub.example/catalogue/index.json")
    assert index.problems == ()
    assert index.appliances == (
        Appliance("alpine", "/srv/alpine.raw", C, None, None, "", "3.20", ""),
        Appliance(
            "debian-12",
            "https://mirror.example/debian-1.10.qcow2",
            B,
            "qcow2",
            None,
            "Debian 12 cloud image",
            "1.10",
            "debian 12",
        ),
        Appliance(
            "debian-12",
            "https://hub.example/catalogue/images/debian-1.9.qcow2",
            A,
            None,
            10,
            "Debian 12 cloud image",
            "1.9",
            "debian 12",
        ),
    )


def test_relative_image_urls_of_a_local_index_are_files_beside_it() -> None:
    index = read_index(json.dumps(NEBCTL_INDEX), base="/srv/catalogue/index.json")
    assert [a.source for a in index.appliances if a.version == "1.9"] == ["/srv/catalogue/images/debian-1.9.qcow2"]


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.9", "1.10"), ("20231201", "20240601"), ("12", "12.1"), ("1.0rc1", "1.0.1"), ("2.0-1", "2.0-2")],
)
def test_versions_order_as_people_read_them(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


OPENNEBULA_YAML = """\
appliances:
- name: Alpine Linux 3.17
  version: 6.6.0-1.20230403
  short_description: Alpine 3.17 for KVM
  format: qcow2
  os-id: Alpine
  os-release: '3.17'
  images:
  - name: alpine317
    url: https://example.org/alpine317.qcow2
    driver: qcow2
    size: 262144000
    checksum:
      md5: 9ad04c8d2ae1c6f5c09de3c4a3a3e8f6
      sha256: %s
- name: Debian 8
  version: '5.0.1'
  images:
  - url: https://example.org/debian8.qcow2c
    size: 2147483648
    checksum:
      md5: a661b9101d0e7427a9495967292f7285
""" % ("d" * 64)


def test_the_opennebula_format_is_read_and_an_appliance_without_sha256_is_listed_with_a_reason() -> None:
    index = read_index(OPENNEBULA_YAML, base="https://example.org/appliances")
    assert index.problems == ()
    alpine, debian = index.appliances
    assert alpine == Appliance(
        name="alpine-linux-3.17",
        source="https://example.org/alpine317.qcow2",
        sha256="d" * 64,
        format="qcow2",
        size=None,  # OpenNebula's size is the disk's virtual size, not the file's
        description="Alpine 3.17 for KVM",
        version="6.6.0-1.20230403",
        os="Alpine 3.17",
    )
    assert debian.name == "debian-8" and debian.sha256 is None
    assert debian.problem is not None and "no sha256 in the catalogue (it gives md5)" in debian.problem


def test_an_appliance_without_sha256_is_refused_for_import_with_its_reason(tmp_path: Path) -> None:
    index_file = tmp_path / "appliances.yaml"
    index_file.write_text(OPENNEBULA_YAML, encoding="utf-8")
    driver = CatalogueMarketplace()
    ref = MarketplaceRef(name="one", path=str(index_file))
    assert [a.name for a in driver.list(ref)] == ["alpine-linux-3.17", "debian-8"]
    with pytest.raises(PermanentError, match=r"one: debian-8 5\.0\.1 cannot be imported: no sha256 in the catalogue"):
        driver.import_(ref, "debian-8")
    assert driver.import_(ref, "alpine-linux-3.17").sha256 == "d" * 64


def test_bad_entries_are_reported_by_position_and_name_and_the_rest_still_read() -> None:
    document = {
        "apiVersion": "nebctl/catalogue/v1",
        "appliances": [
            {"name": "good", "versions": [{"version": "1", "images": [{"url": "x.qcow2", "sha256": A}]}]},
            {"name": "short-digest", "versions": [{"version": "1", "images": [{"url": "x", "sha256": "abc"}]}]},
            {"name": "no-versions", "versions": []},
            "just a string",
            {"name": "typo", "versoins": []},
            {"name": "good", "versions": [{"version": "1", "images": [{"url": "y.qcow2", "sha256": B}]}]},
        ],
    }
    index = read_index(json.dumps(document), base="/srv/index.json")
    assert [(a.name, a.version) for a in index.appliances] == [("good", "1")]
    problems = list(index.problems)
    assert len(problems) == 5, problems
    assert problems[0].startswith("appliances[1] (short-digest): versions.0.images.0.sha256: String should match")
    assert problems[1].startswith("appliances[2] (no-versions): versions: List should have at least 1 item")
    assert problems[2] == "appliances[3]: expected a mapping, got str"
    assert problems[3].startswith("appliances[4] (typo): ")
    assert "versoins: Extra inputs are not permitted" in problems[3]
    assert problems[4] == "appliances[5] (good): good version 1 is listed already, at appliances[0]"


def test_importing_a_bad_entry_names_its_problem(tmp_path: Path) -> None:
    document = {
        "apiVersion": "nebctl/catalogue/v1",
        "appliances": [{"name": "broken", "versions": [{"version": "1", "images": [{"url": "x", "sha256": "z"}]}]}],
    }
    (tmp_path / "index.json").write_text(json.dumps(document), encoding="utf-8")
    ref = MarketplaceRef(name="hub", path=str(tmp_path / "index.json"))
    expected = r"hub has no appliance 'broken'; its entry cannot be read: appliances\[0\]"
    with pytest.raises(NotFoundError, match=expected):
        CatalogueMarketplace().import_(ref, "broken")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json: [", "the index is neither JSON nor YAML"),
        ('{"apiVersion": "nebctl/catalogue/v9", "appliances": []}', "not a nebctl catalogue index: apiVersion"),
        ('{"hello": 1}', "expected a nebctl index"),
    ],
)
def test_an_unreadable_index_is_a_permanent_error_naming_the_marketplace(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "index").write_text(text, encoding="utf-8")
    ref = MarketplaceRef(name="hub", path=str(tmp_path / "index"))
    with pytest.raises(PermanentError, match=f"marketplace hub: {tmp_path / 'index'}: {message}"):
        CatalogueMarketplace().list(ref)


def test_versions_are_chosen_newest_by_default_or_as_asked(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text(json.dumps(NEBCTL_INDEX), encoding="utf-8")
    ref = MarketplaceRef(name="hub", path=str(tmp_path / "index.json"))
    driver = CatalogueMarketplace()
    assert driver.import_(ref, "debian-12").version == "1.10"
    assert driver.import_(ref, "debian-12", version="1.9").sha256 == A
    with pytest.raises(NotFoundError, match=r"hub has no version '2\.0' of 'debian-12' \(it has: 1\.9, 1\.10\)"):
        driver.import_(ref, "debian-12", version="2.0")
    with pytest.raises(NotFoundError, match="hub has no appliance 'ubuntu'"):
        driver.import_(ref, "ubuntu")


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


def test_a_downloaded_index_is_kept_and_revalidated_with_its_etag(server: ImageServer, tmp_path: Path) -> None:
    server.put("index.json", json.dumps(NEBCTL_INDEX).encode())
    now = [1000.0]
    driver = CatalogueMarketplace(IndexStore(tmp_path / "indexes", clock=lambda: now[0]))
    ref = MarketplaceRef(name="hub", url=server.url("index.json"), refresh=60.0)

    assert len(driver.list(ref)) == 3
    assert server.count("index.json") == 1
    etag = server.files["index.json"].etag

    now[0] += 30  # within the refresh interval: the kept copy, no request
    assert len(driver.list(ref)) == 3
    assert server.count("index.json") == 1

    now[0] += 60  # past it: a conditional request, answered 304 without a body
    assert len(driver.list(ref)) == 3
    assert server.count("index.json") == 2
    assert server.headers_seen[-1][1].get("if-none-match") == etag
    assert server.headers_seen[-1][1].get("if-modified-since")

    # The catalogue changes: a forced refresh (nebctl market refresh) sees it at once.
    changed = dict(NEBCTL_INDEX, appliances=NEBCTL_INDEX["appliances"][1:])
    server.put("index.json", json.dumps(changed).encode())
    assert [a.name for a in driver.refresh(ref).appliances] == ["alpine"]
    assert server.count("index.json") == 3

    # A new process (a new driver over the same directory) uses the kept copy within the interval.
    again = CatalogueMarketplace(IndexStore(tmp_path / "indexes", clock=lambda: now[0]))
    assert [a.name for a in again.list(ref)] == ["alpine"]
    assert server.count("index.json") == 3


def test_an_unreachable_server_falls_back_to_the_kept_index(server: ImageServer, tmp_path: Path) -> None:
    server.put("index.json", json.dumps(NEBCTL_INDEX).encode())
    driver = CatalogueMarketplace(IndexStore(tmp_path / "indexes"))
    ref = MarketplaceRef(name="hub", url=server.url("index.json"), refresh=0.0)
    assert len(driver.list(ref)) == 3
    server.behave("index.json", Behaviour(status=503))
    assert len(driver.list(ref)) == 3  # read again (refresh 0), failed, the kept copy served
    assert server.count("index.json") == 2


def test_a_missing_index_is_a_clear_error(server: ImageServer, tmp_path: Path) -> None:
    driver = CatalogueMarketplace(IndexStore(tmp_path / "indexes"))
    url = server.url("nothing.json")
    with pytest.raises(NotFoundError, match=f"marketplace hub: {url}: HTTP 404 Not Found"):
        driver.list(MarketplaceRef(name="hub", url=url))


def test_the_documented_json_schema_is_the_one_the_reader_uses() -> None:
    documented = json.loads((REPO / "docs" / "catalogue.schema.json").read_text(encoding="utf-8"))
    assert documented == catalogue_schema()
