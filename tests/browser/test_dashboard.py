"""The dashboard in a real browser (headless chromium through Selenium) against a real ``nebctl serve`` of the
sim fleet: signing in, the stacks, a manifest change seen going out of sync and back, a VM stopped behind
nebctl's back seen in the live events, "Sync now" and the apply's timeline filling live, what a viewer may not
do, a form without its CSRF token refused, and axe-core on every page. Each test leaves screenshots in the
artifacts directory (``tests/support/browser.py``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.browser.conftest import Dashboard, git
from tests.support.browser import Browser, browser
from tests.support.serving import vm_manifest, wait_for, write_manifests

__all__: list[str] = []


def _status_of(window: Browser, stack: str) -> str:
    return window.text(f'tr[data-stack="{stack}"] .sync-status')


def _csrf(window: Browser) -> str:
    token = window.all('form.signout input[name="csrf"]')[0].get_attribute("value")
    assert token
    return str(token)


def test_sign_in_and_see_the_stacks(dashboard: Dashboard, window: Browser) -> None:
    window.open("/")
    assert window.path.startswith("/login")  # not signed in: sent to the login page
    window.fill("#username", "ada")
    window.fill("#password", "wrong password")
    window.click("form.login button[type=submit]")
    window.wait(lambda: "wrong user name or password" in window.text() or None, what="the refusal")
    window.screenshot("login-refused")
    window.sign_in(dashboard.admin)
    window.wait(lambda: "synced" in _status_of(window, "site") or None, what="stack site synced")
    row = window.text('tr[data-stack="site"]')
    assert "healthy 7" in row  # two VMs, two hosts, a datastore, an image and a network
    assert window.text(".who") == "ada"
    window.screenshot("overview")
    cookies = {c["name"]: c for c in window.driver.get_cookies()}
    session = cookies["nebctl_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    assert session["secure"] is False  # plain HTTP here; under TLS (or a TLS proxy) the cookie is Secure


def test_a_manifest_change_goes_out_of_sync_then_synced(dashboard: Dashboard, window: Browser) -> None:
    window.sign_in(dashboard.admin)
    window.wait(lambda: "synced" in _status_of(window, "site") or None, what="stack site synced")
    # Another writer holds the lock, so the service sees the change but cannot apply it yet.
    with dashboard.workspace.store() as store:
        lease = store.acquire_lock(holder="a test holding the writers' lock", timeout=10, ttl=300)
        try:
            write_manifests(
                dashboard.workspace.manifests,
                [vm_manifest("web-1", host="h1"), vm_manifest("web-2", host="h2"), vm_manifest("web-3", host="h1")],
            )
            # No reload: the overview's table follows the event stream.
            window.wait(lambda: "out of sync" in _status_of(window, "site") or None, what="out of sync", timeout=30)
            window.screenshot("out-of-sync")
            window.open("/stacks/site")
            window.wait(lambda: 'vm "web-3"' in window.text("#plan") or None, what="web-3 in the pending plan")
            plan = window.text("#plan")
            assert '+ vm "web-3" {' in plan and "Plan: 1 to add, 0 to change, 0 to destroy." in plan, plan
            assert 'vm "web-1"' not in plan
            window.screenshot("stack-pending-plan")
            window.open("/")
        finally:
            lease.release()
    window.wait(lambda: "synced" in _status_of(window, "site") or None, what="synced again", timeout=60)
    assert "healthy 8" in window.text('tr[data-stack="site"]')
    window.screenshot("synced-again")


def test_a_stopped_vm_shows_in_the_events_within_seconds(dashboard: Dashboard, window: Browser) -> None:
    window.sign_in(dashboard.admin)
    window.open("/events")
    time.sleep(0.5)  # the page's event stream connects
    before = {row.get_attribute("data-id") for row in window.all("tr.event")}
    stopped = time.monotonic()
    assert dashboard.workspace.run("sim", "stop-vm", "web-1").returncode == 0

    def drift_row() -> str | None:
        for row in window.all("tr.event"):
            if row.get_attribute("data-id") not in before and row.get_attribute("data-type") == "drift.detected":
                return str(row.text)
        return None

    text = window.wait(drift_row, timeout=10, what="drift.detected of web-1 in the events")
    seen = time.monotonic() - stopped
    assert "vm/web-1" in text and "was stopped" in text
    assert seen < 10
    window.screenshot("events-live")
    # The filter keeps only what it names.
    window.open("/events?type=drift.")
    types = {row.get_attribute("data-type") for row in window.all("tr.event")}
    assert types and all(t.startswith("drift.") for t in types), types


def test_sync_now_and_the_apply_timeline_fills_live(git_dashboard: tuple[Dashboard, Path]) -> None:
    dashboard, repository = git_dashboard
    (repository / "10-vms.yaml").write_text(
        "---\n".join(vm_manifest(f"web-{i}", host="h1" if i % 2 else "h2") for i in range(1, 7)), encoding="utf-8"
    )
    git(repository, "commit", "-q", "-am", "Four more web servers")
    # Each deploy takes two seconds, so the apply lasts long enough to be watched.
    assert dashboard.workspace.run("sim", "latency", "virtualization.deploy", "fixed", "2.0").returncode == 0
    with dashboard.workspace.store() as store:
        before = store.list_applies(stack="site", limit=1)[0].id
    with browser(dashboard.base) as window:
        window.sign_in(dashboard.admin)
        window.open("/stacks/site")
        assert "web-3" not in window.text()  # the new commit is not fetched until a sync
        window.click("#sync-now")
        window.wait(lambda: "Sync requested" in window.text() or None, what="the request acknowledged")

        def newest() -> int | None:
            with dashboard.workspace.store() as store:
                applies = store.list_applies(stack="site", limit=1)
            return applies[0].id if applies and applies[0].id != before else None

        apply_id = wait_for(newest, timeout=30, what="the apply of the sync")
        window.open(f"/applies/{apply_id}")
        assert window.all("#timeline")[0].get_attribute("data-state") == "running"
        window.screenshot("apply-running")
        first = len(window.all('.gantt-row[data-state="succeeded"]'))
        # No reload from here on: the timeline refreshes itself while the apply runs.
        window.wait(
            lambda: window.all("#timeline")[0].get_attribute("data-state") == "succeeded" or None,
            timeout=60,
            what="the apply to finish on the page",
        )
        assert window.path == f"/applies/{apply_id}"
        rows = window.all(".gantt-row")
        done = [r for r in rows if r.get_attribute("data-state") == "succeeded"]
        assert len(done) == len(rows) > first
        deploys = [r.text for r in rows if r.text.startswith("deploy vm/web-")]
        assert sorted(re.findall(r"web-\d", " ".join(deploys))) == ["web-3", "web-4", "web-5", "web-6"]
        # The deploys ran at once (the executor's parallelism): their bars overlap on the time axis, and each
        # two-second deploy takes most of the apply's span.
        bars = {}
        for row in rows:
            label = row.find_element("css selector", ".gantt-label").text
            style = row.find_element("css selector", ".gantt-bar").get_attribute("style")
            x, width = (float(v) for v in re.findall(r"(?:left|width): ([\d.]+)%", style))
            bars[label] = (x, x + width)
        deploys = [span for label, span in bars.items() if label.startswith("deploy vm/")]
        assert len(deploys) == 4
        assert max(start for start, _ in deploys) < min(end for _, end in deploys)
        assert all(end - start > 40 for start, end in deploys), deploys
        window.screenshot("apply-timeline")
        # The overview names the commit now applied: its short sha, author and subject, as git has them.
        head = git(repository, "rev-parse", "HEAD")
        window.open("/")
        window.wait(lambda: head[:12] in window.text('tr[data-stack="site"]') or None, what="the new revision")
        row = window.text('tr[data-stack="site"]')
        assert "Ada Author <ada@example.org>" in row and "Four more web servers" in row, row
        window.screenshot("overview-git")


def test_a_viewer_sees_no_sync_button_and_is_refused(dashboard: Dashboard, window: Browser) -> None:
    window.sign_in(dashboard.viewer)
    window.open("/stacks/site")
    assert window.all("#sync-now") == [] and window.all("#switch-mode") == []
    window.screenshot("viewer-stack")
    status, text = window.fetch("/stacks/site/sync", body=f"csrf={_csrf(window)}")
    assert status == 403 and "vic may not apply" in text
    status, _ = window.fetch("/stacks/site/mode", body=f"csrf={_csrf(window)}&mode=report-only")
    assert status == 403
    with dashboard.workspace.store() as store:
        assert store.stack_status("site").sync_requested_at is None  # type: ignore[union-attr]
    assert "self-heal" in window.text("#mode") if window.all("#mode") else True


def test_a_post_without_its_csrf_token_is_refused(dashboard: Dashboard, window: Browser) -> None:
    window.sign_in(dashboard.admin)
    window.open("/stacks/site")
    status, text = window.fetch("/stacks/site/sync", body="")
    assert status == 403 and "CSRF" in text
    status, _ = window.fetch("/stacks/site/sync", body="csrf=" + "0" * 64)
    assert status == 403
    with dashboard.workspace.store() as store:
        assert store.stack_status("site").sync_requested_at is None  # type: ignore[union-attr]
    # The same post with the page's token is accepted (the redirect lands on the stack page).
    status, text = window.fetch("/stacks/site/sync", body=f"csrf={_csrf(window)}")
    assert status == 200 and "Sync requested" in text
    window.screenshot("csrf")
    # The admin's mode switch works the same way, through its button, reached and pressed with the keyboard only.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    window.open("/stacks/site")
    focused: list[str] = []
    for _ in range(40):
        ActionChains(window.driver).send_keys(Keys.TAB).perform()
        focused.append(str(window.driver.switch_to.active_element.get_attribute("id") or ""))
        if focused[-1] == "switch-mode":
            break
    assert focused[-1] == "switch-mode" and "sync-now" in focused, focused
    ActionChains(window.driver).send_keys(Keys.ENTER).perform()
    window.wait(lambda: window.text("#mode") == "report-only" or None, what="report-only mode")
    wait_for(lambda: dashboard.served.events("service.mode"), what="the service.mode event")


def test_every_page_passes_axe_and_fits_a_narrow_window(dashboard: Dashboard) -> None:
    pages = ["/", "/stacks/site", "/hosts", "/vms/default/web-1", "/applies/1", "/events"]
    for width in (1280, 400):
        with browser(dashboard.base, width=width, height=900) as window:
            window.open("/login")
            assert window.axe() == [], "login"
            window.sign_in(dashboard.admin)
            for path in pages:
                window.open(path)
                if path == "/stacks/site":
                    window.wait(lambda: "Planning" not in window.text("#plan") or None, what="the plan")
                violations = window.axe()
                assert violations == [], (path, width, violations)
                overflow = window.driver.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, (path, width, overflow)
                window.screenshot(f"page{path.replace('/', '-') or '-overview'}-{width}")
