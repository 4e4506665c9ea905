from django.core.management.base import BaseCommand

from core.queues import queues_ensure


class Command(BaseCommand):
    help = (
        "Create every SQS queue with its dead-letter queue and redrive policy, or update them (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--visibility-timeout",
            type=int,
            metavar="SECONDS",
            help="use this visibility timeout on every queue instead of its own (tests, development)",
        )

    def handle(self, *args, visibility_timeout, **options):
        states = queues_ensure(visibility_timeout_override=visibility_timeout)
        width = max(len(state.sqs_name) for state in states)
        for state in states:
            self.stdout.write(
                f"{state.sqs_name:<{width}}  dead letters to {state.dlq_sqs_name} after "
                f"{state.max_receive_count} receives, visibility timeout {state.visibility_timeout} s"
            )
