from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0005_channel_opt_outs"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="AuditLog")]),
    ]
