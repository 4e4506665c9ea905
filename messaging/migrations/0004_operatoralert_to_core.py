from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0003_channel_pace"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="OperatorAlert")]),
    ]
