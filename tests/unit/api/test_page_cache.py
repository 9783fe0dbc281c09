"""``api.caching.PageCache``: one build per page however many ask at once, pages dropped when the counter moves
on, a reader of an older counter never keeping (nor getting) a page of a newer one, and the bounds in pages and
in bytes. Real threads; the expected counts are those of the scenario, not read from the cache."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from nebctl.api.caching import Page, PageCache


def test_one_build_for_many_concurrent_askers() -> None:
    cache = PageCache()
    builds = []
    gate = threading.Event()

    def build() -> Page:
        builds.append(1)
        gate.wait(5)  # every asker arrives while the first build is still running
        return Page(b"[1]", {"X-Total-Count": "1"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(cache.get, 7, "key", build) for _ in range(20)]
        time.sleep(0.3)
        gate.set()
        pages = [future.result(timeout=10) for future in futures]
    assert len(builds) == 1
    assert {page.body for page in pages} == {b"[1]"}


def test_a_new_counter_drops_the_pages_of_the_old_one() -> None:
    cache = PageCache()
    assert cache.get(1, "a", lambda: Page(b"old")).body == b"old"
    assert cache.get(1, "a", lambda: Page(b"not built")).body == b"old"
    assert cache.get(2, "a", lambda: Page(b"new")).body == b"new"
    assert cache.peek(1, "a") is None  # an older reader gets nothing kept
    # A reader of the older counter builds its own page, which is not kept over the newer one.
    assert cache.get(1, "a", lambda: Page(b"older")).body == b"older"
    assert cache.get(2, "a", lambda: Page(b"not built")).body == b"new"
    cache.put(1, "b", Page(b"late"))
    assert cache.peek(2, "b") is None


def test_bounded_in_pages_and_in_bytes() -> None:
    cache = PageCache(max_pages=3, max_bytes=1000)
    for name in "abcd":
        cache.get(1, name, lambda: Page(b"x" * 100))
    assert [name for name in "abcd" if cache.peek(1, name) is not None] == ["b", "c", "d"]  # the oldest went
    cache.get(1, "big", lambda: Page(b"x" * 240))  # fits: 3 pages at most, so b goes
    assert [name for name in ("b", "c", "d", "big") if cache.peek(1, name) is not None] == ["c", "d", "big"]
    huge = cache.get(1, "huge", lambda: Page(b"x" * 300))  # over a quarter of the bytes: served, not kept
    assert len(huge.body) == 300 and cache.peek(1, "huge") is None
