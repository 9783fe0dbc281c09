"""Image bytes from anywhere, fetched once: the http(s) transfer (resume, retries, redirects, length checks, the
sha256 computed while the bytes arrive), the content-addressed cache in the data directory that every host's
import is fed from, and the progress meter that reports a transfer to the executor and the log.

Used by the controller's execution world (``controller.applying``) for image imports, by drivers that must
fetch a URL themselves (``drivers.libvirt.images``), and by the catalogue marketplace driver for its index.
"""

from __future__ import annotations

from nebctl.drivers.downloads.cache import CachedImage, ImageCache
from nebctl.drivers.downloads.fetching import FetchPolicy, Transfer, fetch
from nebctl.drivers.downloads.progress import ProgressMeter

__all__ = ["CachedImage", "FetchPolicy", "ImageCache", "ProgressMeter", "Transfer", "fetch"]
