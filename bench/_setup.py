"""What every benchmark shares: its own database, Django set up on it, and the figures it prints."""

import json
import os
import resource
from urllib.parse import urlsplit, urlunsplit

import psycopg

from config.stack import VAR_DIR, EmbeddedPostgres

_embedded: list[EmbeddedPostgres] = []  # kept referenced: pgserver stops the server when released


def django_on_fresh_database(name: str) -> str:
    """Point Django at a new, empty, migrated database `name`; returns its URL.

    The server is DATABASE_URL's when set, else the embedded one in var/pg.
    """
    if not os.environ.get("DATABASE_URL"):
        _embedded.append(EmbeddedPostgres(VAR_DIR / "pg", "postgres"))
        os.environ["DATABASE_URL"] = _embedded[0].url()
    server_url = urlsplit(os.environ["DATABASE_URL"])
    url = urlunsplit(server_url._replace(path=f"/{name}"))
    admin_url = urlunsplit(server_url._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return url


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
    return ordered[index]


def report(figures: dict) -> None:
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(figures))
