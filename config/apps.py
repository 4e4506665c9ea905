from django.apps import AppConfig


class PlatformConfig(AppConfig):
    """The platform's own plumbing: queues, dead letters, health, embedded services."""

    name = "config"
    label = "platform"
    verbose_name = "Platform"
