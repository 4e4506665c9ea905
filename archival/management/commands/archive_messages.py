from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from archival.messages import ArchivalBusy, messages_archivable_count, messages_archive
from archival.tasks import archival_failure_alert


class Command(BaseCommand):
    help = "Archive the messages older than ARCHIVE_MESSAGES_AFTER_DAYS to S3 now, as the schedule does."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"archive the days before this many days ago ({settings.ARCHIVE_MESSAGES_AFTER_DAYS})",
        )

    def handle(self, *args, older_than_days: int | None, verbosity: int, **options):
        days = settings.ARCHIVE_MESSAGES_AFTER_DAYS if older_than_days is None else older_than_days
        try:
            total = messages_archivable_count(older_than_days=days)
            with tqdm(total=total, unit="rows", file=self.stderr, disable=verbosity == 0) as bar:
                batches = messages_archive(older_than_days=days, progress=bar.update)
        except ArchivalBusy as busy:
            raise CommandError(str(busy)) from None
        except Exception as error:
            archival_failure_alert(what="messages", error=error)  # as the scheduled run: operators see it
            raise
        for batch in batches:
            if verbosity > 1:
                self.stdout.write(
                    f"batch {batch.pk} ({batch.day}): {batch.record_count} record(s), {batch.bytes} byte(s),"
                    f" {batch.deleted_count} row(s) deleted, {batch.key}"
                )
        deleted = sum(batch.deleted_count for batch in batches)
        self.stdout.write(f"archived {deleted} message(s) in {len(batches)} batch(es)")
