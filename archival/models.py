from django.db import models

from contacts.models import Contact


class ArchiveBatch(models.Model):
    """One object in the archive: a day of messages (gzipped JSON Lines), or one run of media moves.

    A message batch is made of the messages of `day` (UTC) with an id up to `max_id`, read when the
    batch was opened; its key is fixed by the row's id, so that every rerun writes the same object.
    """

    class Kind(models.TextChoices):
        MESSAGES = "messages"
        MEDIA = "media"

    class State(models.TextChoices):
        OPEN = "open"  # the row exists; the object may be partly written
        UPLOADED = "uploaded"  # the object is complete in S3
        VERIFIED = "verified"  # S3 holds what was written (size and checksum read back)
        DELETED = "deleted"  # its rows are gone from the database (media: the originals are)
        EMPTY = "empty"  # nothing was left to archive when it ran

    kind = models.CharField(max_length=16, choices=Kind.choices)
    day = models.DateField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    key = models.CharField(max_length=512, blank=True, default="")
    max_id = models.BigIntegerField(null=True, blank=True)
    snapshot_at = models.DateTimeField(null=True, blank=True)
    schema_version = models.PositiveSmallIntegerField(default=1)
    record_count = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)  # the object's size (gzipped for messages)
    sha256 = models.CharField(max_length=64, blank=True, default="")  # of the object's bytes
    etag = models.CharField(max_length=80, blank=True, default="")
    deleted_count = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    upload_s = models.FloatField(null=True, blank=True)
    delete_s = models.FloatField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "-id"]
        verbose_name_plural = "archive batches"
        indexes = [models.Index(fields=["kind", "state", "day"], name="archivebatch_state")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.day:%Y-%m-%d} (#{self.pk}, {self.state})"


class ArchivedConversation(models.Model):
    """How many of a contact's messages a batch holds: a conversation shows that older messages are
    archived, and which batches would bring them back."""

    batch = models.ForeignKey(ArchiveBatch, on_delete=models.CASCADE, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    messages = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "contact"], name="archivedconversation_unique")
        ]

    def __str__(self) -> str:
        return f"{self.messages} message(s) of contact {self.contact_id} in batch {self.batch_id}"


class ArchivedMedia(models.Model):
    """A media file moved to the archive prefix: the message points at `key` from the moment this
    row is written; `source_deleted_at` is set once the original is gone."""

    batch = models.ForeignKey(ArchiveBatch, on_delete=models.PROTECT, related_name="media")
    message_id = models.BigIntegerField(db_index=True)  # the message may be archived itself later
    source_key = models.CharField(max_length=512, unique=True)
    key = models.CharField(max_length=512)
    size = models.PositiveBigIntegerField(default=0)
    moved_at = models.DateTimeField(auto_now_add=True)
    source_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "archived media"
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(source_deleted_at__isnull=True),
                name="archivedmedia_pending",
            )
        ]

    def __str__(self) -> str:
        return self.key
