"""The embedded stack: the whole platform on a machine with nothing but Python.

`python -m config.stack run` (what `make run` calls) fills in whatever the environment leaves
unset, then supervises the platform's processes:

- no DATABASE_URL: an embedded PostgreSQL (the pgserver package) with its data in var/pg;
- no AWS_ENDPOINT_URL and no AWS credentials: moto's server on a loopback port, in which the
  bucket, every queue and every dead-letter queue are created;
- then migrations, queues, bucket, static files and a first admin user; then gunicorn, one
  Celery worker on every queue and Celery beat, their output prefixed with their names.

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
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
BIN_DIR = Path(sys.executable).parent
QUEUE_NAMES = ("incoming", "outgoing", "analytics", "archival", "default")
GRACE_S = 20


def log(message: str) -> None:
    print(f"stack  | {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
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
    """moto's server over HTTP on loopback. Its state lives in memory: it is lost on stop."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()  # noqa: S310 - http on loopback
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto's server did not answer on {self.endpoint}")

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


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

    def start(self, *, database: str, moto_port: int | None, force_moto: bool = False) -> dict[str, str]:
        """Start what is missing; returns the environment variables that point at it."""
        VAR_DIR.mkdir(exist_ok=True)
        values: dict[str, str] = {}
        if not os.environ.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(VAR_DIR / "pg", database)
            values["DATABASE_URL"] = self.postgres.url()
        if force_moto or not aws_configured():
            port = moto_port or free_port()
            self.moto = MotoServer(port, VAR_DIR / f"moto-{port}.log")
            values.update(
                AWS_ENDPOINT_URL=self.moto.endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any credentials
                AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
            )
        return values

    def stop(self) -> None:
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
            sys.stdout.write(f"{self.name:<6} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def stop(self, *, terminate: bool = True) -> None:
        stop_process(self.process, terminate=terminate)
        self._pump.join(timeout=2)


def secret_key() -> str:
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def write_stack_env(values: dict[str, str]) -> Path:
    path = VAR_DIR / "stack.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    path.chmod(0o600)
    return path


def run(port: int, moto_port: int) -> int:
    if not port_is_free(port):
        log(f"port {port} is taken; choose another with PORT=...")
        return 1
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())

    services = Services()
    children: list[Child] = []
    stack_env: Path | None = None
    try:
        log("starting embedded services where none are configured")
        values = services.start(database="wharf", moto_port=moto_port if port_is_free(moto_port) else None)
        if services.postgres:
            log(f"PostgreSQL (embedded) in var/pg, socket {services.postgres.socket_dir}")
        if services.moto:
            log(f"S3 and SQS (moto's server) at {services.moto.endpoint}")
        values.setdefault("SECRET_KEY", os.environ.get("SECRET_KEY") or secret_key())
        stack_env = write_stack_env(values)
        env = {**os.environ, **values, "PYTHONUNBUFFERED": "1"}

        for command in (
            ["migrate", "--noinput"],
            ["createcachetable"],
            ["queues_setup"],
            ["storage_setup"],
            ["collectstatic", "--noinput", "--verbosity", "0"],
            ["admin_bootstrap"],
        ):
            if stopping.is_set():
                return 130
            manage(env, *command)

        children = [
            Child(
                "web",
                [
                    str(BIN_DIR / "gunicorn"),
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    os.environ.get("WEB_CONCURRENCY", "2"),
                    "--access-logfile",
                    "-",
                    "--no-control-socket",
                ],
                env,
            ),
            Child(
                "worker",
                [
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
                env,
            ),
            Child("beat", [str(BIN_DIR / "celery"), "-A", "config", "beat", "--loglevel", "INFO"], env),
        ]
        log(f"Wharf is up: http://127.0.0.1:{port}/admin/  API docs http://127.0.0.1:{port}/api/docs/")
        log("Ctrl-C stops everything")
        while not stopping.is_set():
            for child in children:
                if child.process.poll() is not None:
                    log(f"{child.name} exited with {child.process.returncode}; stopping")
                    stopping.set()
            stopping.wait(0.5)
        return 0
    except subprocess.CalledProcessError as error:
        log(f"set-up failed: {error}")
        return 1
    finally:
        log("stopping")
        for child in children:  # all at once; then wait for each
            signal_group(child.process, signal.SIGTERM)
        for child in children:
            child.stop(terminate=False)
        if stack_env:
            stack_env.unlink(missing_ok=True)
        services.stop()
        log("stopped")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m config.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="serve the whole platform on embedded defaults")
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run_parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "8001")))
    args = parser.parse_args()
    return run(args.port, args.moto_port)


if __name__ == "__main__":
    sys.exit(main())
