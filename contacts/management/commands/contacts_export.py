from django.core.management.base import BaseCommand, CommandError

from contacts.selectors import contact_list
from contacts.services.csv_io import contacts_export_csv


class Command(BaseCommand):
    help = "Export contacts as CSV (the layout contacts_import reads) to a file, or to stdout with -."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file to write, or - for stdout")
        parser.add_argument("--tag", help="only contacts with this tag")
        parser.add_argument("--search", help="only contacts whose name, email or phone matches")

    def handle(self, *args, path: str, tag: str | None, search: str | None, **options):
        contacts = contact_list(tag=tag, search=search)
        if path == "-":
            self.stdout.ending = ""  # the CSV's own line ends only
            contacts_export_csv(queryset=contacts, out=self.stdout)
            return
        try:
            with open(path, "w", newline="", encoding="utf-8") as out:
                count = contacts_export_csv(queryset=contacts, out=out)
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from error
        self.stdout.write(f"{count} contacts exported to {path}")
