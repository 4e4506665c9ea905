from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PlatformConfig(AppConfig):
    """The platform's own plumbing: queues, dead letters, health, embedded services."""

    name = "config"
    label = "platform"
    verbose_name = "Platform"


class WharfAdminConfig(AdminConfig):
    """Django's admin with Wharf's site (config/admin_site.py)."""

    default_site = "config.admin_site.WharfAdminSite"
