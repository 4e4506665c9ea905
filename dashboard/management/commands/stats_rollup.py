from datetime import UTC, date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dashboard.rollups import stats_range_rollup


class Command(BaseCommand):
    help = (
        "Make the dashboard's daily counters again from the analytics events, one day at a time"
        " (the last 90 days by default; beat keeps today and yesterday current)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=date.fromisoformat, help="first day, YYYY-MM-DD (UTC)")
        parser.add_argument("--until", type=date.fromisoformat, help="last day, YYYY-MM-DD (default: today)")
        parser.add_argument("--days", type=int, default=90, help="without --since: this many days to today")

    def handle(self, *args, since: date | None, until: date | None, days: int, **options):
        until = until or timezone.now().astimezone(UTC).date()
        since = since or until - timedelta(days=max(days, 1) - 1)
        if since > until:
            raise CommandError(f"--since {since} is after --until {until}")
        result = stats_range_rollup(since=since, until=until)
        self.stdout.write(
            f"recomputed {result['days']} day(s) from {since} to {until}: {result['rows']} row(s)"
        )
