"""Contacts: import a generated 100k-row CSV, then search over 1M contacts.

The import goes through the same service as the API, the admin and the command. The table is
then filled to 1M rows in SQL, and searches run the way the API runs them: the count of matches
plus the first page, for names, name fragments, phone fragments, emails and tags.

The same searches are then requested through Django's test client by a logged-in staff user who
may view contacts: the API's first page (`/api/v1/contacts/?q=&tag=`, with its count) and the
admin changelist's (`?q=&tag=`, with its paginator's count), each timed on the server from
request_started to request_finished.
"""

import csv
import os
import random
import tempfile
import time

from bench._setup import ServerTimes, django_on_fresh_database, peak_rss_mb, percentile, report

IMPORT_ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
TOTAL_CONTACTS = int(os.environ.get("BENCH_TOTAL_CONTACTS", "1000000"))
SEARCHES = int(os.environ.get("BENCH_SEARCHES", "300"))

FIRST = [
    "Ana",
    "Bruno",
    "Chen",
    "Dara",
    "Emeka",
    "Fatima",
    "Gita",
    "Hugo",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zara",
]
LAST = [
    "Silva",
    "Okafor",
    "Nguyen",
    "Müller",
    "Haddad",
    "Kowalski",
    "Santos",
    "Ivanova",
    "Tanaka",
    "Mensah",
    "Rossi",
    "Dubois",
    "Kapoor",
    "Larsen",
    "Moreau",
    "Novak",
    "Ortega",
    "Petrov",
    "Quispe",
    "Reyes",
    "Schmidt",
    "Torres",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zhou",
]
TAGS = ["vip", "newsletter", "lead", "customer", "churned", "beta", "wholesale", "retail"]


def generate_csv(rows: int, rng: random.Random) -> str:
    """UK mobile numbers (+44 7xxx), valid for phonenumbers, unique, in a temporary file."""
    fd, path = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["phone", "name", "email", "tags", "language", "city"])
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            writer.writerow(
                [
                    f"+447{400000000 + i * 7:09d}",
                    f"{first} {last}",
                    f"{first.lower()}.{last.lower()}{i}@example.com",
                    ";".join(rng.sample(TAGS, rng.randint(0, 2))),
                    rng.choice(["en", "pt_BR", "es", "de"]),
                    rng.choice(["Lagos", "Lisbon", "Leeds", "Lima"]),
                ]
            )
    return path


def fill_to(total: int) -> None:
    """Bulk rows in SQL: names from the same lists, phones in a range the import does not use."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO contacts_contact (phone, wa_id, name, email, tags, language, attributes,
                                          opt_in_source, opt_out_source, created_at, updated_at)
            SELECT '+1' || (2000000000 + i * 13)::text, '',
                   f.first || ' ' || l.last,
                   lower(f.first) || '.' || lower(l.last) || i || '@example.org',
                   CASE WHEN i %% 5 = 0 THEN ARRAY[%s] ELSE ARRAY[]::varchar[] END,
                   'en', '{}'::jsonb, '', '', now() - (i || ' seconds')::interval, now()
            FROM generate_series(1, %s) AS i,
                 LATERAL (SELECT (%s::text[])[1 + (i * 7) %% %s] AS first) f,
                 LATERAL (SELECT (%s::text[])[1 + (i * 11) %% %s] AS last) l
            """,
            [TAGS[0], total, FIRST, len(FIRST), LAST, len(LAST)],
        )
        cursor.execute("ANALYZE contacts_contact")


def search_terms(rng: random.Random, count: int) -> list[dict]:
    kinds = [
        lambda: {"search": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},  # a full name
        lambda: {"search": rng.choice(LAST)[:4]},  # a name fragment
        lambda: {"search": f"7{rng.randint(400, 499)}{rng.randint(0, 999):03d}"},  # phone digits
        lambda: {"search": f"+1 {2000 + rng.randint(0, 999)} {rng.randint(0, 999):03d}"},  # a formatted phone
        lambda: {"search": f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randint(0, 99999)}@"},
        lambda: {"tag": rng.choice(TAGS)},
        lambda: {"search": rng.choice(LAST), "tag": rng.choice(TAGS)},
    ]
    return [rng.choice(kinds)() for _ in range(count)]


def staff_client():
    """A test client logged in as a staff user (not a superuser) who may view contacts."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create(username="bench-operator", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="contacts", codename="view_contact")
    )
    client = Client()
    client.force_login(user)
    return client


def pages_time(searches: list[dict]) -> dict[str, list[float]]:
    """The server's time (ms) of the API's and the admin's first page of each search."""
    client = staff_client()
    times = ServerTimes()
    times.connect()
    taken: dict[str, list[float]] = {"api": [], "admin": []}
    for filters in searches[:3]:  # templates loaded, connections warm
        client.get("/admin/contacts/contact/", {"q" if k == "search" else k: v for k, v in filters.items()})
    for filters in searches:
        params = {"q" if name == "search" else name: value for name, value in filters.items()}
        for kind, url in (("api", "/api/v1/contacts/"), ("admin", "/admin/contacts/contact/")):
            response = client.get(url, params)
            assert response.status_code == 200, (url, params, response.status_code)
            taken[kind].append(times.last())
    return taken


def main() -> int:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django_on_fresh_database("wharf_bench_contacts")
    from django.core.management import call_command
    from django.db import connection

    from contacts.models import Contact
    from contacts.selectors import ContactPaginator, contact_list
    from contacts.services.csv_io import contacts_import_csv

    rng = random.Random(7)
    path = generate_csv(IMPORT_ROWS, rng)
    try:
        started = time.perf_counter()
        with open(path, "rb") as file:
            result = contacts_import_csv(file=file, actor=None, source="csv")
        import_s = time.perf_counter() - started
    finally:
        os.unlink(path)
    assert result.created == IMPORT_ROWS and not result.errors, (result.created, result.errors[:3])

    started = time.perf_counter()
    fill_to(TOTAL_CONTACTS - IMPORT_ROWS)
    fill_s = time.perf_counter() - started
    total = Contact.objects.count()

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'contact_name_trgm'")
        trigram = cursor.fetchone()[0] == 1

    call_command("createcachetable")
    searches = search_terms(rng, SEARCHES)
    timings_ms = []
    matched = 0
    for filters in searches:
        started = time.perf_counter()
        paginator = ContactPaginator(contact_list(**filters), 50)
        count = paginator.count
        page = list(paginator.page(1))
        timings_ms.append((time.perf_counter() - started) * 1000)
        matched += count > 0 and len(page) > 0
    pages_ms = pages_time(searches)
    for kind, taken in pages_ms.items():  # the slowest searches, to look at with EXPLAIN
        slowest = sorted(zip(taken, searches, strict=True), key=lambda pair: -pair[0])[:5]
        print(kind, "slowest:", [(round(ms), filters) for ms, filters in slowest])

    report(
        {
            "contacts": total,
            "import_rows": IMPORT_ROWS,
            "import_s": round(import_s, 2),
            "fill_s": round(fill_s, 2),
            "trigram_indexes": trigram,
            "searches": len(timings_ms),
            "searches_with_matches": matched,
            "peak_rss_mb": peak_rss_mb(),
            "import_rows_per_s": round(IMPORT_ROWS / import_s),
            "search_p50_ms": round(percentile(timings_ms, 50), 2),
            "search_p99_ms": round(percentile(timings_ms, 99), 2),
            "api_p50_ms": round(percentile(pages_ms["api"], 50), 2),
            "api_p99_ms": round(percentile(pages_ms["api"], 99), 2),
            "admin_p50_ms": round(percentile(pages_ms["admin"], 50), 2),
            "admin_p99_ms": round(percentile(pages_ms["admin"], 99), 2),
            "admin_max_ms": round(max(pages_ms["admin"]), 2),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
