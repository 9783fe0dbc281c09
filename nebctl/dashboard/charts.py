"""The dashboard's pictures, drawn on the server as SVG: line charts of samples over time and the apply timeline
(one bar per action, like a Gantt chart).

Pure: values in, geometry out. The templates (``templates/_chart.html``, ``templates/_timeline.html``) turn the
geometry into SVG elements; every bar and line also carries its values as text (a ``<title>`` and the table
beside it), so nothing is said by colour alone. Used by ``dashboard.views``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

CHART_WIDTH = 600
CHART_HEIGHT = 160
PAD = 36


@dataclass(frozen=True)
class Line:
    label: str
    points: str  # SVG polyline points, "x,y x,y ..."
    latest: str  # the newest value, as text


@dataclass(frozen=True)
class Chart:
    title: str
    lines: tuple[Line, ...]
    y_max: str
    start: str
    end: str
    empty: bool
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    pad: int = PAD


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
    *,
    y_max: float | None = None,
    unit: str = "",
) -> Chart:
    """A chart of each ``(label, [(time, value)])`` series over the same time axis and a y axis from 0 to
    ``y_max`` (by default the largest value)."""
    times = [t for _, values in series for t, _ in values]
    if not times:
        return Chart(title, (), "", "", "", empty=True)
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1e-9)
    top = y_max if y_max else max((v for _, values in series for _, v in values), default=0.0)
    top = top or 1.0
    inner_w, inner_h = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD
    lines = []
    for label, values in series:
        points = " ".join(
            f"{PAD + inner_w * (t - t0).total_seconds() / span:.1f},"
            f"{PAD + inner_h * (1 - min(max(v, 0.0), top) / top):.1f}"
            for t, v in values
        )
        latest = f"{values[-1][1]:.4g}{unit}" if values else "-"
        lines.append(Line(label, points, latest))
    return Chart(
        title,
        tuple(lines),
        y_max=f"{top:.4g}{unit}",
        start=t0.strftime("%H:%M:%S"),
        end=t1.strftime("%H:%M:%S"),
        empty=False,
    )


@dataclass(frozen=True)
class Bar:
    label: str
    state: str
    x: float  # percent of the timeline's width
    width: float
    attempts: int
    start: str
    end: str
    seconds: str
    error: str | None
    anchor: str  # the id of the action's row (and of its error)


@dataclass(frozen=True)
class Timeline:
    bars: tuple[Bar, ...]
    span: str  # the whole apply's duration, as text
    start: str


@dataclass(frozen=True)
class Step:
    """One action as the journal has it."""

    action_id: str
    label: str
    state: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def timeline(steps: Sequence[Step], *, now: datetime, begin: datetime | None = None) -> Timeline:
    """Bars on a common time axis from the first start to the last end (a running action runs until ``now``);
    actions not started yet get an empty bar at the end of the axis, in journal order."""
    starts = [s.started_at for s in steps if s.started_at is not None]
    t0 = min([begin, *starts] if begin else starts, default=now)
    ends = [s.finished_at or now for s in steps if s.started_at is not None]
    t1 = max([*ends, t0])
    span = max((t1 - t0).total_seconds(), 1e-3)
    bars = []
    for index, step in enumerate(steps):
        if step.started_at is None:
            x, width, seconds, start, end = 100.0, 0.0, "-", "not started", "-"
        else:
            stop = step.finished_at or now
            x = 100.0 * (step.started_at - t0).total_seconds() / span
            width = max(100.0 * (stop - step.started_at).total_seconds() / span, 0.4)
            width = min(width, 100.0 - x) if x < 100.0 else 0.4
            seconds = f"{(stop - step.started_at).total_seconds():.2f} s"
            start = f"+{(step.started_at - t0).total_seconds():.2f} s"
            end = f"+{(step.finished_at - t0).total_seconds():.2f} s" if step.finished_at else "running"
        bars.append(
            Bar(
                label=step.label,
                state=step.state,
                x=round(x, 2),
                width=round(width, 2),
                attempts=step.attempts,
                start=start,
                end=end,
                seconds=seconds,
                error=step.error,
                anchor=f"action-{index}",
            )
        )
    return Timeline(tuple(bars), span=f"{span:.2f} s", start=t0.strftime("%Y-%m-%d %H:%M:%S"))
