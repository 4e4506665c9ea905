"""The inbox at scale: BENCH_INBOX_CONVERSATIONS conversations (100,000) over two sender numbers,
BENCH_INBOX_MESSAGES messages (5,000,000) over 90 days, 20 operators and a superuser.

Seeding is set-based SQL in the bench's own database: contacts and conversations from
generate_series, then every message in one INSERT ... SELECT (in time order, the message table's
indexes dropped and built again after), the conversations' times, previews, waits and unread counts
following from the messages they hold; VACUUM ANALYZE last. Statuses are mixed (20% open, 10%
pending, 65% resolved, 5% snoozed), 30% are assigned to an operator of the number's team, some
carry labels and a priority; a conversation holds ~50 messages on average, exponentially spread;
2% of the contacts talk to both numbers. Half of the operators are in the group of number 1, half
in that of number 2 (PhoneNumber.groups), so every request runs the visibility rule.

Then real requests through Django's test client, each operator logged in with force_login, timed
on the server from request_started to request_finished (middleware, view, template rendering),
with moto's SQS as the broker (a conversation opened with unread messages publishes its read
receipt, as in production; without a broker each publish would fail building a client):
- inbox: the inbox's first page with a random tab (mine, unassigned, all), status (open most
  often, or none), sender number and sort; also shown apart for status open and the others;
- conversation: a random conversation's page (`?sender=`), its timeline of the latest messages;
- poll_unchanged: the inbox's changes endpoint with the operator's current token;
- poll_changed: the same after one new inbound message went through conversation_message_apply.
BENCH_INBOX_CONVERSATIONS=10000 BENCH_INBOX_MESSAGES=500000 is a quick run; BENCH_INBOX_REQUESTS
(300) requests per measure; BENCH_INBOX_REUSE=1 measures again on the database an earlier run
seeded, migrated to the current code (an index's effect without seeding again).
"""

import os
import random
import time
import uuid

from bench._setup import ServerTimes, django_on_fresh_database, moto_start, peak_rss_mb, percentile, report

CONVERSATIONS = int(os.environ.get("BENCH_INBOX_CONVERSATIONS", "100000"))
MESSAGES = int(os.environ.get("BENCH_INBOX_MESSAGES", "5000000"))
REQUESTS = int(os.environ.get("BENCH_INBOX_REQUESTS", "300"))
# Keep the database an earlier run seeded (migrated to the current code) and measure again.
REUSE = os.environ.get("BENCH_INBOX_REUSE", "") == "1"
OPERATORS = 20
DAYS = 90
LABELS = ["vip", "billing", "delivery", "returns", "complaint", "lead"]
TEXTS = [
    "Hi, where is my order?",
    "Thanks, that helps a lot!",
    "Can I change the delivery address?",
    "Your parcel left our warehouse today.",
    "I was charged twice for the same thing",
    "We have refunded the second payment.",
    "Is the shop open on Sunday?",
    "Yes, from 10 to 16. See you!",
    "The app says my card was declined",
    "Could you send a photo of the label?",
    "ok",
    "Great, thank you 🙏",
]
INBOX = "/admin/messaging/conversation/"
CHANGES = "/admin/messaging/conversation/changes/"

# SQL helpers of the seed, temporary to its session. A message is (conversation n, position k of
# count); its time, direction and text follow from those, so the conversations' columns can be
# computed from the same rules without reading the messages back.
_FUNCTIONS = """
CREATE FUNCTION pg_temp.bench_at(last_at timestamptz, span interval, count int, k int)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT last_at - span * ((count - k)::float8 / greatest(count - 1, 1)) $$;

-- The customer writes last in open and snoozed conversations (`tail` messages), we do in
-- pending ones, and otherwise the sides take turns at random.
CREATE FUNCTION pg_temp.bench_inbound(n int, k int, count int, status text, tail int)
RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE
    WHEN status IN ('open', 'snoozed') AND k > count - tail THEN true
    WHEN status IN ('open', 'snoozed') AND k = count - tail THEN false
    WHEN status = 'pending' AND k = count THEN false
    ELSE hashint8(n::bigint * 1000003 + k) & 1 = 0 END $$;

CREATE FUNCTION pg_temp.bench_text(n int, k int, texts text[])
RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT texts[1 + ((hashint8(n::bigint * 7919 + k) & 2147483647) % cardinality(texts))] $$;
"""

_PLAN = """
CREATE TEMP TABLE bench_plan AS
SELECT n, contact_id, phone_number_id, status, assignee_id, labels, priority, count, tail, last_at,
       (last_at - (%(now)s::timestamptz - %(days)s * interval '1 day')) * r_span AS span
FROM (
    SELECT n,
           %(first_contact)s + CASE WHEN n <= %(contacts)s THEN n - 1 ELSE n - %(contacts)s - 1 END
               AS contact_id,
           CASE WHEN n <= %(contacts)s THEN (%(numbers)s::bigint[])[1 + n %% 2]
                ELSE (%(numbers)s::bigint[])[2 - n %% 2] END AS phone_number_id,
           CASE WHEN r_status < 0.20 THEN 'open' WHEN r_status < 0.30 THEN 'pending'
                WHEN r_status < 0.95 THEN 'resolved' ELSE 'snoozed' END AS status,
           CASE WHEN r_assigned < 0.30 THEN (%(operators)s::bigint[])[
                    1 + (CASE WHEN n <= %(contacts)s THEN n %% 2 ELSE 1 - n %% 2 END) * %(team)s
                    + floor(r_who * %(team)s)::int] END AS assignee_id,
           CASE WHEN r_label < 0.12 THEN ARRAY[(%(labels)s::text[])[1 + floor(r_who * 6)::int]]
                WHEN r_label < 0.15 THEN ARRAY[(%(labels)s::text[])[1 + floor(r_who * 3)::int],
                                               (%(labels)s::text[])[4 + floor(r_span * 3)::int]]
                ELSE '{}'::text[] END AS labels,
           CASE WHEN r_label > 0.97 THEN 'urgent' WHEN r_label > 0.92 THEN 'high' ELSE 'none' END
               AS priority,
           greatest(1, ceil(-%(average)s * ln(1 - r_count)))::int AS count,
           1 + floor(r_trail * 3)::int AS tail,
           %(now)s::timestamptz - %(days)s * interval '1 day' * r_age * r_age AS last_at,
           r_span
    FROM (
        SELECT n, random() AS r_status, random() AS r_assigned, random() AS r_who, random() AS r_label,
               random() AS r_count, random() AS r_age, random() AS r_span, random() AS r_trail
        FROM generate_series(1, %(conversations)s) AS n
    ) AS draws
) AS plan
"""

# Unread: the customer's tail messages of open conversations, except those someone read.
_CONVERSATIONS = """
INSERT INTO messaging_conversation (
    contact_id, phone_number_id, status, snoozed_until, assignee_id, labels, priority, unread_count,
    last_message_at, last_message_preview, waiting_since, created_at, updated_at)
SELECT contact_id, phone_number_id, status,
       CASE WHEN status = 'snoozed' THEN %(now)s::timestamptz + (1 + n %% 72) * interval '1 hour' END,
       assignee_id, labels, priority,
       CASE WHEN status = 'open' AND n %% 10 < 7 THEN least(tail, count) ELSE 0 END,
       last_at, pg_temp.bench_text(n, count, %(texts)s),
       CASE WHEN status IN ('open', 'snoozed')
            THEN pg_temp.bench_at(last_at, span, count, greatest(1, count - tail + 1)) END,
       last_at - span, last_at
FROM bench_plan ORDER BY n
"""

# Rows go in in time order, as they would arrive (a conversation's messages spread over the table);
# the sort is over narrow rows, the text and payload made after it.
_MESSAGES = """
INSERT INTO messaging_message (
    wamid, direction, type, status, contact_id, phone_number_id, conversation_id, text, payload,
    timestamp, context_wamid, target_wamid, reaction, media_id, media_mime_type, media_sha256,
    media_filename, media_key, media_state, media_error, error_title, error_details, idempotency_key,
    attempts, claimed_by, sent_at, delivered_at, read_at, created_at, updated_at)
SELECT 'wamid.BENCH' || n || '.' || k, CASE WHEN inbound THEN 'inbound' ELSE 'outbound' END, 'text',
       CASE WHEN inbound THEN 'received' ELSE 'read' END, contact_id, phone_number_id, conversation_id,
       pg_temp.bench_text(n, k, %(texts)s),
       jsonb_build_object('text', jsonb_build_object('body', pg_temp.bench_text(n, k, %(texts)s))), at,
       CASE WHEN k > 1 AND (n + k) %% 17 = 0 THEN 'wamid.BENCH' || n || '.' || (k - 1) ELSE '' END,
       '', '', '', '', '', '', '', '', '', '', '', '', CASE WHEN inbound THEN 0 ELSE 1 END, '',
       CASE WHEN NOT inbound THEN at END, CASE WHEN NOT inbound THEN at + interval '2 seconds' END,
       CASE WHEN NOT inbound THEN at + interval '1 minute' END, at, at
FROM (
    SELECT p.n, k, p.contact_id, p.phone_number_id, c.id AS conversation_id,
           pg_temp.bench_inbound(p.n, k, p.count, p.status, p.tail) AS inbound,
           pg_temp.bench_at(p.last_at, p.span, p.count, k) AS at
    FROM bench_plan p
    JOIN messaging_conversation c ON c.contact_id = p.contact_id AND c.phone_number_id = p.phone_number_id
    CROSS JOIN LATERAL generate_series(1, p.count) AS k
    ORDER BY at
) AS m
"""

_CONVERSATION_TIMES = """
UPDATE messaging_conversation c
SET last_inbound_at = m.last_inbound_at, last_outbound_at = m.last_outbound_at
FROM (
    SELECT conversation_id,
           max(timestamp) FILTER (WHERE direction = 'inbound') AS last_inbound_at,
           max(timestamp) FILTER (WHERE direction = 'outbound') AS last_outbound_at
    FROM messaging_message GROUP BY conversation_id
) AS m
WHERE m.conversation_id = c.id;
UPDATE contacts_contact t SET last_inbound_at = c.last_inbound_at
FROM (SELECT contact_id, max(last_inbound_at) AS last_inbound_at FROM messaging_conversation
      GROUP BY contact_id) AS c
WHERE c.contact_id = t.id;
"""


def operators_make() -> tuple[list, list, object]:
    """Two numbers, each with its team's group holding the operators' permissions, ten operators
    in each, and a superuser; returns the numbers, the operators (team 1 first) and the superuser."""
    from django.contrib.auth.models import Group, Permission, User

    from messaging.models import PhoneNumber

    permissions = Permission.objects.filter(
        content_type__app_label="messaging",
        codename__in=[
            f"{action}_{model}"
            for action in ("view", "add", "change")
            for model in ("conversation", "message")
        ],
    )
    numbers, operators = [], []
    team = OPERATORS // 2
    for index in (1, 2):
        number = PhoneNumber.objects.create(
            phone_number_id=f"10020030040{index}", display_phone_number=f"1555000000{index}"
        )
        group = Group.objects.create(name=f"number {index} team")
        group.permissions.set(permissions)
        number.groups.set([group])
        numbers.append(number)
        for seat in range(team):
            user = User(username=f"operator{index}-{seat:02d}", is_staff=True)
            user.set_unusable_password()
            user.save()
            user.groups.add(group)
            operators.append(user)
    boss = User(username="supervisor", is_staff=True, is_superuser=True)
    boss.set_unusable_password()
    boss.save()
    return numbers, operators, boss


def operators_find() -> tuple[list, list, object]:
    """What operators_make made, in a database seeded before."""
    from django.contrib.auth.models import User

    from messaging.models import PhoneNumber

    operators = list(
        User.objects.filter(is_superuser=False, username__startswith="operator").order_by("username")
    )
    return (
        list(PhoneNumber.objects.order_by("phone_number_id")),
        operators,
        User.objects.get(username="supervisor"),
    )


def indexes_drop(cursor, table: str) -> list[str]:
    """Drop the table's indexes but its primary key (a bulk load then builds each once); returns
    the statements that make them again, unique constraints included."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype = 'u'",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u'))",
        [table, table],
    )
    indexes = cursor.fetchall()
    for name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for name, definition in constraints
    ] + [definition for _, definition in indexes]


def seed(cursor, *, numbers: list, operators: list) -> dict[str, float]:
    """Contacts, conversations and messages in set-based SQL; the seconds each step took."""
    from django.utils import timezone

    contacts = CONVERSATIONS - CONVERSATIONS // 50  # 2% of the contacts talk to both numbers
    now = timezone.now()
    steps: dict[str, float] = {}

    def step(name: str, sql: str, params: dict | None = None) -> None:
        started = time.perf_counter()
        cursor.execute(sql, params)
        steps[name] = round(steps.get(name, 0) + time.perf_counter() - started, 1)

    # Bulk load: foreign keys are known to hold (no per-row trigger), a lost commit costs a rerun.
    cursor.execute(
        "SET session_replication_role = replica; SET synchronous_commit = off;"
        " SET work_mem = '256MB'; SET maintenance_work_mem = '512MB'"
    )
    cursor.execute(_FUNCTIONS)
    step(
        "contacts_s",
        """
        INSERT INTO contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes,
            opt_in_source, opt_out_source, email_opt_out_source, sms_opt_out_source, created_at, updated_at)
        SELECT '+4474' || lpad(i::text, 8, '0'), '4474' || lpad(i::text, 8, '0'), '',
               'Customer ' || i, 'customer' || i || '@example.com', '{}', 'en', '{}', '', '', '', '',
               %(now)s::timestamptz - %(days)s * interval '1 day', %(now)s
        FROM generate_series(1, %(contacts)s) AS i
        """,
        {"contacts": contacts, "now": now, "days": DAYS},
    )
    cursor.execute("SELECT min(id) FROM contacts_contact")
    first_contact = cursor.fetchone()[0]
    step(
        "conversations_s",
        _PLAN,
        {
            "now": now,
            "days": DAYS,
            "first_contact": first_contact,
            "contacts": contacts,
            "numbers": [number.pk for number in numbers],
            "operators": [operator.pk for operator in operators],
            "team": OPERATORS // 2,
            "labels": LABELS,
            "average": MESSAGES / CONVERSATIONS - 0.5,
            "conversations": CONVERSATIONS,
        },
    )
    cursor.execute("ALTER TABLE bench_plan ADD PRIMARY KEY (n)")
    step("conversations_s", _CONVERSATIONS, {"now": now, "texts": TEXTS})
    rebuild = indexes_drop(cursor, "messaging_message")
    step("messages_s", _MESSAGES, {"texts": TEXTS})
    for statement in rebuild:
        step("message_indexes_s", statement)
    step("conversation_times_s", _CONVERSATION_TIMES)
    cursor.execute(
        "RESET session_replication_role; RESET synchronous_commit; RESET work_mem; RESET maintenance_work_mem"
    )
    step("vacuum_analyze_s", "VACUUM ANALYZE")
    return steps


def spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.2f}  p95 {percentile(values, 95):.2f}  "
        f"p99 {percentile(values, 99):.2f}  max {max(values):.2f}  n {len(values)}"
    )


def main() -> int:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # SQS as in production: opening a conversation with unread messages publishes its read receipt.
    moto = moto_start()
    try:
        return measure()
    finally:
        moto.stop()


def measure() -> int:
    django_on_fresh_database("wharf_bench_inbox", reuse=REUSE)
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.utils import timezone

    from core.queues import queues_ensure
    from messaging.conversations import conversation_message_apply
    from messaging.models import Conversation, Message

    call_command("createcachetable")
    queues_ensure()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if Conversation.objects.exists():  # BENCH_INBOX_REUSE: seeded by an earlier run
            numbers, operators, boss = operators_find()
            steps = {"reused": True}
        else:
            numbers, operators, boss = operators_make()
            steps = seed(cursor, numbers=numbers, operators=operators)
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('messaging_message')),"
            " pg_size_pretty(pg_database_size(current_database()))"
        )
        message_table, database = cursor.fetchone()
    seed_s = time.perf_counter() - started

    rng = random.Random(11)
    team = OPERATORS // 2
    everyone = [*operators, boss]
    number_of = {user.pk: numbers[index // team].pk for index, user in enumerate(operators)}
    clients = {}
    for user in everyone:
        clients[user.pk] = Client()
        clients[user.pk].force_login(user)

    def operator_of(number_pk: int):
        """An operator of the number's team, now and then the superuser."""
        if rng.random() < 0.1:
            return boss
        return rng.choice([user for user in operators if number_of[user.pk] == number_pk])

    def get(user, url: str, params: dict):
        response = clients[user.pk].get(url, params)
        assert response.status_code == 200, (url, params, response.status_code)
        return response

    def inbox_params(user) -> dict:
        """A tab, mostly open conversations, mostly the longest waiting first, often one number."""
        params = {
            "tab": rng.choice(["mine", "unassigned", "all"]),
            "status": rng.choice(["open", "open", "open", "pending", "snoozed", "resolved", ""]),
            "sort": rng.choice(["waiting", "waiting", "latest"]),
        }
        if rng.random() < 0.5:
            params["phone_number"] = rng.choice(numbers).pk if user.is_superuser else number_of[user.pk]
        return {name: value for name, value in params.items() if value}

    def poll(user, token: str) -> tuple[bool, str]:
        answer = get(user, CHANGES, {"since": token}).json()
        return answer["changed"], answer["token"]

    times = ServerTimes()
    times.connect()
    for user in everyone[:3]:  # templates loaded, connections warm
        get(user, INBOX, inbox_params(user))
    inbox_ms: dict[str, list[float]] = {"open": [], "other": []}
    for _ in range(REQUESTS):
        user = rng.choice(everyone)
        params = inbox_params(user)
        get(user, INBOX, params)
        inbox_ms["open" if params.get("status") == "open" else "other"].append(times.last())
    measures = {"inbox": inbox_ms["open"] + inbox_ms["other"]}

    conversation_ids = list(Conversation.objects.values_list("id", flat=True))
    timeline_sizes = []
    measures["conversation"] = []
    for conversation in Conversation.objects.filter(id__in=rng.sample(conversation_ids, REQUESTS)):
        user = operator_of(conversation.phone_number_id)
        url = f"/admin/messaging/message/conversation/{conversation.contact_id}/"
        response = get(user, url, {"sender": conversation.phone_number_id})
        measures["conversation"].append(times.last())
        timeline_sizes.append(response.content.count(b'id="message-'))

    tokens = {user.pk: poll(user, "")[1] for user in everyone}
    measures["poll_unchanged"] = []
    moved = 0
    for _ in range(REQUESTS):
        user = rng.choice(everyone)
        changed, tokens[user.pk] = poll(user, tokens[user.pk])
        measures["poll_unchanged"].append(times.last())
        moved += changed

    measures["poll_changed"] = []
    missed = 0
    for _ in range(REQUESTS):
        conversation = Conversation.objects.select_related("contact").get(id=rng.choice(conversation_ids))
        text = "One more thing about my order"
        message = Message.objects.create(
            wamid=f"wamid.BENCHNEWS{uuid.uuid4().hex}",
            direction=Message.Direction.INBOUND,
            type="text",
            status=Message.Status.RECEIVED,
            contact=conversation.contact,
            phone_number_id=conversation.phone_number_id,
            text=text,
            payload={"text": {"body": text}},
            timestamp=timezone.now(),
        )
        conversation_message_apply(message=message)
        user = operator_of(conversation.phone_number_id)
        changed, tokens[user.pk] = poll(user, tokens[user.pk])
        measures["poll_changed"].append(times.last())
        missed += not changed

    details = {
        "conversations": Conversation.objects.count(),
        "messages": Message.objects.count(),
        "statuses": dict(
            Conversation.objects.values_list("status").annotate(n=Count("id")).order_by("status")
        ),
        "assigned": Conversation.objects.filter(assignee__isnull=False).count(),
        "unread": Conversation.objects.filter(unread_count__gt=0).count(),
        "operators": f"{OPERATORS} in two teams, and a superuser",
        "seed_s": round(seed_s, 1),
        "seed_steps_s": steps,
        "message_table": message_table,
        "database": database,
        "peak_rss_mb": peak_rss_mb(),
        "machine_load_1m": round(os.getloadavg()[0], 2),
        "timeline_entries": f"min {min(timeline_sizes)}, p50 {percentile(timeline_sizes, 50)}, "
        f"max {max(timeline_sizes)}",
        "poll_unchanged_moved": f"{moved} of {REQUESTS} (rows leaving the window)",
        "poll_changed_missed": f"{missed} of {REQUESTS}",
        "inbox_ms": spread(measures["inbox"]),
        "inbox_open_ms": spread(inbox_ms["open"]),
        "inbox_other_statuses_ms": spread(inbox_ms["other"]),
        "conversation_ms": spread(measures["conversation"]),
        "poll_unchanged_ms": spread(measures["poll_unchanged"]),
        "poll_changed_ms": spread(measures["poll_changed"]),
    }
    for key, value in details.items():
        print(f"{key:>24}: {value}")
    report(
        {
            "inbox_p50_ms": round(percentile(measures["inbox"], 50), 2),
            "inbox_p99_ms": round(percentile(measures["inbox"], 99), 2),
            "conversation_p99_ms": round(percentile(measures["conversation"], 99), 2),
            "poll_unchanged_p99_ms": round(percentile(measures["poll_unchanged"], 99), 2),
            "poll_changed_p99_ms": round(percentile(measures["poll_changed"], 99), 2),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
