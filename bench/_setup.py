"""What every benchmark shares: its own database, Django set up on it, and the figures it prints."""

import json
import os
import resource
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from devstack.stack import BASE_DIR, BIN_DIR, VAR_DIR, EmbeddedPostgres, MotoServer, SandboxServer, free_port
from tests.waiting import wait_until

ACCESS_TOKEN = "bench-access-token"
APP_SECRET = "bench-app-secret"

_embedded: list[EmbeddedPostgres] = []  # kept referenced: pgserver stops the server when released


def django_on_fresh_database(name: str, *, reuse: bool = False) -> str:
    """Point Django at a new, empty, migrated database `name`; returns its URL.

    The server is DATABASE_URL's when set, else the embedded one in var/pg. With `reuse`, a
    database `name` that exists is kept (and migrated) rather than made again.
    """
    if not os.environ.get("DATABASE_URL"):
        _embedded.append(EmbeddedPostgres(VAR_DIR / "pg", "postgres"))
        os.environ["DATABASE_URL"] = _embedded[0].url()
    server_url = urlsplit(os.environ["DATABASE_URL"])
    url = urlunsplit(server_url._replace(path=f"/{name}"))
    admin_url = urlunsplit(server_url._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not (reuse and exists):
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


def moto_start(**environ: str) -> MotoServer:
    """moto's server (SQS, S3) in its own process on a free port, and the environment that Django
    and the workers read pointing at it (the bench's bucket and queue prefix), with `environ`."""
    VAR_DIR.mkdir(exist_ok=True)
    moto = MotoServer(free_port(), VAR_DIR / "moto-bench.log")
    os.environ.update(
        AWS_ENDPOINT_URL=moto.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_STORAGE_BUCKET_NAME="wharf-bench",
        SQS_QUEUE_PREFIX="wharf-bench-",
        SQS_WAIT_TIME_SECONDS="1",
        SECRET_KEY="bench-only",
        **environ,
    )
    return moto


def servers_start() -> tuple[MotoServer, SandboxServer]:
    """moto's server and the Graph API sandbox, each in its own process on a free port, and the
    environment that Django and the workers read pointing at them."""
    moto = moto_start()
    os.environ["SANDBOX_ACCESS_LOG"] = "0"
    sandbox = SandboxServer(
        free_port(),
        access_token=ACCESS_TOKEN,
        app_secret=APP_SECRET,
        webhook_url="",
        log_path=VAR_DIR / "sandbox-bench.log",
    )
    os.environ.update(
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="bench",
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
        WHATSAPP_GRAPH_URL=sandbox.graph_url,
    )
    return moto, sandbox


def worker_start(*, queues: str, concurrency: str, env: dict, log_path: Path) -> subprocess.Popen:
    """A Celery worker process on `queues`, once it says it is ready; its output goes to log_path."""
    log = open(log_path, "wb")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(
        [
            str(BIN_DIR / "celery"), "-A", "config", "worker", "--queues", queues,
            "--concurrency", concurrency, "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    log.close()

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited: see {log_path}")
        return b" ready." in log_path.read_bytes()

    wait_until(ready, timeout=60, interval=0.2, message=f"the Celery worker ready: see {log_path}")
    return process


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


class ServerTimes:
    """The server's handling time (ms) of each request the test client makes: from request_started
    to request_finished, so every middleware, the view and its template's rendering; the session
    and the user load inside the view, on first use of request.user."""

    def __init__(self) -> None:
        self.taken: list[float] = []
        self._started: list[float] = []

    def connect(self) -> None:
        from django.core.signals import request_finished, request_started

        request_started.connect(lambda **kwargs: self._started.append(time.perf_counter()), weak=False)
        request_finished.connect(
            lambda **kwargs: self.taken.append((time.perf_counter() - self._started.pop()) * 1000),
            weak=False,
        )

    def last(self) -> float:
        return self.taken[-1]
