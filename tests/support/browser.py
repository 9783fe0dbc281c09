"""A real browser for the dashboard's tests and benchmark: Debian's chromium, headless, driven by Selenium
through chromium-driver (both installed by ``make setup-system``), plus the users the tests sign in as, the
screenshots they leave behind, and axe-core's accessibility check.

Nothing downloads a browser: ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are used as installed. Without
them the tests skip, except with CI=true, where they fail. Screenshots go to ``$NEBCTL_ARTIFACTS/browser``
(default ``artifacts/browser`` in the repository).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.drills import REPO_ROOT, Workspace, _env

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = REPO_ROOT / "tests" / "support" / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def artifacts() -> Path:
    directory = Path(os.environ.get("NEBCTL_ARTIFACTS", REPO_ROOT / "artifacts")) / "browser"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def require_browser() -> None:
    """Skip (fail under CI=true) when chromium or chromium-driver is not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed: run 'sudo make setup-system' (Debian's chromium, chromium-driver)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# --- users -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    password: str


def add_user(workspace: Workspace, name: str, password: str, actions: list[str]) -> User:
    """A user of ``workspace``'s database, added as an operator would (``nebctl user add``, then ``nebctl acl
    add`` allowing their group ``actions`` everywhere)."""
    group = f"{name}-group"
    commands = [
        (["user", "add", name, "--group", group, "--password-stdin"], password + "\n"),
        (["acl", "add", "allow", "--group", group, *(f"--action={a}" for a in actions)], None),
    ]
    for args, stdin in commands:
        done = subprocess.run(
            workspace.command(*args), input=stdin, capture_output=True, text=True, env=_env(), timeout=60, check=False
        )
        assert done.returncode == 0, f"nebctl {' '.join(args)}: {done.stderr}"
    return User(name, password)


# --- the browser ----------------------------------------------------------------------------------------------


class Browser:
    """One headless chromium window, with the few operations the tests need."""

    def __init__(self, base: str, *, width: int = 1280, height: int = 900) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={width},{height}",
        ):
            options.add_argument(argument)
        self.base = base
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        # A headless window is no narrower than 500 px; a phone's viewport is emulated instead.
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url[len(self.base) :] if url.startswith(self.base) else url

    def text(self, selector: str = "body") -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.CSS_SELECTOR, selector).text)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def click(self, selector: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def fill(self, selector: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        element = self.driver.find_element(By.CSS_SELECTOR, selector)
        element.clear()
        element.send_keys(value)

    def sign_in(self, user: User) -> None:
        self.open("/login")
        self.fill("#username", user.name)
        self.fill("#password", user.password)
        self.click("form.login button[type=submit]")
        self.wait(lambda: self.path == "/" or None, what="the overview after signing in")

    def wait(self, check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "the page") -> T:
        from tests.support.serving import wait_for

        def safe() -> T | None:
            from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

            try:
                return check()
            except (StaleElementReferenceException, WebDriverException):
                return None

        return wait_for(safe, timeout=timeout, what=f"{what} (at {self.path})")

    def screenshot(self, name: str) -> Path:
        path = artifacts() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        self.driver.save_screenshot(str(path))
        return path

    def fetch(self, path: str, *, method: str = "POST", body: str = "") -> tuple[int, str]:
        """A request made by the page's own JavaScript (with the session's cookie), following redirects: the
        final status and text."""
        script = """
            const done = arguments[arguments.length - 1];
            fetch(arguments[0], {method: arguments[1], body: arguments[2] || undefined, credentials: "same-origin",
                                 headers: {"Content-Type": "application/x-www-form-urlencoded"}})
              .then(r => r.text().then(t => done([r.status, t])))
              .catch(e => done([0, String(e)]));
        """
        status, text = self.driver.execute_async_script(script, path, method, body)
        return int(status), str(text)

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the current page (WCAG 2 A and AA rules)."""
        self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        script = """
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
              .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                      nodes: v.nodes.slice(0, 3).map(n => n.html)}))))
              .catch(e => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));
        """
        violations: list[dict[str, Any]] = self.driver.execute_async_script(script)
        return [v for v in violations if v.get("impact") in SERIOUS]


@contextmanager
def browser(base: str, **size: int) -> Iterator[Browser]:
    require_browser()
    window = Browser(base, **size)
    try:
        yield window
    finally:
        window.close()
