"""The ``catalogue`` marketplace driver: appliances read from a catalogue index at the Marketplace's ``url`` or
``path``, in nebctl's format or OpenNebula's (``catalogue.index``), the downloaded index kept with its HTTP
validators (``catalogue.fetching``).

Registered as ``catalogue`` for the marketplace family (the default of a Marketplace's ``driver``). Besides the
family's ``list`` and ``import_``, it offers ``refresh`` (read the index again now, ``nebctl market refresh``)
and ``problems`` (the entries of the index it could not read).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers.catalogue.fetching import DRIVER, IndexStore
from nebctl.drivers.catalogue.index import Index, IndexFormatError, read_index, select
from nebctl.drivers.errors import NotFoundError, PermanentError
from nebctl.drivers.types import Appliance, MarketplaceRef


class CatalogueMarketplace:
    name: ClassVar[str] = "catalogue"
    family: ClassVar[Family] = Family.MARKETPLACE
    capabilities: ClassVar[frozenset[str]] = frozenset({"list", "import", "refresh", "versions", "opennebula"})

    def __init__(self, store: IndexStore | None = None) -> None:
        self.store = store or IndexStore(None)

    @classmethod
    def from_context(cls, context: Any) -> CatalogueMarketplace:
        """Downloaded indexes go to ``STATE_DIR/marketplaces`` (or the driver option ``index_dir``)."""
        options = dict(context.options or {})
        directory = options.get("index_dir")
        if directory is None and context.state_dir is not None:
            directory = Path(context.state_dir) / "marketplaces"
        return cls(IndexStore(Path(directory) if directory is not None else None))

    def index(self, marketplace: MarketplaceRef, *, force: bool = False) -> Index:
        text = self.store.read(marketplace, force=force)
        try:
            return read_index(text.text, base=text.base)
        except IndexFormatError as error:
            where = marketplace.url or marketplace.path
            raise PermanentError(f"marketplace {marketplace.name}: {where}: {error}", driver=DRIVER) from error

    def list(self, marketplace: MarketplaceRef) -> Sequence[Appliance]:
        return self.index(marketplace).appliances

    def problems(self, marketplace: MarketplaceRef) -> Sequence[str]:
        return self.index(marketplace).problems

    def refresh(self, marketplace: MarketplaceRef) -> Index:
        return self.index(marketplace, force=True)

    def import_(self, marketplace: MarketplaceRef, app: str, *, version: str | None = None) -> Appliance:
        index = self.index(marketplace)
        appliance = select(index.appliances, app, version)
        if appliance is None:
            known = sorted({a.version for a in index.appliances if a.name == app}, reverse=True)
            if known and version is not None:
                raise NotFoundError(
                    f"marketplace {marketplace.name} has no version {version!r} of {app!r} "
                    f"(it has: {', '.join(known)})",
                    driver=DRIVER,
                )
            broken = [problem for problem in index.problems if f"({app})" in problem]
            detail = f"; its entry cannot be read: {broken[0]}" if broken else ""
            raise NotFoundError(f"marketplace {marketplace.name} has no appliance {app!r}{detail}", driver=DRIVER)
        if appliance.problem is not None:
            raise PermanentError(
                f"marketplace {marketplace.name}: {app} {appliance.version} cannot be imported: {appliance.problem}",
                driver=DRIVER,
            )
        return appliance
