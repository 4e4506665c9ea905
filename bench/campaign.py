"""Campaign: 100k contacts, launch, send against the sandbox with a pause and a resume in between.

Everything runs as in production: the bench's own database, moto's SQS and S3, the sandbox in its
own process (no status webhooks: nothing here would receive them), and one Celery worker on the
`default` and `outgoing` queues with concurrency 2, as `make run` starts it. The bench process
plays the operator and beat: it starts the campaign, pauses it once BENCH_CAMPAIGN_PAUSE_AT of the
recipients were accepted, resumes it BENCH_CAMPAIGN_PAUSED_S later, and runs the campaigns tick
every 5 s and the outgoing sweep every 30 s while it waits.

- materialize_s: `campaign_start`, whose one INSERT ... SELECT writes every recipient.
- pause_latency_s: from the pause's request to the sandbox's last accept before the resume (the
  sends already claimed by a drain finish; nothing new starts).
- sent_exactly_once: the sandbox accepted exactly one send per recipient, counted by our message
  ids (its `sends_by_callback`), none twice (`duplicates`), and every recipient's message among them.
- send_rate_per_s: accepted sends / sending time (first to last accept, less the pause).
- peak_rss_mb: the largest of the bench process (launch, and the report written in the end,
  streamed; measured before the bench's own check loads every message id) and the worker's
  processes (sampled).
BENCH_CAMPAIGN_CONTACTS=10000 makes a quick run; BENCH_CAMPAIGN_RATE sets the sender's limit (on
both sides, the sandbox answering 130429 beyond it).
"""

import contextlib
import os
import subprocess
import time

from bench._setup import django_on_fresh_database, peak_rss_mb, report, servers_start, worker_start
from bench.outbound import Sandbox
from config.stack import VAR_DIR, stop_process

CONTACTS = int(os.environ.get("BENCH_CAMPAIGN_CONTACTS", "100000"))
RATE = int(os.environ.get("BENCH_CAMPAIGN_RATE", "1000"))
PAUSE_AT = float(os.environ.get("BENCH_CAMPAIGN_PAUSE_AT", "0.3"))
PAUSED_S = float(os.environ.get("BENCH_CAMPAIGN_PAUSED_S", "5"))
CELERY_CONCURRENCY = os.environ.get("BENCH_CELERY_CONCURRENCY", "2")
STALL_S = float(os.environ.get("BENCH_STALL_S", "90"))
NUMBER = "100000000009001"
WABA = "100000000000001"  # the sandbox's default WABA
TEMPLATE = [{"type": "BODY", "text": "Hello {{1}}, your code is {{2}}."}]


def contacts_insert(count: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes,"
            " opt_in_source, opt_out_source, created_at, updated_at)"
            " SELECT NULL, '4477' || lpad(n::text, 8, '0'), '', 'Bench ' || n, '', ARRAY['bench'], 'en',"
            " jsonb_build_object('code', 'C' || n), '', '', now(), now() FROM generate_series(1, %s) n",
            [count],
        )
        cursor.execute("ANALYZE contacts_contact")
    return time.perf_counter() - started


def group_rss_mb(process: subprocess.Popen) -> float:
    import psutil

    total = 0
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(process.pid)
        for proc in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total = max(total, proc.memory_info().rss)
    return round(total / 1024 / 1024, 1)


class Waiter:
    """Polls the sandbox while doing beat's work (campaigns tick, outgoing sweep) and sampling RSS."""

    def __init__(self, sandbox: Sandbox, worker: subprocess.Popen):
        self.sandbox, self.worker = sandbox, worker
        self.worker_rss_mb = 0.0
        self.next_tick = self.next_sweep = 0.0

    def until(self, condition, *, what: str) -> dict:
        from campaigns.services import campaigns_tick
        from messaging.outbound import outgoing_sweep

        last, moved = -1, time.monotonic()
        while True:
            stats = self.sandbox.stats()
            self.worker_rss_mb = max(self.worker_rss_mb, group_rss_mb(self.worker))
            if condition(stats):
                return stats
            if stats["accepted"] != last:
                last, moved = stats["accepted"], time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise RuntimeError(f"stalled waiting for {what}: {stats['accepted']} accepted")
            now = time.monotonic()
            if now >= self.next_tick:
                campaigns_tick()
                self.next_tick = now + 5
            if now >= self.next_sweep:
                outgoing_sweep()
                self.next_sweep = now + 30
            time.sleep(0.1)


def main() -> int:
    moto, sandbox_server = servers_start()
    sandbox = Sandbox(sandbox_server.root)
    worker: subprocess.Popen | None = None
    try:
        database_url = django_on_fresh_database("wharf_bench_campaign")
        from django.core.management import call_command
        from django.utils import timezone

        from campaigns.models import Campaign, Recipient
        from campaigns.reports import campaign_report_write
        from campaigns.services import campaign_create, campaign_pause, campaign_resume, campaign_start
        from core.aws import storage_ensure_bucket
        from messaging.models import PhoneNumber, Template

        call_command("createcachetable")
        call_command("queues_setup")
        storage_ensure_bucket()
        sandbox.call("POST", "reset")
        sandbox.call("POST", "config", {"statuses": False, "webhook_url": "", "rate_limits": {NUMBER: RATE}})
        sandbox.call("POST", "templates", {"name": "bench_offer", "language": "en", "components": TEMPLATE})
        sender = PhoneNumber.objects.create(phone_number_id=NUMBER, waba_id=WABA, rate_limit_per_s=RATE)
        template = Template.objects.create(
            waba_id=WABA, name="bench_offer", language="en", status="APPROVED", components=TEMPLATE
        )
        figures: dict = {"cpu_count": os.cpu_count(), "celery": f"1 worker, concurrency {CELERY_CONCURRENCY}"}
        figures["contacts_setup_s"] = round(contacts_insert(CONTACTS), 2)
        campaign = campaign_create(
            actor=None,
            source="system",
            name="Bench offer",
            channel=Campaign.Channel.WHATSAPP,
            phone_number=sender,
            template=template,
            template_parameters={"body": ["{{name}}", "{{attributes.code}}"]},
            audience_tags=["bench"],
        )
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        worker = worker_start(
            queues="default,outgoing",
            concurrency=CELERY_CONCURRENCY,
            env=env,
            log_path=VAR_DIR / "bench-campaign.log",
        )
        waiter = Waiter(sandbox, worker)

        started = time.perf_counter()
        campaign = campaign_start(campaign=campaign, actor=None, source="system")
        figures["materialize_s"] = round(time.perf_counter() - started, 3)
        recipients = campaign.total_recipients

        waiter.until(lambda s: s["accepted"] >= recipients * PAUSE_AT, what="the pause point")
        pause_requested = time.time()
        campaign_pause(campaign=campaign, actor=None, source="system")
        figures["pause_call_s"] = round(time.time() - pause_requested, 3)
        time.sleep(PAUSED_S)
        paused = waiter.until(lambda s: True, what="")
        last_before_resume = paused["accepts"][NUMBER]["last"]
        figures["accepted_at_pause"] = paused["accepted"]
        figures["pause_latency_s"] = round(max(0.0, last_before_resume - pause_requested), 3)
        resumed_at = time.time()
        campaign_resume(campaign=campaign, actor=None, source="system")

        def done(stats: dict) -> bool:
            return (
                stats["accepted"] >= recipients and Campaign.objects.get(pk=campaign.pk).status == "completed"
            )

        final = waiter.until(done, what="every recipient")
        timing = final["accepts"][NUMBER]
        sending_s = (last_before_resume - timing["first"]) + (timing["last"] - resumed_at)
        started = time.perf_counter()
        campaign.refresh_from_db()
        campaign_report_write(campaign=campaign)
        figures["report_s"] = round(time.perf_counter() - started, 2)
        figures["report_key"] = campaign.report_key
        figures["bench_rss_mb"] = peak_rss_mb()  # launch and report; the check below holds 100k ids
        full = sandbox.call("GET", "stats")
        message_ids = set(
            Recipient.objects.filter(campaign=campaign).values_list("message_id", flat=True).iterator()
        )
        by_callback = full["sends_by_callback"]
        exactly_once = (
            full["accepted"] == recipients
            and full["duplicates"] == 0
            and len(by_callback) == recipients
            and set(by_callback.values()) == {1}
            and {str(pk) for pk in message_ids} == set(by_callback)
        )
        figures["rate_limited_answers"] = full["rate_limited"]
        figures["sender_limit_per_s"] = RATE
        figures["worker_rss_mb"] = waiter.worker_rss_mb
        figures["finished_at"] = timezone.now().isoformat()
        report(
            figures
            | {
                "recipients": recipients,
                "materialize_s": figures["materialize_s"],
                "peak_rss_mb": max(figures["bench_rss_mb"], figures["worker_rss_mb"]),
                "pause_latency_s": figures["pause_latency_s"],
                "sent_exactly_once": exactly_once,
                "send_rate_per_s": round(full["accepted"] / sending_s, 1) if sending_s > 0 else None,
            }
        )
        return 0 if exactly_once else 1
    finally:
        if worker is not None:
            stop_process(worker, grace_s=10)
        sandbox_server.stop()
        moto.stop()
