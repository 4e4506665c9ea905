from django.conf import settings
from django.core.management.base import BaseCommand

from core.aws import storage_ensure_bucket


class Command(BaseCommand):
    help = "Create the S3 bucket with public access blocked (idempotent)."

    def handle(self, *args, **options):
        storage_ensure_bucket()
        self.stdout.write(f"bucket {settings.AWS_STORAGE_BUCKET_NAME} ready")
