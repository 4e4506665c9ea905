"""Trigram indexes for contact search, created where the server offers pg_trgm.

Search uses `icontains`, which PostgreSQL compiles to `UPPER(col) LIKE UPPER('%q%')`; a GIN
trigram index on the same expression answers it at a million rows. RDS and the usual server
packages ship pg_trgm; the embedded development server (pgserver) does not, and there the
queries are the same, only unindexed. The indexes are not in the models' state on purpose.
"""

from django.db import migrations

INDEXES = {
    "contact_name_trgm": "UPPER(name) gin_trgm_ops",
    "contact_email_trgm": "UPPER(email) gin_trgm_ops",
    "contact_phone_trgm": "phone gin_trgm_ops",
}


def create(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        if cursor.fetchone() is None:
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in INDEXES.items():
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON contacts_contact USING gin ({expression})")


def drop(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
