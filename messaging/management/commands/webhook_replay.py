"""manage.py webhook_replay PATH [PATH ...]: feed saved webhook bodies through the inbound path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Q

from messaging.inbound.events import inbound_event_record, inbound_events_drain
from messaging.models import AnalyticsEvent, InboundEvent, Message, PendingStatus, WebhookEvent


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _statuses_in(payload: Any) -> int:
    """How many message statuses a body carries (for the summary; the parser does the real reading)."""
    count = 0
    for entry in _list(payload.get("entry")) if isinstance(payload, dict) else []:
        for change in _list(entry.get("changes")) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict) and change.get("field") == "messages":
                count += len(_list(value.get("statuses")))
    return count


def _bodies(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(found for found in path.rglob("*.json") if found.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"No such file or directory: {name}")
    return files


class Command(BaseCommand):
    help = (
        "Records each webhook body (a .json file, or every .json file under a directory) as Meta's "
        "POST would, processes the pending events inline, and prints what they produced. Bodies are "
        "taken as already verified: no signature is checked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--errors", type=int, default=10, help="How many failed events to show with their error."
        )

    def handle(self, *args, paths: list[str], errors: int, **options) -> None:
        files = _bodies(paths)
        before = {
            "messages": Message.objects.count(),
            "statuses": AnalyticsEvent.objects.filter(kind=AnalyticsEvent.Kind.STATUS_CHANGED).count(),
            "pending": PendingStatus.objects.count(),
        }
        stored = duplicates = rejected = statuses = 0
        event_ids: list[int] = []
        for path in files:
            event, created = inbound_event_record(body=path.read_bytes())
            event_ids.append(event.pk)
            statuses += _statuses_in(event.payload)
            if not created:
                duplicates += 1
            elif event.state == InboundEvent.State.REJECTED:
                rejected += 1
            else:
                stored += 1
        drained = inbound_events_drain()
        events = InboundEvent.objects.filter(pk__in=event_ids)
        typed = WebhookEvent.objects.filter(inbound_event__in=events).aggregate(
            typed=Count("id", filter=Q(known=True)), raw=Count("id", filter=Q(known=False))
        )
        failing = events.filter(attempts__gt=0).exclude(state=InboundEvent.State.PROCESSED).order_by("id")
        counts = {
            "bodies read": len(files),
            "stored": stored,
            "duplicates": duplicates,
            "rejected": rejected,
            "processed": events.filter(state=InboundEvent.State.PROCESSED).count(),
            "messages": Message.objects.count() - before["messages"],
            "statuses received": statuses,
            "statuses applied": AnalyticsEvent.objects.filter(kind=AnalyticsEvent.Kind.STATUS_CHANGED).count()
            - before["statuses"],
            "statuses pending": PendingStatus.objects.count() - before["pending"],
            "webhook events": typed["typed"],
            "unknown events": typed["raw"],
            "flagged unknown phone number": events.filter(unknown_phone_number=True).count(),
            "failures": failing.count(),
        }
        width = max(len(name) for name in counts)
        for name, value in counts.items():
            self.stdout.write(f"{name:<{width}}  {value}")
        if drained.rewoken:
            self.stdout.write("the drain ran out of time; a worker will process the rest")
        for event in failing[:errors]:
            self.stderr.write(
                f"event {event.pk} ({event.state}, {event.attempts} attempts): {event.last_error}"
            )
