"""Catalogue indexes, read into appliances: nebctl's own format and OpenNebula's marketplace appliance format.

Pure: text in, appliances and problems out (no I/O), so the catalogue driver, ``nebctl market`` and the tests
share one reading. nebctl's format is described by the pydantic models below; ``catalogue_schema()`` is the
JSON Schema generated from them (docs/catalogue.schema.json holds a copy, for editors). An entry that cannot
be read is left out and reported by its position and name (``appliances[2] (debian-12): ...``); the others are
still usable. An appliance whose images carry no sha256 (OpenNebula's often give only md5 or sha1) is listed
with a ``problem`` and refused for import: nebctl verifies every image by sha256.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nebctl.drivers.types import Appliance

CATALOGUE_API_VERSION = "nebctl/catalogue/v1"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_SLUG = re.compile(r"[^a-z0-9_.]+")
_VERSION_PART = re.compile(r"\d+|[A-Za-z]+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogueImage(_Model):
    url: str = Field(min_length=1, description="Where the file is: an http(s) URL, or a path relative to the index.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the file, in hex.")
    size: int | None = Field(default=None, ge=0, description="Bytes of the file; a download of another length fails.")
    format: Literal["qcow2", "raw"] | None = Field(default=None, description="qcow2 or raw; detected when omitted.")


class CatalogueVersion(_Model):
    version: str = Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.+]*$", description="1.2, 20240601, 12.5-1...")
    images: list[CatalogueImage] = Field(min_length=1, description="The files of this version; the first is imported.")


class CatalogueAppliance(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", description="What MARKETPLACE/NAME refers to.")
    description: str = Field(default="", description="What the appliance is, for people.")
    os: str = Field(default="", description="The operating system inside, such as 'debian 12'.")
    versions: list[CatalogueVersion] = Field(min_length=1, description="Every version offered; newest wins by default.")


class CatalogueIndex(_Model):
    apiVersion: Literal["nebctl/catalogue/v1"] = Field(  # noqa: N815  # the field as written in the index
        description="The format of this index."
    )
    appliances: list[Any] = Field(description="The appliances (each checked on its own).")


def catalogue_schema() -> dict[str, Any]:
    """The JSON Schema of nebctl's index format (appliances written out in full)."""

    class _Index(_Model):
        apiVersion: Literal["nebctl/catalogue/v1"] = Field(  # noqa: N815
            description="The format of this index."
        )
        appliances: list[CatalogueAppliance] = Field(description="The appliances of the catalogue.")

    schema = _Index.model_json_schema()
    schema["title"] = "nebctl catalogue index"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@dataclass(frozen=True)
class Index:
    appliances: tuple[Appliance, ...]  # by name, newest version first
    problems: tuple[str, ...]  # entries left out, each naming the entry


class IndexFormatError(ValueError):
    """The index as a whole cannot be read (not JSON or YAML, no list of appliances)."""


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as people read them: numbers by value, so 1.10 > 1.9 and 20240601 > 20231201; a number
    beats a word at the same place (1.0 > 1.0rc1 is not attempted: catalogues rarely list pre-releases)."""
    return tuple((1, int(part)) if part.isdigit() else (0, part.lower()) for part in _VERSION_PART.findall(version))


def slug(name: str) -> str:
    """An OpenNebula appliance title ('Alpine Linux 3.17') as a name a manifest can write ('alpine-linux-3.17')."""
    return _SLUG.sub("-", name.lower()).strip("-.") or "appliance"


def parse_document(text: str) -> Any:
    """JSON, else YAML (OpenNebula's appliance files are YAML)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml  # type: ignore[import-untyped]

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise IndexFormatError(f"the index is neither JSON nor YAML: {error}") from error


def read_index(  # noqa: PLR0912 - one branch per index format and field
    text: str, *, base: str
) -> Index:
    """The appliances of an index. ``base`` is the index's URL or path: relative image URLs resolve against it."""
    document = parse_document(text)
    entries: list[Any]
    if isinstance(document, Mapping) and "apiVersion" in document:
        try:
            index = CatalogueIndex.model_validate(document)
        except ValidationError as error:
            raise IndexFormatError(f"not a nebctl catalogue index: {_first_error(error)}") from error
        entries, reader = list(index.appliances), _read_nebctl
    else:
        if isinstance(document, Mapping) and isinstance(document.get("appliances"), list):
            entries = list(document["appliances"])
        elif isinstance(document, list):
            entries = list(document)
        elif isinstance(document, Mapping) and "name" in document and "images" in document:
            entries = [document]  # one OpenNebula appliance file
        else:
            raise IndexFormatError(
                f"expected a nebctl index (apiVersion: {CATALOGUE_API_VERSION}) or OpenNebula appliances "
                "(a list, or a mapping with 'appliances')"
            )
        reader = _read_opennebula
    appliances: list[Appliance] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for position, entry in enumerate(entries):
        label = f"appliances[{position}]"
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        if not isinstance(entry, Mapping):
            problems.append(f"{label}: expected a mapping, got {type(entry).__name__}")
            continue
        try:
            found = reader(entry, base=base)
        except ValueError as error:
            problems.append(f"{label}: {error}")
            continue
        for appliance in found:
            first = seen.setdefault((appliance.name, appliance.version), position)
            if first != position:
                problems.append(
                    f"{label}: {appliance.name} version {appliance.version or '(none)'} is listed already, "
                    f"at appliances[{first}]"
                )
                continue
            appliances.append(appliance)
    ordered = sorted(appliances, key=lambda a: version_key(a.version), reverse=True)
    ordered.sort(key=lambda a: a.name)  # stable: newest first within a name
    return Index(tuple(ordered), tuple(problems))


def _read_nebctl(entry: Mapping[str, Any], *, base: str) -> list[Appliance]:
    try:
        appliance = CatalogueAppliance.model_validate(entry)
    except ValidationError as error:
        raise ValueError(_first_error(error)) from None
    found = []
    for version in appliance.versions:
        image = version.images[0]
        found.append(
            Appliance(
                name=appliance.name,
                source=resolve(image.url, base),
                sha256=image.sha256.lower(),
                format=image.format,
                size=image.size,
                description=appliance.description,
                version=version.version,
                os=appliance.os,
            )
        )
    return found


def _read_opennebula(entry: Mapping[str, Any], *, base: str) -> list[Appliance]:
    """OpenNebula's appliance: name, version, images with url and checksum (md5, sha1, sha256). Its image
    ``size`` is the disk's virtual size, not the file's, so it is not used to check the download."""
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("'name' must be a non-empty string")
    images = entry.get("images")
    if not isinstance(images, list) or not images:
        raise ValueError("'images' must be a non-empty list")
    image = images[0]
    if not isinstance(image, Mapping):
        raise ValueError(f"images[0]: expected a mapping, got {type(image).__name__}")
    url = image.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError("images[0].url must be a non-empty string")
    checksum = image.get("checksum") or {}
    if not isinstance(checksum, Mapping):
        raise ValueError("images[0].checksum must be a mapping (md5, sha1, sha256)")
    sha256 = checksum.get("sha256")
    problem = None
    if sha256 is None:
        given = ", ".join(sorted(str(k) for k in checksum)) or "no checksum"
        problem = f"no sha256 in the catalogue (it gives {given}); nebctl imports only images it can verify by sha256"
    elif not isinstance(sha256, str) or not re.match(SHA256_PATTERN, sha256.strip()):
        raise ValueError(f"images[0].checksum.sha256 {sha256!r} is not a sha256 digest")
    fmt = image.get("driver") or entry.get("format")
    os_name = " ".join(str(entry[key]) for key in ("os-id", "os-release") if entry.get(key))
    description = str(entry.get("short_description") or entry.get("description") or "").strip()
    return [
        Appliance(
            name=slug(name),
            source=resolve(url.strip(), base),
            sha256=sha256.strip().lower() if isinstance(sha256, str) else None,
            format=fmt if fmt in ("qcow2", "raw") else None,
            size=None,
            description=description if description else name,
            version=str(entry.get("version") or ""),
            os=os_name,
            problem=problem,
        )
    ]


def resolve(url: str, base: str) -> str:
    """An image URL as given, or resolved against the index's URL or directory when relative."""
    import posixpath
    import urllib.parse

    if "://" in url or url.startswith("/"):
        return url
    if "://" in base:
        return urllib.parse.urljoin(base, url)
    return posixpath.join(posixpath.dirname(base) or ".", url)


def _first_error(error: ValidationError) -> str:
    messages = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        messages.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(messages)


def select(appliances: Sequence[Appliance], app: str, version: str | None) -> Appliance | None:
    """The appliance ``app`` at ``version``, else its newest version (``appliances`` as ``read_index`` sorts)."""
    for appliance in appliances:
        if appliance.name == app and (version is None or appliance.version == version):
            return appliance
    return None
