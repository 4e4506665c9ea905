import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contacts.services.csv_io import contacts_import_csv
from core.models import AuditLog


class Command(BaseCommand):
    help = (
        "Import contacts from a UTF-8 CSV file whose header has a phone column. Good rows are "
        "imported, bad ones listed as 'line N: reason'; importing the same file twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path: str, no_progress: bool, **options):
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by the with below, after the size is known
            size = os.fstat(file.fileno()).st_size
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from error
        with file, tqdm(total=size, unit="B", unit_scale=True, desc="import", disable=no_progress) as bar:
            try:
                result = contacts_import_csv(
                    file=file, actor=None, source=AuditLog.Source.CSV, progress=bar.update
                )
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from error
        for row_error in result.errors:
            self.stdout.write(str(row_error))
        self.stdout.write(
            f"rows: {result.total_rows}, created: {result.created}, updated: {result.updated}, "
            f"unchanged: {result.unchanged}, refused: {len(result.errors)}"
        )
