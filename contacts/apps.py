from django.apps import AppConfig


class ContactsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contacts"

    def ready(self) -> None:
        import phonenumbers

        # Imports validate numbers from every region; without this, patterns beyond re's own
        # small cache are compiled again for each number.
        phonenumbers.enable_pattern_cache()
