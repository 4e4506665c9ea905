from django.core.management.base import BaseCommand

from devstack.numbers import sandbox_number_ensure


class Command(BaseCommand):
    help = (
        "Make the sandbox's own number a sender number of this platform (once), so that the messages "
        "and statuses the sandbox posts as Meta are routed and operators can answer from it."
    )

    def handle(self, *args, **options):
        number, made = sandbox_number_ensure()
        if made:
            self.stdout.write(f"sender number {number.display_phone_number} (the sandbox's) added")
