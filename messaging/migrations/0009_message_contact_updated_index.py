"""The index behind the conversation page's live token (messaging.selectors.conversation_timeline_token),
built concurrently: the messages table is the largest, and writes go on while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messaging", "0008_conversation_updated_index"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(fields=["contact", "updated_at"], name="message_contact_updated"),
        ),
    ]
