# The audit log and operator alerts move here from contacts and messaging: their tables stay
# as they are, and their content types (and so their permissions) are renamed, not recreated.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = [("contacts", "auditlog"), ("messaging", "operatoralert")]


def content_types_move(apps, schema_editor, *, backwards=False):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for app_label, model in MOVED:
        old, new = (("core", app_label) if backwards else (app_label, "core"))
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("contacts", "0005_channel_opt_outs"),
        ("messaging", "0003_channel_pace"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditLog",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("source", models.CharField(choices=[("admin", "Admin"), ("api", "Api"), ("csv", "Csv"), ("webhook", "Webhook"), ("unsubscribe", "Unsubscribe"), ("system", "System")], max_length=16)),
                        ("action", models.CharField(max_length=32)),
                        ("target_id", models.CharField(blank=True, default="", max_length=64)),
                        ("target_repr", models.CharField(blank=True, default="", max_length=200)),
                        ("changes", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("target_type", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="contenttypes.contenttype")),
                    ],
                    options={
                        "db_table": "contacts_auditlog",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [models.Index(fields=["target_type", "target_id"], name="auditlog_target")],
                    },
                ),
                migrations.CreateModel(
                    name="OperatorAlert",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("key", models.CharField(max_length=128, unique=True)),
                        ("level", models.CharField(default="error", max_length=16)),
                        ("text", models.TextField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                        ("acknowledged_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"db_table": "messaging_operatoralert", "ordering": ["-created_at"]},
                ),
            ],
        ),
        migrations.RunPython(
            content_types_move,
            lambda apps, schema_editor: content_types_move(apps, schema_editor, backwards=True),
        ),
    ]
