from django.conf import settings
from django.core.management.base import BaseCommand
from tqdm import tqdm

from archival.media import media_archivable, media_archive


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
        total = media_archivable(older_than_days=days).count()
        with tqdm(total=total, unit="files", file=self.stderr, disable=verbosity == 0) as bar:
            batch = media_archive(older_than_days=days, progress=bar.update)
        self.stdout.write(f"moved {batch.record_count} media file(s), {batch.bytes} byte(s), to {batch.key}")
