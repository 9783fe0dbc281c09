"""The apply timeline's and the charts' geometry, against positions worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nebctl.dashboard.charts import CHART_HEIGHT, CHART_WIDTH, PAD, Step, line_chart, timeline

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_bars_sit_on_one_axis_from_the_first_start_to_the_last_end() -> None:
    # 0..10 s: a runs 0-4, b runs 2-10 (after one retry), c is not started yet.
    steps = [
        Step("a", "create vm/a", "succeeded", 1, at(0), at(4), None),
        Step("b", "create vm/b", "failed", 2, at(2), at(10), "boom"),
        Step("c", "post vm/c", "pending", 0, None, None, None),
    ]
    chart = timeline(steps, now=at(30))
    a, b, c = chart.bars
    assert (a.x, a.width, a.start, a.end, a.seconds) == (0.0, 40.0, "+0.00 s", "+4.00 s", "4.00 s")
    assert (b.x, b.width, b.attempts, b.error) == (20.0, 80.0, 2, "boom")
    assert (c.x, c.width, c.start) == (100.0, 0.0, "not started")
    assert chart.span == "10.00 s"
    assert [bar.anchor for bar in chart.bars] == ["action-0", "action-1", "action-2"]


def test_a_running_action_runs_until_now_and_the_apply_start_opens_the_axis() -> None:
    steps = [Step("a", "deploy vm/a", "running", 1, at(5), None, None)]
    chart = timeline(steps, now=at(15), begin=at(0))
    (bar,) = chart.bars
    assert (bar.x, bar.width, bar.end) == (33.33, 66.67, "running")


def test_a_line_chart_maps_time_to_x_and_value_to_y() -> None:
    chart = line_chart("load", [("cpu", [(at(0), 0.0), (at(10), 2.0), (at(20), 4.0)])], y_max=4.0)
    inner_w, inner_h = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD
    expected = [(PAD, PAD + inner_h), (PAD + inner_w / 2, PAD + inner_h / 2), (PAD + inner_w, PAD)]
    points = [tuple(float(v) for v in p.split(",")) for p in chart.lines[0].points.split()]
    assert points == [(round(x, 1), round(y, 1)) for x, y in expected]
    assert (chart.y_max, chart.lines[0].latest, chart.start, chart.end) == ("4", "4", "12:00:00", "12:00:20")


def test_a_chart_without_samples_says_so() -> None:
    assert line_chart("load", [("cpu", [])]).empty
