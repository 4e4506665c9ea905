"""The embedded stack: the whole platform on a machine with nothing but Python.

`python -m devstack.stack run` (what `make run` calls) fills in whatever the environment leaves
unset, then supervises the platform's processes:

- no DATABASE_URL: an embedded PostgreSQL (the pgserver package) with its data in var/pg;
- no AWS_ENDPOINT_URL and no AWS credentials: moto's server on a loopback port, in which the
  bucket, every queue and every dead-letter queue are created; S3's objects are saved in var/s3
  when the stack stops and put back when it starts (SQS's messages are not kept);
- no WHATSAPP_ACCESS_TOKEN: the sandbox Graph API (devstack/sandbox) on a loopback port, with a
  token kept in var/; the webhook's app secret and verify token are kept there too when unset;
- no SMS_ENDPOINT_URL and no SMS_ORIGINATION_IDENTITY: the same sandbox stands in for AWS End User
  Messaging SMS, posting inbound SMS to /webhooks/sms/; email goes to the console backend;
- then migrations, queues, bucket, static files and a first admin user; then gunicorn, one
  Celery worker on every queue and Celery beat, their output prefixed with their names.

A process that dies (web, worker, beat, moto or the sandbox) is started again, and said so in the
log, after a delay that doubles with each death in a row, from RESTART_FIRST_S to RESTART_MAX_S,
and starts again from RESTART_FIRST_S once the process has run HEALTHY_AFTER_S (`Supervisor`).
moto comes back on its port with S3 as last saved in var/s3 (a minute old at most), then the
queues and the bucket are set up again; SQS's messages are lost with it, and the sweepers re-wake
what was pending. Only SIGINT, SIGTERM or SIGHUP stops the stack.

What it fills in goes to var/stack.env, with DEVSTACK=1 so that the settings install the devstack
app. Its children get DEVSTACK=1 in their environment; `DEVSTACK=1 .venv/bin/python manage.py ...`
beside the stack reads var/stack.env and so reaches the same database, queues and sandbox (without
the flag the settings read no file: production never takes a development value).

Every child runs in its own session so that Ctrl-C reaches only this supervisor, which stops
them in order (SIGTERM, then SIGKILL after a grace period) and leaves nothing running. The test
suite starts the same embedded services through `tests/stack.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from devstack.s3store import S3Saved, s3_restore, s3_save
from devstack.sandbox.sms import INBOUND_TOPIC_ARN

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
BIN_DIR = Path(sys.executable).parent
QUEUE_NAMES = ("incoming", "outgoing", "analytics", "archival", "default")
PLATFORM_PROCESSES = ("web", "worker", "beat")
GRACE_S = 20
S3_SAVE_EVERY_S = 60  # besides on stop: a supervisor killed outright loses at most this much of S3
GRAPH_VERSION = "v23.0"
RESTART_FIRST_S = 1.0  # the wait before starting again a process that died
RESTART_MAX_S = 30.0  # ... doubled at each death in a row, up to this
HEALTHY_AFTER_S = 60.0  # a process that has run this long since its start waits RESTART_FIRST_S again


def log(message: str) -> None:
    with contextlib.suppress(OSError):  # a closed terminal or pipe must not stop the shutdown
        print(f"stack  | {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- embedded PostgreSQL ------------------------------------------------------------------------


class EmbeddedPostgres:
    """pgserver's PostgreSQL, listening only on a Unix socket in its data folder."""

    def __init__(self, data_dir: Path, database: str):
        import warnings

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset: /tmp is fine
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(data_dir, cleanup_mode="stop")
        self.socket_dir = parse_qs(urlsplit(self.server.get_uri()).query)["host"][0]
        self.database = database
        self._create_database()

    def url(self, database: str | None = None) -> str:
        return f"postgres://postgres@/{database or self.database}?host={self.socket_dir}"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host=self.socket_dir, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        self.server.cleanup()


# -- moto's server (S3 and SQS) -----------------------------------------------------------------


class MotoServer:
    """moto's server over HTTP on loopback. Its state lives in memory; with `s3_dir`, S3's buckets
    and objects are put back from that folder on start and saved there on stop (devstack/s3store.py).
    """

    def __init__(self, port: int, log_path: Path, *, s3_dir: Path | None = None):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.s3_dir = s3_dir
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_answering(self.process, f"{self.endpoint}/moto-api/", name="moto's server")
        if s3_dir:
            try:
                restored = s3_restore(endpoint=self.endpoint, folder=s3_dir)
            except BaseException:
                self.s3_dir = None  # what was saved stays as it was
                self.stop()
                raise
            if restored:
                log(f"S3: {restored} object(s) put back from {display_path(s3_dir)}")

    def s3_keep(self) -> S3Saved | None:
        """Save S3 into `s3_dir` now; None when there is no folder or the save failed (said in the
        log), the previous save then left as it was."""
        if not self.s3_dir or self.process.poll() is not None:
            return None
        try:
            return s3_save(endpoint=self.endpoint, folder=self.s3_dir)
        except Exception as error:  # logged; the caller goes on stopping moto, or serving
            log(f"S3 could not be saved to {display_path(self.s3_dir)}: {error!r}")
            return None

    def stop(self) -> None:
        saved = self.s3_keep()
        if saved:
            log(f"S3: {saved.objects} object(s), {saved.bytes} byte(s) kept in {display_path(self.s3_dir)}")
            if saved.unreadable:
                log(f"S3: {saved.unreadable} object(s) in a cold storage class could not be read")
        stop_process(self.process)
        self._log.close()


def display_path(path: Path) -> str:
    """`path` relative to the project when it is inside it, as the log lines name var/."""
    return str(path.relative_to(BASE_DIR)) if path.is_relative_to(BASE_DIR) else str(path)


# -- the sandbox Graph API ----------------------------------------------------------------------


class SandboxServer:
    """The local Graph API look-alike (`python -m devstack.sandbox`) on loopback; media in memory.

    Its token and the app secret reach it through the environment, not its command line.
    """

    def __init__(
        self,
        port: int,
        *,
        access_token: str,
        app_secret: str,
        webhook_url: str,
        log_path: Path,
        sms_webhook_url: str = "",
    ):
        self.port = port
        self.options = {
            "access_token": access_token,
            "app_secret": app_secret,
            "webhook_url": webhook_url,
            "log_path": log_path,
            "sms_webhook_url": sms_webhook_url,
        }
        self.root = f"http://127.0.0.1:{port}"
        self.graph_url = f"{self.root}/{GRAPH_VERSION}"
        self.sms_url = f"{self.root}/sms"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "SANDBOX_ACCESS_TOKEN": access_token,
            "SANDBOX_APP_SECRET": app_secret,
            "SANDBOX_WEBHOOK_URL": webhook_url,
            "SANDBOX_SMS_WEBHOOK_URL": sms_webhook_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.sandbox", "--host", "127.0.0.1", "--port", str(port)],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_answering(self.process, f"{self.root}/sandbox/health", name="the sandbox Graph API")

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def wait_answering(process: subprocess.Popen, url: str, *, name: str, timeout_s: float = 30) -> None:
    """Wait until a child answers `url` over HTTP; raise if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - http on loopback
            return
        except OSError:
            time.sleep(0.1)
    stop_process(process, grace_s=2)
    raise RuntimeError(f"{name} did not answer on {url}")


def signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop_process(process: subprocess.Popen, *, terminate: bool = True, grace_s: float = GRACE_S) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is left after the grace period."""
    if terminate and process.poll() is None:
        signal_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace_s)
    signal_group(process, signal.SIGKILL)  # also ends grandchildren left in the group
    process.wait()


def aws_configured() -> bool:
    if os.environ.get("AWS_ENDPOINT_URL"):
        return True
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        return True
    return (Path.home() / ".aws" / "credentials").exists()


class Services:
    """The embedded services a process needs, started only where the environment names none."""

    def __init__(self) -> None:
        self.postgres: EmbeddedPostgres | None = None
        self.moto: MotoServer | None = None
        self.sandbox: SandboxServer | None = None

    def start(
        self,
        *,
        database: str,
        moto_port: int | None,
        force_moto: bool = False,
        s3_dir: Path | None = None,
        sandbox_token: str | None = None,
        sandbox_port: int | None = None,
        app_secret: str = "",
        webhook_url: str = "",
        sandbox_whatsapp: bool = True,
        sandbox_sms: bool = True,
        sms_webhook_url: str = "",
    ) -> dict[str, str]:
        """Start what is missing; returns the environment variables that point at it.

        With `s3_dir`, the S3 of the moto server started here is kept in that folder across restarts.
        The sandbox starts when `sandbox_token` is given: the token it will accept. It stands in
        for the Graph API when `sandbox_whatsapp`, for AWS End User Messaging SMS when `sandbox_sms`.
        """
        VAR_DIR.mkdir(exist_ok=True)
        values: dict[str, str] = {}
        if not os.environ.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(VAR_DIR / "pg", database)
            values["DATABASE_URL"] = self.postgres.url()
        if force_moto or not aws_configured():
            port = moto_port or free_port()
            self.moto = MotoServer(port, VAR_DIR / f"moto-{port}.log", s3_dir=s3_dir)
            values.update(
                AWS_ENDPOINT_URL=self.moto.endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any credentials
                AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
            )
        if sandbox_token:
            port = sandbox_port or free_port()
            self.sandbox = SandboxServer(
                port,
                access_token=sandbox_token,
                app_secret=app_secret,
                webhook_url=webhook_url,
                sms_webhook_url=sms_webhook_url,
                log_path=VAR_DIR / f"sandbox-{port}.log",
            )
            if sandbox_whatsapp:
                values.update(WHATSAPP_GRAPH_URL=self.sandbox.graph_url, WHATSAPP_ACCESS_TOKEN=sandbox_token)
            if sandbox_sms:
                values.update(
                    SMS_ENDPOINT_URL=self.sandbox.sms_url,
                    SMS_SNS_CERT_URL_PREFIXES=f"{self.sandbox.root}/sandbox/sns/",
                    SMS_SNS_TOPIC_ARNS=INBOUND_TOPIC_ARN,
                )
        return values

    def moto_start_again(self) -> MotoServer:
        """A moto server like the one that died, on its port, with S3 put back from its folder."""
        dead = self.moto
        self.moto = MotoServer(dead.port, dead.log_path, s3_dir=dead.s3_dir)
        return self.moto

    def sandbox_start_again(self) -> SandboxServer:
        dead = self.sandbox
        self.sandbox = SandboxServer(dead.port, **dead.options)
        return self.sandbox

    def stop(self) -> None:
        if self.sandbox:
            self.sandbox.stop()
            self.sandbox = None
        if self.moto:
            self.moto.stop()
            self.moto = None
        if self.postgres:
            self.postgres.stop()
            self.postgres = None


# -- the platform's processes -------------------------------------------------------------------


class Child:
    """A supervised process whose output lines are printed with its name in front."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._print_output, daemon=True)
        self._pump.start()

    def _print_output(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            with contextlib.suppress(OSError):  # keep draining the pipe even if our output is gone
                sys.stdout.write(f"{self.name:<6} | {line.decode(errors='replace')}")
                sys.stdout.flush()

    def stop(self, *, terminate: bool = True) -> None:
        stop_process(self.process, terminate=terminate)
        self._pump.join(timeout=2)


class Running(Protocol):
    """What a supervisor keeps: a child, moto's server, the sandbox."""

    process: subprocess.Popen

    def stop(self) -> None: ...


def restart_delay(deaths: int) -> float:
    """The wait before the next start of a process that died `deaths` times in a row."""
    return min(RESTART_FIRST_S * 2 ** (deaths - 1), RESTART_MAX_S)


class Kept:
    """A process kept running: `start` makes it, and makes it again after it dies (see the header)."""

    def __init__(self, name: str, start: Callable[[], Running], *, running: Running | None = None):
        self.name = name
        self._start = start
        self.running: Running | None = running or start()
        self.started_at = time.monotonic()
        self.deaths = 0  # in a row: since it last ran HEALTHY_AFTER_S
        self.start_at = 0.0  # when to start it again, while it is not running

    def check(self) -> None:
        """Note a death, or start again a process whose wait is over."""
        now = time.monotonic()
        if self.running is not None:
            code = self.running.process.poll()
            if code is None:
                if self.deaths and now - self.started_at >= HEALTHY_AFTER_S:
                    self.deaths = 0
                return
            self.running.stop()  # what it left: other processes of its group, its log
            self.running = None
            self._wait(f"{self.name} exited with {code}")
            return
        if now < self.start_at:
            return
        try:
            self.running = self._start()
        except Exception as error:
            self._wait(f"{self.name} did not start: {error}")
            return
        self.started_at = time.monotonic()
        log(f"{self.name} started again")

    def _wait(self, what: str) -> None:
        self.deaths += 1
        delay = restart_delay(self.deaths)
        self.start_at = time.monotonic() + delay
        log(f"{what}; starting it again in {delay:g} s")


class Supervisor:
    """Keeps processes running until `stopping` is set (by a signal: `stop_on_signals`)."""

    def __init__(self, stopping: threading.Event):
        self.stopping = stopping
        self.kept: list[Kept] = []

    def keep(self, name: str, start: Callable[[], Running], *, running: Running | None = None) -> Kept:
        """Start a process with `start` (or take the one `running`) and keep it running."""
        kept = Kept(name, start, running=running)
        self.kept.append(kept)
        return kept

    def run(self, *, every: tuple[float, Callable[[], None]] | None = None) -> None:
        """Watch until asked to stop; `every` = (seconds, what to do that often)."""
        done_at = time.monotonic()
        while not self.stopping.is_set():
            for kept in self.kept:
                kept.check()
            if every and time.monotonic() - done_at >= every[0]:
                every[1]()
                done_at = time.monotonic()
            self.stopping.wait(0.5)

    def stop(self, names: Iterable[str] | None = None) -> None:
        """SIGTERM the kept processes named (all by default) at once, then wait for each; SIGKILL
        what is left of one after the grace period."""
        chosen = [kept for kept in self.kept if names is None or kept.name in names]
        running = [kept.running for kept in chosen if kept.running is not None]
        for each in running:
            signal_group(each.process, signal.SIGTERM)
        for each in running:
            stop_process(each.process, terminate=False)
            each.stop()
        for kept in chosen:
            kept.running = None


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP: the only ways to stop a supervisor."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def secret_file_write(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write `text` to a file only its owner can read: born with mode 600 (os.open's mode, never a
    chmod after the fact), filled under a temporary name, then put at `path` in one step, so no
    reader ever finds it readable by others or half written. With replace=False an existing file is
    kept; returns whether `path` now holds `text`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails when the file exists: a concurrent start made it
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def var_secret(name: str) -> str:
    """A secret generated once into var/<name> (mode 600) and read from there on every start."""
    path = VAR_DIR / name
    if not path.exists():
        secret_file_write(path, secrets.token_urlsafe(50), replace=False)
    return path.read_text().strip()


def secret_key() -> str:
    return var_secret("secret_key")


def whatsapp_defaults(port: int) -> dict[str, str]:
    """The webhook's app secret and verify token, generated into var/ where the environment has none,
    and the sandbox's webhook URL: this stack's own endpoint."""
    values = {
        name: var_secret(name.lower())
        for name in ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")
        if not os.environ.get(name)
    }
    if not os.environ.get("SANDBOX_WEBHOOK_URL"):
        values["SANDBOX_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/webhooks/whatsapp/"
    return values


def channel_defaults(port: int) -> dict[str, str]:
    """The email and SMS settings `make run` fills in: the console email backend, this stack's own
    address for links, and the token of the inbound SMS webhook (generated into var/)."""
    values = {}
    if not os.environ.get("EMAIL_BACKEND"):
        values["EMAIL_BACKEND"] = "django.core.mail.backends.console.EmailBackend"
    if not os.environ.get("PUBLIC_BASE_URL"):
        values["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    if not os.environ.get("SMS_WEBHOOK_TOKEN"):
        values["SMS_WEBHOOK_TOKEN"] = var_secret("sms_webhook_token")
    return values


def sms_configured() -> bool:
    """AWS End User Messaging SMS is set up: an endpoint or an origination identity is named."""
    return bool(os.environ.get("SMS_ENDPOINT_URL") or os.environ.get("SMS_ORIGINATION_IDENTITY"))


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def write_stack_env(values: dict[str, str]) -> Path:
    path = VAR_DIR / "stack.env"
    secret_file_write(path, "".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def read_dotenv() -> None:
    """Put `.env` into this process's environment under what is already set, as the settings read it,
    so that a value there (DATABASE_URL, WHATSAPP_ACCESS_TOKEN ...) replaces an embedded default."""
    import environ

    environ.Env.read_env(BASE_DIR / ".env")


def run(port: int, moto_port: int, sandbox_port: int) -> int:
    if not port_is_free(port):
        log(f"port {port} is taken; choose another with PORT=...")
        return 1
    read_dotenv()
    stopping = stop_on_signals()
    supervisor = Supervisor(stopping)
    services = Services()
    stack_env: Path | None = None
    try:
        log("starting embedded services where none are configured")
        VAR_DIR.mkdir(exist_ok=True)
        whatsapp = whatsapp_defaults(port)
        channels = channel_defaults(port)
        graph_configured = bool(os.environ.get("WHATSAPP_ACCESS_TOKEN"))
        sms_token = os.environ.get("SMS_WEBHOOK_TOKEN") or channels["SMS_WEBHOOK_TOKEN"]
        values = services.start(
            database="wharf",
            moto_port=moto_port if port_is_free(moto_port) else None,
            s3_dir=VAR_DIR / "s3",
            sandbox_token=None
            if graph_configured and sms_configured()
            else var_secret("sandbox_access_token"),
            sandbox_port=sandbox_port if port_is_free(sandbox_port) else None,
            app_secret=os.environ.get("WHATSAPP_APP_SECRET") or whatsapp.get("WHATSAPP_APP_SECRET", ""),
            webhook_url=os.environ.get("SANDBOX_WEBHOOK_URL") or whatsapp.get("SANDBOX_WEBHOOK_URL", ""),
            sandbox_whatsapp=not graph_configured,
            sandbox_sms=not sms_configured(),
            sms_webhook_url=f"http://sns:{sms_token}@127.0.0.1:{port}/webhooks/sms/",
        )
        values.update(whatsapp)
        values.update(channels)
        if services.postgres:
            log(f"PostgreSQL (embedded) in var/pg, socket {services.postgres.socket_dir}")
        if services.moto:
            log(f"S3 and SQS (moto's server) at {services.moto.endpoint}; S3 kept in var/s3 across restarts")
        if services.sandbox:
            sandbox = services.sandbox
            log(f"the sandbox at {sandbox.root}, its log in var/{sandbox.log_path.name}")
            if "WHATSAPP_GRAPH_URL" in values:
                log(f"Graph API (the sandbox) at {sandbox.graph_url}")
            if "SMS_ENDPOINT_URL" in values:
                log(f"SMS (the sandbox) at {sandbox.sms_url}")
        values.setdefault("SECRET_KEY", os.environ.get("SECRET_KEY") or secret_key())
        values["DEVSTACK"] = "1"  # the settings add the devstack app: `manage.py sandbox_inbound`
        stack_env = write_stack_env(values)
        env = {**os.environ, **values, "PYTHONUNBUFFERED": "1"}

        for command in (
            ["migrate", "--noinput"],
            ["createcachetable"],
            ["queues_setup"],
            ["storage_setup"],
            ["collectstatic", "--noinput", "--verbosity", "0"],
            ["admin_bootstrap"],
            *([["sandbox_setup"]] if "WHATSAPP_GRAPH_URL" in values else []),
        ):
            if stopping.is_set():
                return 130
            manage(env, *command)

        children = {
            "web": [
                str(BIN_DIR / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                os.environ.get("WEB_CONCURRENCY", "2"),
                "--no-control-socket",
            ],
            "worker": [
                str(BIN_DIR / "celery"),
                "-A",
                "config",
                "worker",
                "--queues",
                ",".join(QUEUE_NAMES),
                "--concurrency",
                os.environ.get("WORKER_CONCURRENCY", "2"),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                "worker@%h",
            ],
            "beat": [str(BIN_DIR / "celery"), "-A", "config", "beat", "--loglevel", "INFO"],
        }
        for name, argv in children.items():
            supervisor.keep(name, partial(Child, name, argv, env))
        if services.moto:
            supervisor.keep("moto", partial(moto_start_again, services, env), running=services.moto)
        if services.sandbox:
            supervisor.keep("sandbox", services.sandbox_start_again, running=services.sandbox)
        log(f"Wharf is up: http://127.0.0.1:{port}/admin/  API docs http://127.0.0.1:{port}/api/docs/")
        if services.sandbox:
            log(
                "a WhatsApp user writes: DEVSTACK=1 .venv/bin/python manage.py sandbox_inbound "
                '--from +447400123456 --name Ana --text "hello"'
            )
        log("Ctrl-C stops everything")
        supervisor.run(every=(S3_SAVE_EVERY_S, lambda: services.moto and services.moto.s3_keep()))
        return 0
    except subprocess.CalledProcessError as error:
        log(f"set-up failed: {error}")
        return 1
    finally:
        log("stopping")
        supervisor.stop(PLATFORM_PROCESSES)  # then the services they use
        if stack_env:
            stack_env.unlink(missing_ok=True)
        services.stop()
        log("stopped")


def moto_start_again(services: Services, env: dict[str, str]) -> MotoServer:
    """moto on its port again, then its queues and bucket (S3's objects come back from var/s3)."""
    moto = services.moto_start_again()
    for command in (["queues_setup"], ["storage_setup"]):
        try:
            manage(env, *command)
        except subprocess.CalledProcessError as error:  # the broker transport makes lost queues too
            log(f"after moto's restart: {error}")
    return moto


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="serve the whole platform on embedded defaults")
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run_parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "8001")))
    run_parser.add_argument("--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8002")))
    args = parser.parse_args()
    return run(args.port, args.moto_port, args.sandbox_port)


if __name__ == "__main__":
    sys.exit(main())
