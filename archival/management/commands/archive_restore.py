from datetime import date

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from archival.messages import messages_restore
from archival.models import ArchiveBatch


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = "Put archived messages of the days from --from to --to (inclusive, UTC) back; idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="day_from", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="day_to", required=True, help="last day, YYYY-MM-DD")

    def handle(self, *args, day_from: str, day_to: str, verbosity: int, **options):
        first, last = _day(day_from, "--from"), _day(day_to, "--to")
        if last < first:
            raise CommandError(f"--to {last} is before --from {first}; it must be on or after it")
        total = sum(
            ArchiveBatch.objects.filter(
                kind=ArchiveBatch.Kind.MESSAGES, state=ArchiveBatch.State.DELETED, day__range=(first, last)
            ).values_list("record_count", flat=True)
        )
        with tqdm(total=total, unit="rows", file=self.stderr, disable=verbosity == 0) as bar:
            results = messages_restore(day_from=first, day_to=last, progress=bar.update)
        for result in results:
            if verbosity > 1 or result.skipped_contact_gone:
                self.stdout.write(
                    f"batch {result.batch.pk} ({result.batch.day}): {result.inserted} of {result.records}"
                    f" inserted, {result.skipped_contact_gone} of deleted contacts skipped"
                )
        inserted = sum(result.inserted for result in results)
        self.stdout.write(f"restored {inserted} message(s) from {len(results)} batch(es)")
