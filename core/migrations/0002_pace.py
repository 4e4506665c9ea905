# One pace table for the shared limiter (core/pacing.py), keyed by what it paces. The schedules of
# sender numbers and channels move over, so slots already handed out stay reserved.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("messaging", "0004_operatoralert_to_core"),
    ]

    operations = [
        migrations.CreateModel(
            name="Pace",
            fields=[
                ("key", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("tat", models.DateTimeField()),
            ],
        ),
        migrations.RunSQL(
            """
            INSERT INTO core_pace (key, tat)
            SELECT 'whatsapp:' || phone_number_id, tat FROM messaging_senderpace
            UNION ALL
            SELECT 'channel:' || channel, tat FROM messaging_channelpace
            ON CONFLICT (key) DO NOTHING
            """,
            migrations.RunSQL.noop,
        ),
    ]
