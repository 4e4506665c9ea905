from django.apps import AppConfig


class ArchivalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "archival"
