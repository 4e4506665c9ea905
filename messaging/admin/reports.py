"""The inbox's reports page (/admin/messaging/conversation/reports/): the team's daily chart, drawn
as SVG on the server, and the figures per operator or sender number, as tables and as CSV.

Anyone who may view conversations opens it and sees the figures of the conversations they see
(messaging.reports.inbox_report); the figures' definitions are in that module and on the page."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from core.params import int_param
from core.spreadsheets import cell_escape
from messaging.reports import GROUPINGS, Figures, InboxReport, inbox_report

RANGES = (7, 30, 90)  # days
DEFAULT_RANGE = 30
GROUP_NAMES = {"operator": "Operators", "number": "Numbers"}
# Round steps for the time axis, in seconds.
TIME_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)

# The chart's canvas (SVG user units; the SVG scales to the page's width).
WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 72, 36, 44
TICKS = 4


def duration_text(seconds: float | None) -> str:
    """ "40s", "4m 10s", "2h 3m", "3d 4h"; a dash when there is nothing to measure."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m {rest}s" if rest else f"{minutes}m"
    if whole < 86400:
        hours, rest = divmod(whole // 60, 60)
        return f"{hours}h {rest}m" if rest else f"{hours}h"
    days, rest = divmod(whole // 3600, 24)
    return f"{days}d {rest}h" if rest else f"{days}d"


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass
class Tick:
    y: float
    left: str  # conversations handled
    right: str  # first response time


@dataclass
class DayLabel:
    x: float
    text: str


@dataclass
class Chart:
    width: int
    height: int
    left: int
    right: int  # x of the plot's right edge
    top: int
    bottom: int  # y of the plot's baseline
    bars: list[Bar]
    line: str  # an SVG path: one segment per run of days with a first response
    points: list[tuple[float, float, str]]
    ticks: list[Tick]
    days: list[DayLabel]
    empty: bool


def _nice_count(value: int) -> int:
    """The smallest of 4, 8, 20, 40, 80, 200 ... at or above `value` (four ticks of round numbers)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if TICKS * step * factor >= value:
                return TICKS * step * factor
        step *= 10


def _nice_time(value: float) -> float:
    for step in TIME_STEPS:
        if TICKS * step >= value:
            return TICKS * step
    return TICKS * math.ceil(value / TICKS / 86400) * 86400


def report_chart(report: InboxReport) -> Chart:
    """Conversations handled per day (bars, left axis) and the day's median first response (line,
    right axis), for everyone in the report."""
    days = report.days
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_h
    figures = [report.team_by_day.get(day, Figures()) for day in days]
    count_max = _nice_count(max([*(f.handled for f in figures), 1]))
    times = [f.first_response_s for f in figures if f.first_response_s is not None]
    time_max = _nice_time(max([*times, 60.0]))
    slot = plot_w / max(len(days), 1)

    bars, points, line = [], [], []
    previous_shown = False
    for n, (day, day_figures) in enumerate(zip(days, figures, strict=True)):
        middle = LEFT + slot * (n + 0.5)
        tip = (
            f"{day:%a %-d %b}: {day_figures.handled} handled, median first response "
            f"{duration_text(day_figures.first_response_s)}, median resolution "
            f"{duration_text(day_figures.resolution_s)}"
        )
        height = plot_h * day_figures.handled / count_max
        bars.append(
            Bar(x=middle - slot * 0.3, y=baseline - height, width=slot * 0.6, height=height, title=tip)
        )
        if day_figures.first_response_s is None:
            previous_shown = False
            continue
        y = baseline - plot_h * day_figures.first_response_s / time_max
        line.append(f"{'L' if previous_shown else 'M'}{middle:.1f},{y:.1f}")
        points.append((round(middle, 1), round(y, 1), tip))
        previous_shown = True

    ticks = [
        Tick(
            y=baseline - plot_h * n / TICKS,
            left=str(count_max * n // TICKS),
            right=duration_text(time_max * n / TICKS),
        )
        for n in range(TICKS + 1)
    ]
    every = max(1, math.ceil(len(days) / 10))
    labels = [
        DayLabel(x=LEFT + slot * (n + 0.5), text=f"{day:%-d %b}")
        for n, day in enumerate(days)
        if (len(days) - 1 - n) % every == 0
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=baseline,
        bars=bars,
        line=" ".join(line),
        points=points,
        ticks=ticks,
        days=labels,
        empty=report.team.handled == 0,
    )


def report_period(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `days` days, today included, from midnight to midnight in the current time zone."""
    today = timezone.localdate(now)
    zone = timezone.get_current_timezone()
    start = datetime.combine(today - timedelta(days=days - 1), time.min, tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


@dataclass
class Line:
    """A table's line: its figures as the page shows them."""

    label: str
    handled: int
    first_response: str
    resolution: str
    first_responses: int
    resolutions: int

    @classmethod
    def of(cls, label: str, figures: Figures) -> Line:
        return cls(
            label=label,
            handled=figures.handled,
            first_response=duration_text(figures.first_response_s),
            resolution=duration_text(figures.resolution_s),
            first_responses=figures.first_responses,
            resolutions=figures.resolutions,
        )


@dataclass
class DayRow:
    day: date
    team: Line
    lines: list[Line]  # each operator or number with something that day


def _csv(report: InboxReport) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"inbox-report-{report.group_by}s-{report.days[0]:%Y%m%d}-{report.days[-1]:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "day",
            report.group_by,
            "conversations_handled",
            "median_first_response_s",
            "median_resolution_s",
            "first_responses",
            "resolutions",
        ]
    )

    def seconds(value: float | None) -> str:
        return "" if value is None else str(round(value))

    def write(day: str, label: str, figures: Figures) -> None:
        writer.writerow(
            [
                day,
                cell_escape(label),  # an operator's or a number's name
                figures.handled,
                seconds(figures.first_response_s),
                seconds(figures.resolution_s),
                figures.first_responses,
                figures.resolutions,
            ]
        )

    for row in report.rows:
        write("total", row.label, row.total)
    for day in report.days:
        for row in report.rows:
            if day in row.by_day:
                write(day.isoformat(), row.label, row.by_day[day])
    return response


def reports_view(request: HttpRequest, *, model_admin: ModelAdmin) -> HttpResponse:
    """The page, or its table as CSV with ?format=csv; ?by=operator|number, ?days=7|30|90."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    group_by = request.GET.get("by", "operator")
    group_by = group_by if group_by in GROUPINGS else "operator"
    days = int_param(request.GET.get("days"))
    days = days if days in RANGES else DEFAULT_RANGE
    since, until = report_period(days)
    report = inbox_report(since=since, until=until, user=request.user, group_by=group_by)
    if request.GET.get("format") == "csv":
        return _csv(report)

    day_rows = [
        DayRow(
            day=day,
            team=Line.of("Team", report.team_by_day.get(day, Figures())),
            lines=[Line.of(row.label, row.by_day[day]) for row in report.rows if day in row.by_day],
        )
        for day in reversed(report.days)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Inbox reports",
        "report": report,
        "chart": report_chart(report),
        "team": Line.of("Team", report.team),
        "lines": [Line.of(row.label, row.total) for row in report.rows],
        "day_rows": day_rows,
        "group_name": GROUP_NAMES[group_by][:-1],
        "groupings": [
            {"name": GROUP_NAMES[name], "url": f"?by={name}&days={days}", "current": name == group_by}
            for name in GROUPINGS
        ],
        "ranges": [
            {"name": f"{count} days", "url": f"?by={group_by}&days={count}", "current": count == days}
            for count in RANGES
        ],
        "days": days,
        "csv_url": f"?by={group_by}&days={days}&format=csv",
        "inbox_url": reverse("admin:messaging_conversation_changelist"),
    }
    return TemplateResponse(request, "admin/messaging/reports.html", context)
