"""Outbound: real `outgoing` workers sending to the sandbox Graph API, paced, then flat out.

Everything runs as in production: the bench's own database, moto's SQS, the sandbox in its own
process, and one Celery worker on the `outgoing` queue with concurrency 2 (two processes), as
`make run` starts it. The sandbox posts no status webhooks (`statuses: false`, no webhook URL):
nothing here would receive them, and the sends alone are measured.

(a) Pacing. Two numbers limited at 80/s and 20/s on both sides: PhoneNumber.rate_limit_per_s, and
    the sandbox's own per-number limit over an exact sliding second, which answers 130429 beyond
    it. BENCH_PACING_S seconds' worth at each rate are queued through `message_send` (distinct
    recipients, window open) before the worker starts. The achieved rate is read from the sandbox's
    accept times (per number: first, last, accepts per whole second; see `rates` for the steady
    period). pacing_error_pct is the worse number's |achieved - limit| / limit.
(b) Throughput. One number allowed BENCH_THROUGHPUT_RATE (1,000/s) on both sides and
    BENCH_THROUGHPUT_MESSAGES messages. These are bulk-created exactly as `message_send` writes
    them (queued row, placeholder wamid, payload with biz_opaque_callback_data, audit row), as
    20,000 calls would take minutes of set-up; then one wake. throughput_per_s = accepted sends /
    time from the sandbox's first to its last accept; cpu_ms_per_message = the worker processes'
    CPU over the phase / messages.

`late_not_sent` counts the sends a drain held back because they would have left more than
LATE_MAX_S after their slots (slow senders only; a fast sender's late sends go and move its
schedule on, and are counted in the drains' results in the worker's log as `late`).

`duplicates` is the sandbox's count of sends whose callback data (our message id) it had accepted
before: 0 proves that no message was sent twice. Beat does not run; the bench calls the outgoing
sweep every 30 s while it waits, as beat would. CPU is split by process group (psutil) and set
against the machine's busy time: `others` is what the other users of the shared cores took.
BENCH_PACING_S=5 BENCH_THROUGHPUT_MESSAGES=2000 makes a quick run.
"""

import contextlib
import os
import resource
import subprocess
import sys
import time
import uuid

from bench._setup import django_on_fresh_database, report, servers_start, worker_start
from bench.webhook import tree_cpu_s
from devstack.stack import VAR_DIR, MotoServer, SandboxServer, stop_process

PACING_S = float(os.environ.get("BENCH_PACING_S", "30"))
PACING_RATES = {"100000000000080": 80, "100000000000020": 20}  # phone_number_id -> messages/s
THROUGHPUT_MESSAGES = int(os.environ.get("BENCH_THROUGHPUT_MESSAGES", "20000"))
THROUGHPUT_RATE = int(os.environ.get("BENCH_THROUGHPUT_RATE", "1000"))
THROUGHPUT_NUMBER = "100000000001000"
CELERY_CONCURRENCY = os.environ.get("BENCH_CELERY_CONCURRENCY", "2")
STALL_S = float(os.environ.get("BENCH_STALL_S", "90"))  # give up when nothing is accepted this long
SWEEP_S = 30.0  # beat's outbound-sweep schedule


class Sandbox:
    def __init__(self, root: str):
        import httpx

        self.http = httpx.Client(base_url=f"{root}/sandbox/", timeout=30)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        answer = self.http.request(method, path, json=body)
        answer.raise_for_status()
        return answer.json()

    def stats(self) -> dict:
        return self.call("GET", "stats?summary=1")


def postgres_cpu_s() -> float:
    """The server's processes, and the backends that exited (Celery closes its connections after
    each task), which the postmaster has reaped: the whole server, other users' sessions too."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def cpu_snapshot(worker: subprocess.Popen, sandbox: SandboxServer, moto: MotoServer) -> dict:
    import psutil

    usage = resource.getrusage(resource.RUSAGE_SELF)
    machine = psutil.cpu_times()
    return {
        "workers": tree_cpu_s(worker),
        "sandbox": tree_cpu_s(sandbox.process),
        "moto": tree_cpu_s(moto.process),
        "postgres": postgres_cpu_s(),
        "bench": usage.ru_utime + usage.ru_stime,
        "machine_busy": machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
    }


def cpu_split(before: dict, after: dict) -> dict:
    """CPU seconds per process group over a phase; `others` is the machine's busy time that none of
    ours explains (other processes on the machine, and our exited ones)."""
    split = {key: round(after[key] - before[key], 1) for key in before}
    ours = sum(value for key, value in split.items() if key != "machine_busy")
    split["others"] = round(max(0.0, split["machine_busy"] - ours), 1)
    return split


def wait_accepted(sandbox: Sandbox, expected: dict[str, int]) -> dict:
    """Poll the sandbox until each number's accepted sends reach `expected`, or nothing moves for
    STALL_S; returns the last stats. Every SWEEP_S it runs the outgoing sweep, as beat does in
    `make run`: a retry due after the last drain ended waits for it."""
    from messaging.outbound.sweep import outgoing_sweep

    last_total, last_move = -1, time.monotonic()
    next_sweep = time.monotonic() + SWEEP_S
    while True:
        stats = sandbox.stats()
        accepted = stats["messages"]
        if all(accepted.get(number, 0) >= count for number, count in expected.items()):
            return stats
        total = sum(accepted.values()) + stats["rate_limited"]
        if total != last_total:
            last_total, last_move = total, time.monotonic()
        elif time.monotonic() - last_move > STALL_S:
            print(f"stalled: {accepted} of {expected}", file=sys.stderr)
            return stats
        if time.monotonic() >= next_sweep:
            outgoing_sweep()
            next_sweep = time.monotonic() + SWEEP_S
        time.sleep(0.5)


def rates(timing: dict, limit: int) -> dict:
    """Achieved rates from the sandbox's accept times of one number. The steady period is the whole
    seconds after the first (partial) one, up to before the last second at half the limit or more:
    the stream's end, partial too; what comes later (`tail`) is retries arriving after it."""
    per_second = {int(second): n for second, n in timing["per_second"].items()}
    first_s = min(per_second)
    end_s = max((second for second, n in per_second.items() if n >= limit / 2), default=max(per_second))
    counts = [per_second.get(second, 0) for second in range(first_s + 1, end_s)]
    total = sum(per_second.values())
    span = timing["last"] - timing["first"]
    return {
        "steady": round(sum(counts) / len(counts), 2) if counts else None,
        "steady_seconds": len(counts),
        "overall": round((total - 1) / span, 2) if span > 0 else None,
        "busiest_second": max(per_second.values()),
        "quietest_steady_second": min(counts) if counts else None,
        "tail": sum(n for second, n in per_second.items() if second > end_s),
        "span_s": round(span, 2),
    }


def both_steady(accepts: dict, limits: dict[str, int]) -> dict[str, float]:
    """Each number's rate over the whole seconds in which every number is in its steady period (when
    the numbers share the drains' rounds)."""
    periods = []
    for number, limit in limits.items():
        per_second = {int(second) for second, n in accepts[number]["per_second"].items() if n >= limit / 2}
        periods.append((min(per_second) + 1, max(per_second)))
    start, end = max(period[0] for period in periods), min(period[1] for period in periods)
    if end <= start:
        return {}
    seconds = [str(second) for second in range(start, end)]
    rates_ = {}
    for number in limits:
        counts = [accepts[number]["per_second"].get(second, 0) for second in seconds]
        rates_[number] = round(sum(counts) / len(counts), 2)
    return rates_


def statuses_of(phone_number) -> dict[str, int]:
    from django.db.models import Count

    from messaging.models import Message

    rows = Message.objects.filter(phone_number=phone_number).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def contacts_make(prefix: str, count: int) -> list:
    from django.utils import timezone

    from contacts.models import Contact

    now = timezone.now()
    contacts = [
        Contact(wa_id=f"{prefix}{i:07d}", name=f"Bench {i}", last_inbound_at=now) for i in range(count)
    ]
    return Contact.objects.bulk_create(contacts, batch_size=2000)


def pacing_queue(phone_numbers: list) -> None:
    """Each number's BENCH_PACING_S worth, through the send service, one recipient per message."""
    from messaging.outbound.send import message_send

    for index, phone_number in enumerate(phone_numbers):
        count = round(phone_number.rate_limit_per_s * PACING_S)
        for contact in contacts_make(f"447{index}", count):
            message_send(
                phone_number=phone_number,
                contact=contact,
                kind="text",
                content={"body": f"Your order {contact.wa_id} shipped"},
                actor=None,
                source="api",
            )


def throughput_queue(phone_number) -> None:
    """The rows and audit entries `message_send` writes, in bulk; the wake comes separately."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction
    from django.utils import timezone

    from core.models import AuditLog
    from messaging.models import Message
    from messaging.statuses import PLACEHOLDER_PREFIX

    contacts = contacts_make("449", THROUGHPUT_MESSAGES)
    now = timezone.now()
    messages = []
    for contact in contacts:
        body = f"Your order {contact.wa_id} shipped"
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": contact.wa_id}
        payload.update({"type": "text", "text": {"body": body, "preview_url": False}})
        messages.append(
            Message(
                wamid=f"{PLACEHOLDER_PREFIX}{uuid.uuid4()}",
                direction=Message.Direction.OUTBOUND,
                type="text",
                status=Message.Status.QUEUED,
                contact=contact,
                phone_number=phone_number,
                text=body,
                payload=payload,
                timestamp=now,
            )
        )
    content_type = ContentType.objects.get_for_model(Message)
    with transaction.atomic():
        messages = Message.objects.bulk_create(messages, batch_size=2000)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE messaging_message SET payload = payload || "
                "jsonb_build_object('biz_opaque_callback_data', id::text) WHERE phone_number_id = %s",
                [phone_number.pk],
            )
        AuditLog.objects.bulk_create(
            [
                AuditLog(
                    source="api",
                    action="message.send",
                    target_type=content_type,
                    target_id=str(message.pk),
                    target_repr=str(message)[:200],
                    changes={
                        "type": "text",
                        "to": message.payload["to"],
                        "phone_number_id": THROUGHPUT_NUMBER,
                    },
                )
                for message in messages
            ],
            batch_size=2000,
        )


def main() -> int:
    moto, sandbox_server = servers_start()
    sandbox = Sandbox(sandbox_server.root)
    worker: subprocess.Popen | None = None
    try:
        database_url = django_on_fresh_database("wharf_bench_outbound")
        from django.core.management import call_command
        from django.db.models import Count

        from messaging.models import PhoneNumber, SendAttempt
        from messaging.outbound.drain import outgoing_wake

        call_command("createcachetable")
        call_command("queues_setup")
        limits = {**PACING_RATES, THROUGHPUT_NUMBER: THROUGHPUT_RATE}
        sandbox.call("POST", "reset")
        sandbox.call("POST", "config", {"statuses": False, "webhook_url": "", "rate_limits": limits})
        numbers = {
            number: PhoneNumber.objects.create(phone_number_id=number, rate_limit_per_s=rate)
            for number, rate in limits.items()
        }
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        figures: dict = {"cpu_count": os.cpu_count(), "celery": f"1 worker, concurrency {CELERY_CONCURRENCY}"}

        # (a) pacing
        started = time.perf_counter()
        pacing_queue([numbers[number] for number in PACING_RATES])  # its first send woke a drain
        figures["pacing_setup_s"] = round(time.perf_counter() - started, 1)
        expected = {number: round(rate * PACING_S) for number, rate in PACING_RATES.items()}
        worker = worker_start(
            queues="outgoing",
            concurrency=CELERY_CONCURRENCY,
            env=env,
            log_path=VAR_DIR / "bench-outbound.log",
        )
        cpu_before = cpu_snapshot(worker, sandbox_server, moto)
        pacing = wait_accepted(sandbox, expected)
        figures["pacing_cpu_s"] = cpu_split(cpu_before, cpu_snapshot(worker, sandbox_server, moto))
        errors = []
        both = both_steady(pacing["accepts"], PACING_RATES)
        for number, rate in PACING_RATES.items():
            achieved = rates(pacing["accepts"][number], rate)
            achieved["while_both_send"] = both.get(number)
            achieved["answered_130429"] = SendAttempt.objects.filter(
                message__phone_number=numbers[number], error_code=130429
            ).count()
            figures[f"pacing_{rate}_per_s"] = achieved
            figures[f"pacing_{rate}_accepted"] = pacing["messages"].get(number, 0)
            figures[f"pacing_{rate}_statuses"] = statuses_of(numbers[number])
            errors.append(abs(achieved["steady"] - rate) / rate * 100)
        figures["pacing_sandbox_errors"] = pacing["errors"]
        rate_limited = pacing["rate_limited"]
        duplicates = pacing["duplicates"]
        figures["pacing_rate_limited"] = pacing["rate_limited"]
        sandbox.call("DELETE", "stats")

        # (b) throughput
        started = time.perf_counter()
        throughput_queue(numbers[THROUGHPUT_NUMBER])
        figures["throughput_setup_s"] = round(time.perf_counter() - started, 1)
        cpu_before = cpu_snapshot(worker, sandbox_server, moto)
        outgoing_wake()
        flat_out = wait_accepted(sandbox, {THROUGHPUT_NUMBER: THROUGHPUT_MESSAGES})
        cpu = cpu_split(cpu_before, cpu_snapshot(worker, sandbox_server, moto))
        figures["throughput_cpu_s"] = cpu
        accepted = flat_out["messages"].get(THROUGHPUT_NUMBER, 0)
        timing = flat_out["accepts"].get(THROUGHPUT_NUMBER)
        span_s = timing["last"] - timing["first"] if timing else 0
        figures["throughput_messages"] = THROUGHPUT_MESSAGES
        figures["throughput_accepted"] = accepted
        figures["throughput_span_s"] = round(span_s, 2)
        figures["throughput_busiest_second"] = max(timing["per_second"].values()) if timing else 0
        figures["throughput_statuses"] = statuses_of(numbers[THROUGHPUT_NUMBER])
        figures["throughput_sandbox_errors"] = flat_out["errors"]
        figures["throughput_rate_limited"] = flat_out["rate_limited"]
        rate_limited += flat_out["rate_limited"]
        duplicates += flat_out["duplicates"]

        attempts = SendAttempt.objects.values("outcome").annotate(n=Count("id"))
        figures["attempts"] = {row["outcome"] or "open": row["n"] for row in attempts}
        figures["late_not_sent"] = SendAttempt.objects.filter(
            error_title__startswith="Not sent: it would have left"
        ).count()
        figures["duplicates"] = duplicates
        figures["pacing_error_pct"] = round(max(errors), 2)
        figures["rate_limited_answers"] = rate_limited
        figures["throughput_per_s"] = round(accepted / span_s, 1) if span_s else 0
        figures["cpu_ms_per_message"] = round(cpu["workers"] * 1000 / accepted, 2) if accepted else None
        report(figures)
        return 0
    finally:
        if worker is not None:
            stop_process(worker, grace_s=10)
        sandbox_server.stop()
        moto.stop()
