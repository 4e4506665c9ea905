"""The dashboard at scale: BENCH_DASHBOARD_EVENTS analytics events (1,000,000) over 90 days and two
sender numbers, BENCH_DASHBOARD_CONTACTS contacts (200,000; 2% opted out over the period).

Seeding is set-based SQL in the bench's own database: the events from generate_series, 40% inbound
messages and 60% statuses of outbound ones (sent, delivered, read, failed with one of three codes),
spread over the 90 days; the contacts likewise; then VACUUM ANALYZE. Then:
- rollup_90_days_s: `stats_range_rollup` over the 90 days, one transaction a day (the command's
  rebuild); rollup_day_ms: each day's share of it;
- rollup_recent_ms: `stats_recent_rollup` (today and yesterday), what beat runs every five minutes,
  timed BENCH_DASHBOARD_REPEATS (10) times;
- page_<days>: the page for 7, 30 and 90 days (all numbers, and one number), through Django's test
  client with a superuser logged in, timed on the server, BENCH_DASHBOARD_REQUESTS (30) each.
BENCH_DASHBOARD_EVENTS=100000 is a quick run.
"""

import os
import time

from bench._setup import django_on_fresh_database, peak_rss_mb, percentile, report

EVENTS = int(os.environ.get("BENCH_DASHBOARD_EVENTS", "1000000"))
CONTACTS = int(os.environ.get("BENCH_DASHBOARD_CONTACTS", "200000"))
REQUESTS = int(os.environ.get("BENCH_DASHBOARD_REQUESTS", "30"))
REPEATS = int(os.environ.get("BENCH_DASHBOARD_REPEATS", "10"))
DAYS = 90

_SEED_EVENTS = """
INSERT INTO messaging_analyticsevent (kind, wamid, status, message_id, contact_id, phone_number_id,
                                      occurred_at, data, created_at)
SELECT CASE WHEN n %% 5 < 2 THEN 'message_received' ELSE 'status_changed' END,
       'wamid.BENCH' || n,
       CASE WHEN n %% 5 < 2 THEN ''
            ELSE (ARRAY['sent', 'delivered', 'read', 'sent', 'delivered', 'read', 'failed'])[1 + n %% 7] END,
       NULL, 1 + n %% %(contacts)s, CASE WHEN n %% 3 = 0 THEN %(second)s ELSE %(first)s END,
       at,
       CASE WHEN n %% 5 >= 2 AND n %% 7 = 6
            THEN jsonb_build_object('error_code', (ARRAY[131047, 131026, 131049])[1 + n %% 3])
            ELSE '{}'::jsonb END,
       at
FROM generate_series(1, %(events)s) n,
     LATERAL (SELECT now() - ((n::bigint * 7919) %% (%(days)s * 86400)) * interval '1 second' AS at) t
"""

_SEED_CONTACTS = """
INSERT INTO contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes, opt_in_source,
                              opt_out_source, email_opt_out_source, sms_opt_out_source, opted_out_at,
                              sms_opted_out_at, created_at, updated_at)
SELECT '+44740' || lpad(n::text, 7, '0'), '', '', 'Contact ' || n, '', '{}', 'en', '{}', '', '', '', '',
       CASE WHEN n %% 50 = 0 THEN now() - ((n::bigint * 7919) %% (%(days)s * 86400)) * interval '1 s' END,
       CASE WHEN n %% 400 = 0 THEN now() - ((n::bigint * 104729) %% (%(days)s * 86400)) * interval '1 s' END,
       now(), now()
FROM generate_series(1, %(contacts)s) n
"""


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> int:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django_on_fresh_database("wharf_bench_dashboard")
    from datetime import UTC, timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.signals import request_finished, request_started
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from dashboard.models import MessageDay
    from dashboard.rollups import stats_range_rollup, stats_recent_rollup
    from messaging.models import PhoneNumber

    call_command("createcachetable")
    first = PhoneNumber.objects.create(phone_number_id="100000000000001", display_phone_number="15550000001")
    second = PhoneNumber.objects.create(phone_number_id="100000000000002", display_phone_number="15550000002")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(_SEED_CONTACTS, {"contacts": CONTACTS, "days": DAYS})
        cursor.execute(
            _SEED_EVENTS,
            {"events": EVENTS, "contacts": CONTACTS, "days": DAYS, "first": first.pk, "second": second.pk},
        )
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM messaging_analyticsevent")
        events = cursor.fetchone()[0]
    seed_s = time.perf_counter() - started

    today = timezone.now().astimezone(UTC).date()
    rollup_90_s = _timed(lambda: stats_range_rollup(since=today - timedelta(days=DAYS), until=today))
    rows = MessageDay.objects.count()
    recent_ms = [1000 * _timed(stats_recent_rollup) for _ in range(REPEATS)]

    boss = get_user_model().objects.create(username="boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(boss)
    timings: list[float] = []
    clock: dict[str, float] = {}
    request_started.connect(lambda **kwargs: clock.__setitem__("start", time.perf_counter()), weak=False)
    request_finished.connect(
        lambda **kwargs: timings.append(time.perf_counter() - clock["start"]), weak=False
    )

    figures: dict = {
        "events": events,
        "contacts": CONTACTS,
        "seed_s": round(seed_s, 1),
        "rollup_90_days_s": round(rollup_90_s, 2),
        "rollup_day_ms": round(1000 * rollup_90_s / (DAYS + 1), 1),
        "rollup_rows": rows,
        "rollup_recent_p50_ms": round(percentile(recent_ms, 50), 1),
        "rollup_recent_max_ms": round(max(recent_ms), 1),
    }
    for days in (7, 30, 90):
        for label, number in (("all", ""), ("one", str(first.pk))):
            timings.clear()
            for _ in range(REQUESTS):
                response = client.get("/admin/dashboard/", {"days": days, "number": number})
                assert response.status_code == 200, response.status_code
            milliseconds = [1000 * value for value in timings]
            figures[f"page_{days}d_{label}_p50_ms"] = round(percentile(milliseconds, 50), 1)
            figures[f"page_{days}d_{label}_p95_ms"] = round(percentile(milliseconds, 95), 1)
    figures["peak_rss_mb"] = peak_rss_mb()
    report(figures)
    return 0
