"""The common shape of the XML builders and the ownership element every nebctl-made object carries.

Each builder is a frozen dataclass with one ``build()`` returning an ``ElementTree.Element``; ``to_xml()``
serialises it indented, so golden files stay readable. The ownership element lives in its own namespace inside
``<metadata>`` (SPEC: nebctl never touches what it does not own, and rebuilds records from live objects).
"""

from __future__ import annotations

import abc
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import ClassVar

from nebctl.drivers import ownership
from nebctl.drivers.types import Ownership

OWNER_NAMESPACE = "https://nebctl.dev/xmlns/owner/1"
OWNER_PREFIX = "nebctl"

ET.register_namespace(OWNER_PREFIX, OWNER_NAMESPACE)


def child(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    """Append a ``tag`` element with ``attributes`` (trailing ``_`` stripped, for Python keywords)."""
    element = ET.SubElement(parent, tag, {key.rstrip("_"): value for key, value in attributes.items()})
    if text is not None:
        element.text = text
    return element


class XMLBuilder(abc.ABC):
    """One libvirt XML element kind."""

    @abc.abstractmethod
    def build(self) -> ET.Element: ...

    def to_xml(self) -> str:
        element = self.build()
        ET.indent(element, space="  ")
        return ET.tostring(element, encoding="unicode") + "\n"


@dataclass(frozen=True)
class OwnerElement(XMLBuilder):
    """``<nebctl:owner stack= kind= namespace= name= format= incarnation= installation=><nebctl:spec>JSON
    </nebctl:spec></nebctl:owner>``, the content of a nebctl object's ``<metadata>`` (docs/ownership.md)."""

    tag: ClassVar[str] = f"{{{OWNER_NAMESPACE}}}owner"
    spec_tag: ClassVar[str] = f"{{{OWNER_NAMESPACE}}}spec"
    owner: Ownership

    def build(self) -> ET.Element:
        attributes = {
            "stack": self.owner.stack,
            "kind": self.owner.kind,
            "namespace": self.owner.namespace,
            "name": self.owner.name,
        }
        if self.owner.installation:
            # The versioned fields (drivers.ownership); older documents have none of them and still read.
            attributes.update(
                format=str(ownership.VERSION),
                incarnation=str(self.owner.incarnation),
                installation=self.owner.installation,
            )
        element = ET.Element(self.tag, attributes)
        if self.owner.spec is not None:
            spec = ET.SubElement(element, self.spec_tag)
            spec.text = json.dumps(self.owner.spec, sort_keys=True, separators=(",", ":"))
        return element

    @classmethod
    def parse(cls, element: ET.Element | None) -> Ownership | None:
        """The ownership in ``element`` (an owner element, or a document holding one in its metadata)."""
        if element is None:
            return None
        # virDomainGetMetadata hands the element back without its namespace (it asked by namespace).
        owner = element if element.tag in (cls.tag, "owner") else element.find(f"./metadata/{cls.tag}")
        if owner is None:
            return None
        spec_element = owner.find(cls.spec_tag)
        if spec_element is None:
            spec_element = owner.find("spec")
        try:
            spec = json.loads(spec_element.text or "null") if spec_element is not None else None
            return Ownership(
                stack=owner.attrib["stack"],
                kind=owner.attrib["kind"],
                namespace=owner.attrib["namespace"],
                name=owner.attrib["name"],
                incarnation=int(owner.attrib.get("incarnation", "0")),
                installation=owner.attrib.get("installation", ""),
                spec=spec if isinstance(spec, dict) else None,
            )
        except (KeyError, ValueError):
            return None

    @classmethod
    def parse_text(cls, text: str | None) -> Ownership | None:
        if not text:
            return None
        return cls.parse(ET.fromstring(text))


def metadata(parent: ET.Element, owner: Ownership | None) -> None:
    """Append ``<metadata>`` with the owner element, when there is an owner."""
    if owner is not None:
        child(parent, "metadata").append(OwnerElement(owner).build())
