"""What the dashboard shows, read from the daily counters (dashboard/rollups.py) and from two small
aggregates: the period's campaigns (their recipients, by the campaign's index) and archival's runs.
Every chart's data is shaped as Chart.js takes it (labels, datasets), so the page only draws it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from archival.models import ArchiveBatch
from campaigns.models import Campaign, Recipient
from contacts.models import Channel
from dashboard.models import MessageDay, OptOutDay
from messaging.models import Message, PhoneNumber

PERIODS = (7, 30, 90)  # days
DEFAULT_PERIOD = 30
CAMPAIGNS_SHOWN = 12  # the latest started in the period
FUNNEL = ("sent", "delivered", "read")
_S = Message.Status


@dataclass
class Dashboard:
    days: list[date]
    phone_number: PhoneNumber | None
    cards: dict[str, int | float | None]
    charts: dict[str, dict] = field(default_factory=dict)
    has_messages: bool = False
    has_campaigns: bool = False
    has_opt_outs: bool = False
    has_archival: bool = False


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _number_label(numbers: dict[int, PhoneNumber], number_id: int | None) -> str:
    number = numbers.get(number_id) if number_id is not None else None
    return str(number) if number else ("no number" if number_id is None else f"number #{number_id}")


def dashboard_get(*, days: int, phone_number: PhoneNumber | None, today: date) -> Dashboard:
    since = today - timedelta(days=days - 1)
    day_list = [since + timedelta(days=n) for n in range(days)]
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)

    rows = MessageDay.objects.filter(day__gte=since, day__lte=today)
    if phone_number is not None:
        rows = rows.filter(phone_number_id=phone_number.pk)
    rows = list(
        rows.values("day", "phone_number_id", "direction", "status", "error_code", "error_title", "count")
    )
    numbers = {number.pk: number for number in PhoneNumber.objects.all()}

    # Messages per day: received (inbound) and sent (outbound), per sender number.
    per_day: dict[tuple[int | None, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    failures: dict[int | None, int] = defaultdict(int)
    titles: dict[int | None, str] = {}
    today_messages = 0
    for row in rows:
        status, count = row["status"], row["count"]
        totals[status] += count
        if status in ("received", "sent"):
            per_day[(row["phone_number_id"], row["direction"])][row["day"]] += count
            today_messages += count if row["day"] == today else 0
        if status == "failed":
            failures[row["error_code"]] += count
            titles[row["error_code"]] = titles.get(row["error_code"]) or row["error_title"]
    # One event per message and status: each step counts the messages Meta reported at it.
    reached = {step: totals[step] for step in FUNNEL}
    datasets = []
    for (number_id, direction), counts in sorted(
        per_day.items(), key=lambda item: (_number_label(numbers, item[0][0]), item[0][1])
    ):
        verb = "received" if direction == "inbound" else "sent"
        datasets.append(
            {
                "label": f"{_number_label(numbers, number_id)} {verb}",
                "stack": direction,
                "data": [counts.get(day, 0) for day in day_list],
            }
        )
    failed_codes = sorted(failures.items(), key=lambda item: (-item[1], item[0] or 0))

    campaigns = _campaigns(start=start, end=end, phone_number=phone_number)
    opt_outs = _opt_outs(since=since, today=today, day_list=day_list)
    archival = _archival(start=start, end=end, day_list=day_list)
    labels = [day.isoformat() for day in day_list]
    return Dashboard(
        days=day_list,
        phone_number=phone_number,
        cards={
            "messages_today": today_messages,
            "received": totals["received"],
            "sent": reached["sent"],
            "delivery_rate": _rate(reached["delivered"], reached["sent"]),
            "read_rate": _rate(reached["read"], reached["sent"]),
            "failed": totals["failed"],
            "opt_outs": sum(sum(dataset["data"]) for dataset in opt_outs),
        },
        charts={
            "messages": {"labels": labels, "datasets": datasets},
            "funnel": {
                "labels": ["Sent", "Delivered", "Read", "Failed"],
                "datasets": [{"label": "Messages", "data": [*reached.values(), totals["failed"]]}],
            },
            "failures": {
                "labels": [
                    f"{code if code is not None else 'no code'}: {titles.get(code) or 'unknown error'}"
                    for code, _count in failed_codes
                ],
                "datasets": [{"label": "Failed messages", "data": [count for _code, count in failed_codes]}],
            },
            "campaigns": campaigns,
            "opt_outs": {"labels": labels, "datasets": opt_outs},
            "archival": archival,
        },
        has_messages=bool(rows),
        has_campaigns=bool(campaigns["labels"]),
        has_opt_outs=any(any(dataset["data"]) for dataset in opt_outs),
        has_archival=any(archival["datasets"][0]["data"]),
    )


def _campaigns(*, start: datetime, end: datetime, phone_number: PhoneNumber | None) -> dict:
    """The latest campaigns started in the period: recipients, and the share of them sent,
    delivered, read and failed (WhatsApp by the message's times, email and SMS by the recipient)."""
    campaigns = Campaign.objects.filter(started_at__gte=start, started_at__lt=end)
    if phone_number is not None:
        campaigns = campaigns.filter(phone_number=phone_number)
    chosen = list(campaigns.order_by("-started_at", "-id")[:CAMPAIGNS_SHOWN].values("id", "name"))
    ids = [row["id"] for row in chosen]
    sent = Q(message__sent_at__isnull=False) | Q(status=Recipient.Status.SENT)
    figures = {
        row["campaign_id"]: row
        for row in Recipient.objects.filter(campaign_id__in=ids)
        .values("campaign_id")
        .annotate(
            recipients=Count("id"),
            sent=Count("id", filter=sent),
            delivered=Count("id", filter=Q(message__delivered_at__isnull=False)),
            read=Count("id", filter=Q(message__read_at__isnull=False)),
            failed=Count("id", filter=Q(status=Recipient.Status.FAILED) | Q(message__status=_S.FAILED)),
        )
    }
    chosen.reverse()  # oldest first, left to right
    empty = {"recipients": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0}
    rows = [figures.get(row["id"], empty) for row in chosen]
    return {
        "labels": [row["name"] for row in chosen],
        "recipients": [row["recipients"] for row in rows],
        "datasets": [
            {
                "label": f"{name} %",
                "key": name,
                "data": [_rate(row[name], row["recipients"]) or 0 for row in rows],
            }
            for name in ("sent", "delivered", "read", "failed")
        ],
    }


def _opt_outs(*, since: date, today: date, day_list: list[date]) -> list[dict]:
    counts: dict[str, dict[date, int]] = defaultdict(dict)
    for row in OptOutDay.objects.filter(day__gte=since, day__lte=today).values("day", "channel", "count"):
        counts[row["channel"]][row["day"]] = row["count"]
    return [
        {"label": channel.label, "data": [counts[channel.value].get(day, 0) for day in day_list]}
        for channel in Channel
    ]


def _archival(*, start: datetime, end: datetime, day_list: list[date]) -> dict:
    """Messages archived (deleted from the database once in S3) per day of the run, and the
    archives' gzipped bytes."""
    runs = {
        row["run_day"]: row
        for row in ArchiveBatch.objects.filter(
            kind=ArchiveBatch.Kind.MESSAGES,
            state=ArchiveBatch.State.DELETED,
            deleted_at__gte=start,
            deleted_at__lt=end,
        )
        .annotate(run_day=TruncDate("deleted_at", tzinfo=UTC))
        .values("run_day")
        .annotate(messages=Sum("deleted_count"), bytes=Sum("bytes"), batches=Count("id"))
    }
    empty = {"messages": 0, "bytes": 0, "batches": 0}
    return {
        "labels": [day.isoformat() for day in day_list],
        "datasets": [
            {
                "label": "Messages archived",
                "key": "messages",
                "data": [runs.get(day, empty)["messages"] for day in day_list],
            },
            {
                "label": "Archive size (bytes)",
                "key": "bytes",
                "data": [runs.get(day, empty)["bytes"] for day in day_list],
            },
        ],
    }
