from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from archival.media import media_archivable, media_archive
from archival.messages import ArchivalBusy
from archival.tasks import archival_failure_alert


class Command(BaseCommand):
    help = (
        "Move the media older than ARCHIVE_MEDIA_AFTER_DAYS to the archive prefix now, as the schedule does."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"move media of messages before this many days ago ({settings.ARCHIVE_MEDIA_AFTER_DAYS})",
        )

    def handle(self, *args, older_than_days: int | None, verbosity: int, **options):
        days = settings.ARCHIVE_MEDIA_AFTER_DAYS if older_than_days is None else older_than_days
        try:
            total = media_archivable(older_than_days=days).count()
            with tqdm(total=total, unit="files", file=self.stderr, disable=verbosity == 0) as bar:
                batch = media_archive(older_than_days=days, progress=bar.update)
        except ArchivalBusy as busy:
            raise CommandError(str(busy)) from None
        except Exception as error:
            archival_failure_alert(what="media", error=error)  # as the scheduled run: operators see it
            raise
        self.stdout.write(f"moved {batch.record_count} media file(s), {batch.bytes} byte(s), to {batch.key}")
