from django.apps import AppConfig


class DevstackConfig(AppConfig):
    """Development commands beside the embedded stack; in INSTALLED_APPS only when DEVSTACK is on."""

    name = "devstack"
    verbose_name = "Development stack"
