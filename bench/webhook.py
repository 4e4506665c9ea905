"""Webhooks: signed bodies over HTTP to gunicorn, processed by real workers over SQS on moto.

The app is served as in production (gunicorn, its own database, moto's SQS and S3), a concurrent
client posts BENCH_EVENTS signed bodies of mixed kinds (texts, statuses, template updates) over
BENCH_CONNECTIONS connections, and real Celery workers on the `incoming` queue process them.
Figures: the webhook's answer time, the accepted rate, the rate until every event is processed,
and how many SQS messages the wake-ups cost per event (drain tasks run / events).
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
import uuid

from bench._setup import django_on_fresh_database, moto_start, percentile, report
from devstack.stack import BASE_DIR, BIN_DIR, VAR_DIR, free_port, stop_process
from tests.waiting import WaitTimeout, wait_until

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
WEB_WORKERS = os.environ.get("BENCH_WEB_WORKERS", "4")
WEB_THREADS = os.environ.get("BENCH_WEB_THREADS", "1")
CELERY_CONCURRENCY = os.environ.get("BENCH_CELERY_CONCURRENCY", "2")
APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "100200300400"


def body_for(i: int) -> bytes:
    """Every fifth a status, every twentieth a template update, the rest text messages."""
    now = str(int(time.time()))
    metadata = {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID}
    if i % 20 == 19:
        change = {
            "field": "message_template_status_update",
            "value": {
                "event": "APPROVED",
                "message_template_id": 1000 + i,
                "message_template_name": f"welcome_{i}",
                "message_template_language": "en_US",
                "reason": "NONE",
            },
        }
    elif i % 5 == 4:
        change = {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": metadata,
                "statuses": [
                    {
                        "id": f"wamid.bench-out-{i}",
                        "status": "delivered",
                        "timestamp": now,
                        "recipient_id": f"4477009{i % 100000:05d}",
                    }
                ],
            },
        }
    else:
        wa_id = f"4477009{i % 5000:05d}"
        change = {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": metadata,
                "contacts": [{"profile": {"name": f"Bench {i % 5000}"}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": f"wamid.bench-in-{uuid.uuid4().hex}",
                        "timestamp": now,
                        "type": "text",
                        "text": {"body": f"hello {i}"},
                    }
                ],
            },
        }
    envelope = {"object": "whatsapp_business_account", "entry": [{"id": "800900", "changes": [change]}]}
    return json.dumps(envelope, separators=(",", ":")).encode()


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def post_all(url: str, bodies: list[bytes]) -> tuple[list[float], float, int]:
    import httpx

    timings: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def sender() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(
                    url,
                    content=body,
                    headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature(body)},
                )
                timings.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
        return timings, time.perf_counter() - started, errors


def group_cpu_s(process: subprocess.Popen) -> float:
    """CPU seconds of a process and its children (gunicorn's and Celery's forks)."""
    import psutil

    parent = psutil.Process(process.pid)
    total = 0.0
    for proc in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return round(total, 1)


def postgres_cpu_s() -> float:
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def healthy(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
    except OSError:
        return False
    return True


def wait_processed(total: int, timeout_s: float) -> tuple[int, int]:
    from messaging.models import InboundEvent

    def done() -> int:
        return InboundEvent.objects.exclude(state=InboundEvent.State.PENDING).count()

    with contextlib.suppress(WaitTimeout):  # the figures say how far it got
        wait_until(lambda: done() >= total, timeout=timeout_s, interval=0.2, message="the events processed")
    return done(), InboundEvent.objects.filter(state=InboundEvent.State.FAILED).count()


def main() -> int:
    moto = moto_start(
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="bench",
        WHATSAPP_ACCESS_TOKEN="bench",
        API_THROTTLE_ANON="1000000/min",
    )
    processes: list[subprocess.Popen] = []
    try:
        database_url = django_on_fresh_database("wharf_bench_webhook")
        from django.core.management import call_command
        from django.db.models import Max, Min
        from django_celery_results.models import TaskResult

        from messaging.models import InboundEvent, Message

        call_command("createcachetable")
        call_command("queues_setup")
        call_command("storage_setup")
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        port = free_port()
        log = open(VAR_DIR / "bench-webhook.log", "wb")  # noqa: SIM115 - closed below
        processes.append(
            subprocess.Popen(
                [
                    str(BIN_DIR / "gunicorn"),
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    WEB_WORKERS,
                    "--threads",
                    WEB_THREADS,
                    "--no-control-socket",
                    "--backlog",
                    "2048",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    str(BIN_DIR / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "--queues",
                    "incoming",
                    "--concurrency",
                    CELERY_CONCURRENCY,
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        url = f"http://127.0.0.1:{port}/webhooks/whatsapp/"
        wait_until(lambda: healthy(port), timeout=60, interval=0.5, message="gunicorn up")

        bodies = [body_for(i) for i in range(EVENTS)]
        postgres_before = postgres_cpu_s()
        started = time.perf_counter()
        timings, send_s, errors = asyncio.run(post_all(url, bodies))
        processed, failed = wait_processed(EVENTS, timeout_s=600)
        end_to_end_s = time.perf_counter() - started
        drains = TaskResult.objects.filter(task_name="messaging.inbound_events_process").count()
        span = InboundEvent.objects.filter(state=InboundEvent.State.PROCESSED).aggregate(
            first=Min("processed_at"), last=Max("processed_at")
        )
        process_s = (span["last"] - span["first"]).total_seconds() if span["last"] else 0

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = {
            "web": group_cpu_s(processes[0]),
            "workers": group_cpu_s(processes[1]),
            "postgres": round(postgres_cpu_s() - postgres_before, 1),
            "client": round(usage.ru_utime + usage.ru_stime, 1),
        }
        report(
            {
                "cpu_s": cpu,
                "events": EVENTS,
                "connections": CONNECTIONS,
                "web": f"gunicorn {WEB_WORKERS} workers x {WEB_THREADS} threads",
                "celery_concurrency": int(CELERY_CONCURRENCY),
                "non_200": errors,
                "processed": processed,
                "failed": failed,
                "messages": Message.objects.count(),
                "stored_events": InboundEvent.objects.count(),
                "drain_tasks": drains,
                "cpu_count": os.cpu_count(),
                "ack_p50_ms": round(percentile(timings, 50), 2),
                "ack_p99_ms": round(percentile(timings, 99), 2),
                "accepted_per_s": round(EVENTS / send_s),
                "workers_processed_per_s": round(processed / process_s) if process_s else None,
                "end_to_end_per_s": round(processed / end_to_end_s),
                "sqs_messages_per_event": round(drains / EVENTS, 4),
            }
        )
        return 0
    finally:
        for process in processes:
            stop_process(process, grace_s=10)
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
