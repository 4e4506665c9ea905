import os
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contacts.services.csv_io import contacts_import_csv, import_refused_csv
from core.models import AuditLog


def refused_path_default(path: str) -> Path:
    """`contacts.csv` → `contacts.refused.csv`, beside the file imported."""
    source = Path(path)
    return source.with_name(f"{source.stem if source.suffix.lower() == '.csv' else source.name}.refused.csv")


class Command(BaseCommand):
    help = (
        "Import contacts from a UTF-8 CSV file whose header has a phone column. Good rows are "
        "imported, bad ones listed as 'line N: reason' and written with their cells and an error "
        "column to a file to fix and import again; importing the same file twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file")
        parser.add_argument(
            "--refused",
            metavar="PATH",
            help="where to write the refused rows (default: beside the file, <name>.refused.csv)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path: str, refused: str | None, no_progress: bool, **options):
        refused_path = Path(refused) if refused else refused_path_default(path)
        if refused_path.resolve() == Path(path).resolve():
            raise CommandError(f"--refused {refused_path} is the file being imported")
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
        if not result.errors:
            return
        try:
            with open(refused_path, "w", encoding="utf-8", newline="") as out:
                import_refused_csv(result=result, out=out)
        except OSError as error:
            raise CommandError(
                f"the good rows are imported, but the refused ones could not be written to {refused_path}: "
                f"{error.strerror}"
            ) from error
        self.stdout.write(
            f"{len(result.errors)} refused row(s) written to {refused_path} with an error column: "
            "fix them there and import that file"
        )
