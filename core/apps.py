from django.apps import AppConfig

from core import checks  # noqa: F401 - registers the production checks


class CoreConfig(AppConfig):
    """What every domain app may use: the audit log, operator alerts, storage, queue publishing,
    backoff and the admin's scaffolding. It imports no domain app."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "System"
