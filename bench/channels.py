"""Email and SMS channels: sends per second through a real SMTP server and the sandbox's SMS API.

Email goes over SMTP to an aiosmtpd server on loopback, first one connection per email (as
email_send does alone), then one connection for every email (the `connection` argument). SMS go
through boto3 over HTTP to the sandbox's AWS End User Messaging SMS, from 1 then 4 threads; the
sandbox's per-number counts must show each exactly once. Then BENCH_CHANNEL_SENDS slots are taken
from the SMS pace at 100/s in batches of 50, and their spacing is checked.
"""

import logging
import os
import threading
import time
from itertools import pairwise

from bench._setup import django_on_fresh_database, peak_rss_mb, report
from devstack.stack import VAR_DIR, SandboxServer, free_port

SENDS = int(os.environ.get("BENCH_CHANNEL_SENDS", "400"))


def email_rate(contacts, *, reuse: bool) -> float:
    from django.core.mail import get_connection

    from messaging.channels import email_send

    started = time.perf_counter()
    if reuse:
        with get_connection() as connection:
            for contact in contacts:
                email_send(
                    contact=contact, subject="Bench", body="Hello", reference="b", connection=connection
                )
    else:
        for contact in contacts:
            email_send(contact=contact, subject="Bench", body="Hello", reference="b")
    return round(len(contacts) / (time.perf_counter() - started), 1)


def sms_rate(contacts, threads: int) -> float:
    from django.db import connection

    from messaging.channels import sms_send

    barrier = threading.Barrier(threads + 1)

    def work(worker: int) -> None:
        barrier.wait()
        for contact in contacts[worker::threads]:
            sms_send(contact=contact, text="Hello", reference="b")
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return round(len(contacts) / (time.perf_counter() - started), 1)


def main() -> int:
    import httpx
    from aiosmtpd.controller import Controller

    from tests.smtp import SmtpServer

    sandbox = SandboxServer(
        free_port(),
        access_token="bench",
        app_secret="",
        webhook_url="",
        log_path=VAR_DIR / "bench-sandbox.log",
    )
    smtp = SmtpServer(host="127.0.0.1", port=free_port())
    controller = Controller(smtp, hostname=smtp.host, port=smtp.port)
    controller.start()
    os.environ.update(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        SMS_ENDPOINT_URL=sandbox.sms_url,
        SMS_ORIGINATION_IDENTITY="+15550100000",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        SMS_RATE_PER_S="100",
    )
    try:
        django_on_fresh_database("wharf_bench_channels")
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's line per SMTP command
        from contacts.models import Contact
        from messaging.channels import channel_slots_take

        contacts = Contact.objects.bulk_create(
            Contact(phone=f"+4474009{n:05d}", email=f"bench{n}@example.com") for n in range(2 * SENDS)
        )
        figures: dict = {"sends": SENDS}
        figures["email_per_s_new_connection"] = email_rate(contacts[: SENDS // 4], reuse=False)
        figures["email_per_s_one_connection"] = email_rate(contacts[:SENDS], reuse=True)
        figures["emails_received"] = len(smtp.messages)
        figures["sms_per_s_1t"] = sms_rate(contacts[:SENDS], 1)
        figures["sms_per_s_4t"] = sms_rate(contacts[SENDS:], 4)
        counts = httpx.get(f"{sandbox.root}/sandbox/stats?summary=1").json()["sms"]["by_destination"]
        figures["sms_exactly_once"] = len(counts) == 2 * SENDS and set(counts.values()) == {1}
        slots = [slot for _ in range(SENDS // 50) for slot in channel_slots_take(channel="sms", n=50)]
        figures["pace_min_gap_ms"] = round(min(b - a for a, b in pairwise(slots)).total_seconds() * 1000, 3)
        figures["peak_rss_mb"] = peak_rss_mb()
    finally:
        controller.stop()
        sandbox.stop()
    ok = (
        figures["emails_received"] == SENDS // 4 + SENDS
        and figures["sms_exactly_once"]
        and figures["pace_min_gap_ms"] >= 10
    )
    figures["ok"] = ok
    report(figures)
    return 0 if ok else 1
