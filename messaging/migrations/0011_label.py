"""The catalogue of labels, with a row (grey, no description) for every label conversations already
carry, so that their labels stay valid once the services accept only catalogue names."""

import re

import django.core.validators
from django.db import migrations, models

CATALOGUE_FROM_CONVERSATIONS = r"""
INSERT INTO messaging_label (name, colour, description, created_at, updated_at)
SELECT DISTINCT label, 'grey', '', now(), now()
FROM messaging_conversation, unnest(labels) AS label
WHERE label ~ '^[a-z0-9][a-z0-9_-]{0,31}$'
ON CONFLICT (name) DO NOTHING
"""


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0010_merge_index_and_groups"),
    ]

    operations = [
        migrations.CreateModel(
            name="Label",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        help_text="Lower-case letters, digits, - and _ (vip, refund, follow-up).",
                        max_length=32,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                re.compile("^[a-z0-9][a-z0-9_-]{0,31}$"),
                                "Up to 32 lower-case letters, digits, - or _, starting with a letter or digit.",
                            )
                        ],
                    ),
                ),
                (
                    "colour",
                    models.CharField(
                        choices=[
                            ("grey", "Grey"),
                            ("blue", "Blue"),
                            ("green", "Green"),
                            ("yellow", "Yellow"),
                            ("orange", "Orange"),
                            ("red", "Red"),
                            ("purple", "Purple"),
                            ("teal", "Teal"),
                        ],
                        default="grey",
                        max_length=16,
                    ),
                ),
                ("description", models.CharField(blank=True, default="", max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.RunSQL(CATALOGUE_FROM_CONVERSATIONS, migrations.RunSQL.noop),
    ]
