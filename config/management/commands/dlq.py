from django.core.management.base import BaseCommand, CommandError

from core.queues import QUEUES, QueueError, dlq_list, dlq_replay, sqs_queue_name

ARGS_WIDTH = 60


class Command(BaseCommand):
    help = "List or replay the dead letters of a queue."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{list,replay}")
        queue_help = f"the source queue: {', '.join(QUEUES)}"

        listing = actions.add_parser("list", help="show dead letters without consuming them")
        listing.add_argument("queue", help=queue_help)
        listing.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")

        replay = actions.add_parser("replay", help="move dead letters back to their source queue")
        replay.add_argument("queue", help=queue_help)
        which = replay.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every dead letter")
        which.add_argument(
            "--id", dest="ids", action="extend", nargs="+", metavar="MESSAGE_ID", help="these messages"
        )
        which.add_argument("--limit", type=int, help="at most this many")

    def handle(self, *args, action, queue, **options):
        try:
            if action == "list":
                self._list(queue, options["limit"])
            else:
                self._replay(queue, options["ids"], options["limit"])
        except QueueError as error:
            raise CommandError(str(error)) from error

    def _list(self, queue: str, limit: int) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        letters = dlq_list(queue=queue, limit=limit)
        dlq = sqs_queue_name(QUEUES[queue].dlq_name)
        if not letters:
            self.stdout.write(f"no dead letters in {dlq}")
            return
        rows = [("MESSAGE ID", "TASK", "ARGS", "RECEIVES", "FIRST SEEN (UTC)")]
        for letter in letters:
            shown = (
                letter.argsrepr
                if len(letter.argsrepr) <= ARGS_WIDTH
                else letter.argsrepr[: ARGS_WIDTH - 1] + "…"
            )
            first_seen = letter.first_seen.strftime("%Y-%m-%d %H:%M:%S") if letter.first_seen else "-"
            rows.append((letter.message_id, letter.task or "-", shown, str(letter.receive_count), first_seen))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
        more = " (the limit; there may be more)" if len(letters) == limit else ""
        self.stdout.write(f"{len(letters)} dead letter(s) in {dlq}{more}")

    def _replay(self, queue: str, ids: list[str] | None, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        replayed = dlq_replay(queue=queue, message_ids=set(ids) if ids else None, limit=limit)
        spec = QUEUES[queue]
        dlq, source = sqs_queue_name(spec.dlq_name), sqs_queue_name(spec.name)
        self.stdout.write(f"replayed {replayed} dead letter(s) from {dlq} to {source}")
        if ids and replayed < len(set(ids)):
            self.stderr.write(
                f"{len(set(ids)) - replayed} of the given message ids were not in the dead-letter queue"
            )
