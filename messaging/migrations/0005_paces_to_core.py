from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0004_operatoralert_to_core"),
        ("core", "0002_pace"),
    ]

    operations = [
        migrations.DeleteModel(name="SenderPace"),
        migrations.DeleteModel(name="ChannelPace"),
    ]
