"""A large apply's timeline page shows its actions a page at a time, on one axis for the whole apply, and lists
every failed action with a link to its page: first the view's slices on a real SQLite journal, then the pages as
a real ``nebctl serve`` renders them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from jinja2 import Environment, FileSystemLoader

from nebctl.core.keys import Kind
from nebctl.dashboard import views
from nebctl.database import ActionRecord, ActionState, ApplyState, Store
from tests.integration.dashboard.test_http import _serve, _sign_in
from tests.integration.serving.conftest import make_workspace
from tests.support.browser import add_user

ACTIONS = 450  # two full pages of 200 and a last one of 50
FAILED = (5, 250, 449)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _journal_a_large_apply(store: Store) -> int:
    """An apply of 450 deploys, one second each and one after another, three of which failed."""
    apply_id = store.begin_apply(stack="big", revision=None, plan={}, holder="test")
    store.journal_actions(
        apply_id,
        [ActionRecord(f"vm/vm-{i:03}:deploy", Kind.VIRTUAL_MACHINE, "default", f"vm-{i:03}", "vm", "deploy")
         for i in range(ACTIONS)],
    )  # fmt: skip
    for i in range(ACTIONS):
        failed = i in FAILED
        store.update_action(
            apply_id,
            f"vm/vm-{i:03}:deploy",
            state=ActionState.FAILED if failed else ActionState.SUCCEEDED,
            attempts=1,
            started_at=T0 + timedelta(seconds=i),
            finished_at=T0 + timedelta(seconds=i + 1),
            error=f"vm-{i:03} would not start" if failed else None,
        )
    store.finish_apply(apply_id, state=ApplyState.PARTIAL, summary={})
    return apply_id


def _page(store: Store, apply_id: int, number: int) -> dict[str, Any]:
    shown = views.apply(store, apply_id, page=number)
    assert shown is not None
    return shown


def test_pages_slice_the_actions_on_one_axis(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        apply_id = _journal_a_large_apply(store)
        first, second, last, beyond, before = (_page(store, apply_id, n) for n in (1, 2, 3, 9, 0))
    finally:
        store.close()
    pages = (first, second, last)
    assert [len(p["rows"]) for p in pages] == [200, 200, 50]
    assert [p["rows"][0][0].label for p in pages] == ["deploy vm/vm-000", "deploy vm/vm-200", "deploy vm/vm-400"]
    assert (second["pages"].first, second["pages"].last, second["pages"].total) == (201, 400, 450)
    assert (second["pages"].earlier, second["pages"].later, last["pages"].later) == (1, 3, None)
    # One axis for the whole apply: 450 s, so the 201st action starts at 200/450 of the width on page 2.
    assert {p["timeline"].span for p in pages} == {"450.00 s"}
    assert second["timeline"].bars[0].x == round(100 * 200 / 450, 2)
    # Out-of-range pages show the nearest page.
    assert beyond["pages"].number == 3 and before["pages"].number == 1
    # Every failed action is listed on every page, with the page it is on and its anchor there.
    assert [(bar.label, page, bar.anchor) for bar, page in first["failed"]] == [
        ("deploy vm/vm-005", 1, "action-5"),
        ("deploy vm/vm-250", 2, "action-250"),
        ("deploy vm/vm-449", 3, "action-449"),
    ]
    assert first["states"] == {"succeeded": 447, "failed": 3}
    # While the apply runs, the page refreshes the page of actions it shows, not the first one.
    templates = Environment(loader=FileSystemLoader(Path(views.__file__).parent / "templates"), autoescape=True)
    running = templates.get_template("_timeline.html").render(**{**second, "running": True})
    assert f'hx-get="/applies/{apply_id}/timeline?page=2"' in running


def test_the_served_page_links_pages_and_errors(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    workspace.run("status")
    add_user(workspace, "ada", "correct horse", ["get"])
    store = Store.open(workspace.db_url)
    try:
        apply_id = _journal_a_large_apply(store)
    finally:
        store.close()
    served = _serve(workspace)
    try:
        with httpx.Client(base_url=served.url("")) as client:
            assert _sign_in(client, "ada", "correct horse").status_code == 303
            page = client.get(f"/applies/{apply_id}?page=2")
            assert page.status_code == 200
            html = page.text
            assert "Actions 201\u2013400 of 450" in html
            assert f'href="/applies/{apply_id}?page=1">\u2039 earlier' in html
            assert f'href="/applies/{apply_id}?page=3">later \u203a' in html
            rows = re.findall(r'<tr id="action-(\d+)">', html)
            assert (len(rows), rows[0], rows[-1]) == (200, "200", "399")
            assert "hx-get" not in html  # a finished apply's page does not refresh itself
            # An error on this page links to its row here; the others to their pages.
            assert f'href="/applies/{apply_id}?page=1#action-5"' in html
            assert 'href="#action-250"' in html
            assert f'href="/applies/{apply_id}?page=3#action-449"' in html
            fragment = client.get(f"/applies/{apply_id}/timeline?page=3")
            assert fragment.status_code == 200 and len(re.findall(r'<tr id="action-', fragment.text)) == 50
    finally:
        served.terminate()
