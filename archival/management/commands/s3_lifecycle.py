from django.conf import settings
from django.core.management.base import BaseCommand

from archival.lifecycle import lifecycle_apply, lifecycle_current, lifecycle_describe


class Command(BaseCommand):
    help = "Apply the archive's lifecycle rules to the bucket (idempotent) and print the bucket's rules."

    def add_arguments(self, parser):
        parser.add_argument("--show", action="store_true", help="only print the bucket's current rules")

    def handle(self, *args, show: bool, **options):
        bucket = settings.AWS_STORAGE_BUCKET_NAME
        if show:
            rules = lifecycle_current()
        else:
            changed, rules = lifecycle_apply()
            self.stdout.write(f"{'updated' if changed else 'unchanged'}: lifecycle rules of bucket {bucket}")
        self.stdout.write(f"{len(rules)} rule(s) on bucket {bucket}:")
        for rule in rules:
            self.stdout.write(f"  {lifecycle_describe(rule)}")
