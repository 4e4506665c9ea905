"""Webhooks: what Wharf's webhook and drain cost, beside a bare-Django ceiling measured in the same run.

The load generator is wrk (`apt-get install wrk` on Debian and Ubuntu, `brew install wrk` on macOS),
driven by bench/webhook.lua: every body is built, signed and formatted before the clock starts,
each is sent once (distinct wamids, so the sha256 dedup never short-circuits), and its CPU per
request is printed, so the figures are the server's and not the generator's.

Phases, each over BENCH_CONNECTIONS connections, served by gunicorn with config/gunicorn.py
(BENCH_WEB_WORKERS x BENCH_WEB_THREADS) on its own database, moto's SQS and S3:

1. ceiling: bench/_ceiling.py, bare Django that checks the HMAC in constant time and INSERTs the raw
   body, nothing else; the same bodies.
2. campaign: BENCH_EVENTS bodies of a campaign's mix, as Meta sends them: 75 % statuses (sent,
   delivered, read of outbound messages seeded in the database, so they really apply), 20 % inbound
   texts from the campaign's contacts, 5 % other fields (template status and quality, account and
   number updates). Two Celery worker processes drain the `incoming` queue while the load runs;
   end_to_end_per_s is the events applied from the first accepted to the last applied.
3. statuses only, then 4. texts only (BENCH_PHASE_EVENTS each): the workers' CPU (their process
   tree, read with psutil, from the first post to the last applied) per status and per message.

`accept_ratio` is Wharf's accepted/s over the ceiling's; ack latencies are wrk's, closed loop.
"""

import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench._setup import django_on_fresh_database, moto_start, report
from devstack.stack import BASE_DIR, BIN_DIR, VAR_DIR, free_port, stop_process
from tests.waiting import WaitTimeout, wait_until

EVENTS = int(os.environ.get("BENCH_EVENTS", "10000"))
PHASE_EVENTS = int(os.environ.get("BENCH_PHASE_EVENTS", "2000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "1"))
WEB_WORKERS = os.environ.get("BENCH_WEB_WORKERS", "2")
WEB_THREADS = os.environ.get("BENCH_WEB_THREADS", "4")
CELERY_CONCURRENCY = "2"
APP_SECRET = "bench-app-secret"
LUA_SCRIPT = Path(__file__).with_name("webhook.lua")
WORK_DIR = VAR_DIR / "bench-webhook"
FIXTURES = BASE_DIR / "tests" / "messaging" / "fixtures"
OTHER_FIXTURES = (
    "message_template_status_update.json",
    "message_template_quality_update.json",
    "template_category_update.json",
    "account_update.json",
    "phone_number_quality_update.json",
)
WRK_MISSING = (
    "wrk, the load generator, is not installed: `apt-get install wrk` (Debian, Ubuntu) or `brew install wrk`."
)


# -- bodies ---------------------------------------------------------------------------------------


def signed(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def wa_id_of(contact: int) -> str:
    return f"4477009{contact:05d}"


class Bodies:
    """Meta's bodies for the bench, each distinct: statuses of the seeded outbound wamids, texts
    from the seeded contacts, and the other fields from the tests' fixtures with their own time."""

    def __init__(self, *, contacts: int) -> None:
        from tests.messaging import webhook_helpers

        self.helpers = webhook_helpers
        self.contacts = contacts
        self.now = int(time.time())
        self.texts = 0
        self.others = 0
        self.fixtures = [json.loads((FIXTURES / name).read_text()) for name in OTHER_FIXTURES]

    def status(self, wamid: str, status: str, contact: int) -> bytes:
        return self.helpers.status_body(
            wamid=wamid, status=status, timestamp=self.now, wa_id=wa_id_of(contact)
        )

    def text(self) -> bytes:
        self.texts += 1
        contact = random.randrange(self.contacts)
        return self.helpers.text_body(
            wamid=f"wamid.bench-in-{self.texts}",
            text=f"Thanks! Reply {self.texts}",
            wa_id=wa_id_of(contact),
            name=f"Customer {contact}",
            timestamp=self.now,
        )

    def other(self) -> bytes:
        self.others += 1
        payload = json.loads(json.dumps(self.fixtures[self.others % len(self.fixtures)]))
        payload["entry"][0]["id"] = self.helpers.WABA_ID
        payload["entry"][0]["time"] = self.now - self.others
        return json.dumps(payload).encode()


def campaign_mix(bodies: Bodies, *, wamids: list[tuple[str, int]], events: int) -> list[bytes]:
    """A campaign's traffic: each wamid's sent, delivered and read, spread over the run in that
    order (a tenth of the run apart), with texts (20 %) and other fields (5 %) in between."""
    keyed: list[tuple[float, bytes]] = []
    lag = len(wamids) / 10
    for index, (wamid, contact) in enumerate(wamids):
        for step, status in enumerate(("sent", "delivered", "read")):
            keyed.append((index + step * lag, bodies.status(wamid, status, contact)))
    span = len(wamids) + 2 * lag
    texts = round(events * 0.20)
    keyed += [(random.uniform(0, span), bodies.text()) for _ in range(texts)]
    keyed += [(random.uniform(0, span), bodies.other()) for _ in range(events - len(keyed))]
    keyed.sort(key=lambda item: item[0])
    return [body for _, body in keyed]


# -- the database ----------------------------------------------------------------------------------


def seed(*, contacts: int, messages: int, first_message: int = 0) -> list[tuple[str, int]]:
    """The campaign's contacts (once) and `messages` outbound messages already sent to them; returns
    their (wamid, contact index)."""
    from django.utils import timezone

    from contacts.models import Contact
    from messaging.models import Message, PhoneNumber
    from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, WABA_ID

    number, _ = PhoneNumber.objects.get_or_create(
        phone_number_id=PHONE_NUMBER_ID,
        defaults={"display_phone_number": "15550783881", "waba_id": WABA_ID},
    )
    if not Contact.objects.exists():
        Contact.objects.bulk_create(
            [
                Contact(phone=f"+{wa_id_of(index)}", wa_id=wa_id_of(index), name=f"Customer {index}")
                for index in range(contacts)
            ],
            batch_size=2000,
        )
    by_wa_id = dict(Contact.objects.values_list("wa_id", "pk"))
    now = timezone.now()
    wamids = [(f"wamid.bench-out-{first_message + index}", index % contacts) for index in range(messages)]
    Message.objects.bulk_create(
        [
            Message(
                wamid=wamid,
                direction=Message.Direction.OUTBOUND,
                type="template",
                status=Message.Status.SENT,
                contact_id=by_wa_id[wa_id_of(contact)],
                phone_number=number,
                text="Your order has shipped",
                timestamp=now,
                sent_at=now,
            )
            for wamid, contact in wamids
        ],
        batch_size=2000,
    )
    return wamids


def events_done() -> tuple[int, int, int]:
    """Stored events, those no longer pending, and the failed ones."""
    from messaging.models import InboundEvent

    state = InboundEvent.State
    stored = InboundEvent.objects.count()
    done = InboundEvent.objects.exclude(state=state.PENDING).count()
    return stored, done, InboundEvent.objects.filter(state=state.FAILED).count()


def wait_applied(timeout_s: float) -> None:
    def all_done() -> bool:
        stored, done, _ = events_done()
        return done >= stored

    with contextlib.suppress(WaitTimeout):  # the figures say how far it got
        wait_until(all_done, timeout=timeout_s, interval=0.2, message="every event applied")


# -- processes -------------------------------------------------------------------------------------


def tree_cpu_s(process: subprocess.Popen) -> float:
    """CPU seconds of a process and its children (gunicorn's and Celery's forks), so far."""
    import psutil

    parent = psutil.Process(process.pid)
    total = 0.0
    for proc in [parent, *parent.children(recursive=True)]:
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


def gunicorn_start(*, app: str, env: dict, log) -> tuple[subprocess.Popen, int]:
    """gunicorn with the production settings (config/gunicorn.py) on a free port, once it answers."""
    port = free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": WEB_WORKERS, "WEB_THREADS": WEB_THREADS}
    process = subprocess.Popen(
        [str(BIN_DIR / "gunicorn"), "-c", "python:config.gunicorn", "--bind", f"127.0.0.1:{port}", app],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(lambda: healthy(port), timeout=60, interval=0.5, message=f"gunicorn {app} up")
    return process, port


def worker_start(*, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN_DIR / "celery"), "-A", "config", "worker", "--queues", "incoming",
            "--concurrency", CELERY_CONCURRENCY, "--without-mingle", "--without-gossip",
            "--loglevel", "WARNING",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wrk_post(*, port: int, bodies: list[bytes], name: str) -> dict:
    """POST each body once with wrk; its summary, and its own CPU (from its rusage) per request.

    Each wrk thread reads a file of its share, then spares (distinct bodies of the same kind, one
    per connection) for the requests in flight when it stops."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    prefix = WORK_DIR / f"{name}-"
    per_thread = [bodies[thread::WRK_THREADS] for thread in range(WRK_THREADS)]
    for thread, share in enumerate(per_thread):
        counted = len(share) - CONNECTIONS // WRK_THREADS - 1
        with open(f"{prefix}{thread}.tsv", "wb") as lines:
            lines.write(f"{counted}\n".encode())
            for body in share:
                lines.write(signed(body).encode() + b"\t" + body + b"\n")
    command = [
        "wrk", "--threads", str(WRK_THREADS), "--connections", str(CONNECTIONS), "--duration", "900s",
        "--timeout", "30s", "--script", str(LUA_SCRIPT), f"http://127.0.0.1:{port}/webhooks/whatsapp/",
        "--", str(prefix),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    ready = done = 0
    for line in process.stdout:
        output.append(line.decode())
        if line == b"ready\n":
            ready += 1
            if ready == 1:  # threads start sending as soon as each is ready
                started = time.perf_counter()
        elif line == b"done\n":
            done += 1
            if done == WRK_THREADS:
                duration_s = time.perf_counter() - started
                process.send_signal(signal.SIGINT)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or done < WRK_THREADS:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{''.join(output)}")
    summary = json.loads(output[-1])
    if summary["sent"] > summary["prepared"]:
        raise RuntimeError(f"wrk sent a body twice: more requests in flight than spares\n{''.join(output)}")
    summary["accepted"] = summary["requests"] - summary["non_2xx"]
    summary["accepted_per_s"] = summary["accepted"] / duration_s
    summary["cpu_ms_per_request"] = (usage.ru_utime + usage.ru_stime) * 1000 / summary["requests"]
    return summary


def spares(count: int) -> int:
    return count + CONNECTIONS + WRK_THREADS


# -- the run ---------------------------------------------------------------------------------------


def main() -> int:
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 1
    random.seed(0)
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
        from django.db import connection
        from django.db.models import Max, Min

        from bench._ceiling import CREATE_TABLE_SQL
        from messaging.models import InboundEvent, Message

        call_command("createcachetable")
        call_command("queues_setup")
        call_command("storage_setup")
        with connection.cursor() as cursor:
            cursor.execute(CREATE_TABLE_SQL)
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        log = open(VAR_DIR / "bench-webhook.log", "wb")  # noqa: SIM115 - the processes keep it

        started = time.perf_counter()
        campaign_events = spares(EVENTS)
        contacts = max(1, campaign_events // 4)
        campaign_wamids = seed(contacts=contacts, messages=round(campaign_events * 0.75) // 3)
        status_wamids = seed(
            contacts=contacts, messages=spares(PHASE_EVENTS), first_message=len(campaign_wamids)
        )
        bodies = Bodies(contacts=contacts)
        campaign = campaign_mix(bodies, wamids=campaign_wamids, events=campaign_events)
        statuses_only = [bodies.status(wamid, "delivered", contact) for wamid, contact in status_wamids]
        texts_only = [bodies.text() for _ in range(spares(PHASE_EVENTS))]
        print(f"seeded and built {len(campaign) + len(statuses_only) + len(texts_only)} bodies in "
              f"{time.perf_counter() - started:.0f} s; figures follow", flush=True)  # fmt: skip

        # 1. The ceiling, alone on the machine's share of this bench.
        ceiling_server, port = gunicorn_start(
            app="django.core.wsgi:get_wsgi_application()",
            env={**env, "DJANGO_SETTINGS_MODULE": "bench._ceiling"},
            log=log,
        )
        processes.append(ceiling_server)
        web_before = tree_cpu_s(ceiling_server)
        ceiling = wrk_post(port=port, bodies=campaign, name="ceiling")
        ceiling_web_cpu_ms = (tree_cpu_s(ceiling_server) - web_before) * 1000 / ceiling["requests"]
        stop_process(ceiling_server, grace_s=10)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bench_ceiling_body")
            (ceiling_rows,) = cursor.fetchone()

        # 2. Wharf: the campaign's mix, drained while it arrives.
        web, port = gunicorn_start(app="config.wsgi", env=env, log=log)
        workers = worker_start(env=env, log=log)
        processes += [web, workers]
        web_before = tree_cpu_s(web)
        wharf = wrk_post(port=port, bodies=campaign, name="campaign")
        web_cpu_ms = (tree_cpu_s(web) - web_before) * 1000 / wharf["requests"]
        wait_applied(timeout_s=900)
        stored, applied, failed = events_done()
        span = InboundEvent.objects.aggregate(first=Min("received_at"), last=Max("processed_at"))
        end_to_end_s = (span["last"] - span["first"]).total_seconds() if span["last"] else 0
        campaign_read = Message.objects.filter(
            wamid__in=[wamid for wamid, _ in campaign_wamids], status=Message.Status.READ
        ).count()
        campaign_inbound = Message.objects.filter(direction=Message.Direction.INBOUND).count()

        # 3 and 4. The workers' CPU per status, then per message.
        worker_cpu_ms = {}
        for kind, phase_bodies in (("status", statuses_only), ("message", texts_only)):
            stored_before = InboundEvent.objects.count()
            cpu_before = tree_cpu_s(workers)
            wrk_post(port=port, bodies=phase_bodies, name=kind)
            wait_applied(timeout_s=600)
            phase_events = InboundEvent.objects.count() - stored_before
            worker_cpu_ms[kind] = (tree_cpu_s(workers) - cpu_before) * 1000 / phase_events
        phase_stored, phase_applied, phase_failed = events_done()

        generator_cpu_ms = (wharf["cpu_ms_per_request"] + ceiling["cpu_ms_per_request"]) / 2
        report(
            {
                "under": "shared machine: other processes use the same cores during the run",
                "events": EVENTS,
                "connections": CONNECTIONS,
                "web": f"gunicorn config/gunicorn.py, {WEB_WORKERS} workers x {WEB_THREADS} threads",
                "generator": f"wrk, {WRK_THREADS} thread(s)",
                "cpu_count": os.cpu_count(),
                "ceiling_accepted_per_s": round(ceiling["accepted_per_s"]),
                "ceiling_ack_p50_ms": round(ceiling["p50_us"] / 1000, 2),
                "ceiling_ack_p99_ms": round(ceiling["p99_us"] / 1000, 2),
                "ceiling_web_cpu_ms_per_request": round(ceiling_web_cpu_ms, 3),
                "ceiling_rows": ceiling_rows,
                "accepted_per_s": round(wharf["accepted_per_s"]),
                "accept_ratio": round(wharf["accepted_per_s"] / ceiling["accepted_per_s"], 3),
                "ack_p50_ms": round(wharf["p50_us"] / 1000, 2),
                "ack_p99_ms": round(wharf["p99_us"] / 1000, 2),
                "ack_p50_ratio": round(wharf["p50_us"] / max(ceiling["p50_us"], 1), 2),
                "ack_p99_ratio": round(wharf["p99_us"] / max(ceiling["p99_us"], 1), 2),
                "web_cpu_ms_per_request": round(web_cpu_ms, 3),
                "web_cpu_ratio": round(web_cpu_ms / ceiling_web_cpu_ms, 2) if ceiling_web_cpu_ms else None,
                "non_2xx": wharf["non_2xx"] + ceiling["non_2xx"],
                "socket_errors": wharf["socket_errors"] + ceiling["socket_errors"],
                "stored_events": stored,
                "applied_events": applied,
                "failed_events": failed,
                "campaign_messages_read": f"{campaign_read} of {len(campaign_wamids)}",
                "inbound_messages": campaign_inbound,
                "end_to_end_per_s": round(applied / end_to_end_s) if end_to_end_s else None,
                "worker_cpu_ms_per_status": round(worker_cpu_ms["status"], 3),
                "worker_cpu_ms_per_message": round(worker_cpu_ms["message"], 3),
                "phase_events_failed": phase_failed - failed,
                "phase_events_pending": (phase_stored - phase_applied),
                "generator_cpu_ms_per_request": round(generator_cpu_ms, 4),
                "generator_cpu_share_of_web": round(generator_cpu_ms / web_cpu_ms, 3) if web_cpu_ms else None,
            }
        )
        return 0
    finally:
        for process in processes:
            stop_process(process, grace_s=10)
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
