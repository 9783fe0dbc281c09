"""The catalogue marketplace driver: appliances listed by an index file (nebctl's format, or OpenNebula's
appliance format) at a URL or a path. ``catalogue.index`` reads an index, ``catalogue.fetching`` downloads and
keeps it, ``catalogue.driver`` is the driver the registry builds.
"""

from __future__ import annotations

from nebctl.drivers.catalogue.driver import CatalogueMarketplace

DRIVER_CLASSES: tuple[type[object], ...] = (CatalogueMarketplace,)

__all__ = ["DRIVER_CLASSES", "CatalogueMarketplace"]
