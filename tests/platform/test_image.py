"""The production image (deploy/Dockerfile), checked without Docker: what its build context holds
under .dockerignore's rules read as Docker reads them, what the entrypoint runs for each command,
gunicorn's settings from the environment, and the build's collectstatic without any secret."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import BASE_DIR

ENTRYPOINT = BASE_DIR / "deploy" / "entrypoint.sh"
DOCKERFILE = BASE_DIR / "deploy" / "Dockerfile"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
PRODUCTION_APPS = ("archival", "campaigns", "config", "contacts", "core", "messaging")
# Whether or not they exist on this machine, these never enter the image.
NEVER = (
    "var/stack.env",
    "var/secret_key",
    "var/pg/postgresql.conf",
    "var/static/admin/css/base.css",
    ".env",
    ".venv/bin/python",
    ".git/config",
    "tests/stack.py",
    "bench/__init__.py",
    "devstack/stack.py",
    "docs/screenshots/inbox.png",
    ".ci/run",
    "requirements-dev.txt",
    "messaging/__pycache__/models.cpython-311.pyc",
)


# -- .dockerignore, as Docker reads it (moby's patternmatcher) ------------------------------------
class Pattern:
    """One line: cleaned, leading "/" dropped, "!" an exception; `*` and `?` never cross "/", `**`
    crosses any number of folders, and a pattern that matches a parent folder matches what is in it."""

    def __init__(self, line: str):
        self.exception = line.startswith("!")
        text = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        self.text = text
        self.regex = re.compile(self._regex(text))

    @staticmethod
    def _regex(text: str) -> str:
        out, i = "^", 0
        while i < len(text):
            char = text[i]
            if text.startswith("**", i):
                i += 2
                if text[i : i + 1] == "/":
                    i += 1
                out += ".*" if i == len(text) else "(.*/)?"
                continue
            if char == "*":
                out += "[^/]*"
            elif char == "?":
                out += "[^/]"
            elif char == "\\" and i + 1 < len(text):
                i += 1
                out += re.escape(text[i])
            elif char in "[]":
                out += char
            else:
                out += re.escape(char)
            i += 1
        return out + "$"

    def matches(self, path: str) -> bool:
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:end])) for end in range(len(parts), 0, -1))


def dockerignore_patterns(text: str) -> list[Pattern]:
    lines = (line.strip() for line in text.splitlines())
    return [Pattern(line) for line in lines if line and not line.startswith("#")]


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """The last pattern that matches decides (moby's MatchesOrParentMatches)."""
    matched = False
    for pattern in patterns:
        if pattern.exception == matched and pattern.matches(path):
            matched = not pattern.exception
    return matched


def tree(root: Path) -> list[str]:
    """Every file and link under `root` as a build context sends it (links to folders included)."""
    found = []
    for folder, folders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        for name in files + [name for name in folders if (Path(folder) / name).is_symlink()]:
            found.append((relative / name).as_posix())
    return found


@pytest.fixture(scope="module")
def patterns() -> list[Pattern]:
    return dockerignore_patterns((BASE_DIR / ".dockerignore").read_text())


@pytest.fixture(scope="module")
def context(patterns) -> set[str]:
    """What `docker build -f deploy/Dockerfile .` would send, from this checkout as it is now."""
    return {path for path in tree(BASE_DIR) if not excluded(path, patterns)}


def test_the_matcher_reads_patterns_as_docker_does():
    patterns = dockerignore_patterns("README.md\n**/__pycache__/\n*.log\n!keep.log\nvar/\n/docs\n")

    assert excluded("README.md", patterns)
    assert not excluded("deploy/README.md", patterns)  # no "/" is not "anywhere", unlike .gitignore
    assert excluded("core/__pycache__/x.pyc", patterns)
    assert excluded("__pycache__/x.pyc", patterns)
    assert excluded("a.log", patterns) and not excluded("keep.log", patterns)
    assert not excluded("logs/a.log", patterns)
    assert excluded("var/pg/base/1", patterns)
    assert excluded("docs/screenshots/inbox.png", patterns)


def test_no_local_state_secret_or_development_file_enters_the_image(patterns, context):
    leaked = [path for path in NEVER if not excluded(path, patterns)]
    leaked += sorted(
        path
        for path in context
        if path.split("/")[0] in {"var", ".env", ".venv", ".git", "tests", "bench", "devstack", "docs"}
        or "__pycache__" in path.split("/")
    )

    assert not leaked, f"these would enter the image: {leaked[:20]}"


def test_the_production_code_enters_the_image(context):
    production = {
        f"{app}/{path}"
        for app in (*PRODUCTION_APPS, "templates")
        for path in tree(BASE_DIR / app)
        if "__pycache__" not in path.split("/")
    }

    missing = sorted(({"manage.py", "requirements.txt", "deploy/entrypoint.sh"} | production) - context)

    assert "config/settings.py" in production and "templates/admin/messaging/inbox.html" in production
    assert not missing, f"these would be missing from the image: {missing[:20]}"


def test_the_dockerfile_builds_in_two_stages_copies_only_the_context_and_runs_unprivileged(context):
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.MULTILINE)
    copies = re.findall(r"^COPY (?!--from)(\S+) ", text, re.MULTILINE)
    after_user = text.split("\nUSER ")[-1]

    assert stages == [("python:3.11-slim", "builder"), ("python:3.11-slim", "")]
    assert all(source == "." or source in context for source in copies), copies
    assert "requirements-dev" not in text
    assert after_user.split()[0] == "wharf" and "ENTRYPOINT" in after_user
    assert "WHARF_BUILD=1 python manage.py collectstatic" in text


# -- the entrypoint ---------------------------------------------------------------------------------
@pytest.fixture
def fake_bin(tmp_path) -> tuple[Path, Path]:
    """python, gunicorn and celery that only write down how they were called."""
    calls = tmp_path / "calls"
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("python", "gunicorn", "celery"):
        program = folder / name
        program.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n')
        program.chmod(0o755)
    return folder, calls


def entrypoint(fake_bin, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    folder, calls = fake_bin
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        cwd=BASE_DIR,
        env={"PATH": f"{folder}:/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result.returncode, lines, result.stderr


CHECK = "python manage.py check --deploy --fail-level ERROR"


def test_the_entrypoint_checks_then_starts_the_web_with_gunicorns_settings_module(fake_bin):
    code, calls, _ = entrypoint(fake_bin, "web")

    assert code == 0
    assert calls == [CHECK, "gunicorn config.wsgi --config python:config.gunicorn"]


def test_the_entrypoint_starts_a_worker_on_the_given_queues(fake_bin):
    code, calls, _ = entrypoint(fake_bin, "worker", "incoming,outgoing", env={"WORKER_CONCURRENCY": "8"})

    assert code == 0
    assert calls[0] == CHECK
    assert calls[1].startswith("celery --app config worker --queues incoming,outgoing --concurrency 8 ")
    assert "--hostname worker-incoming-outgoing@%h" in calls[1]


def test_the_entrypoint_starts_beat_and_migrates(fake_bin):
    assert entrypoint(fake_bin, "beat")[:2] == (0, [CHECK, "celery --app config beat --loglevel INFO"])
    _, calls = fake_bin
    calls.unlink()

    code, calls, _ = entrypoint(fake_bin, "migrate")

    assert code == 0
    assert calls == ["python manage.py migrate --noinput", "python manage.py createcachetable"]


def test_the_entrypoint_passes_manage_commands_through(fake_bin):
    assert entrypoint(fake_bin, "manage", "queues_setup")[:2] == (0, ["python manage.py queues_setup"])


@pytest.mark.parametrize("args", [[], ["worker"], ["web", "extra"], ["serve"]])
def test_the_entrypoint_refuses_what_it_does_not_know_with_its_usage(fake_bin, args):
    code, calls, stderr = entrypoint(fake_bin, *args)

    assert code == 2
    assert calls == []
    assert "usage: entrypoint.sh web | worker QUEUES | beat | migrate" in stderr


def test_the_entrypoint_stops_when_the_checks_fail(fake_bin):
    folder, _ = fake_bin
    (folder / "python").write_text('#!/bin/sh\necho "check refused" >&2\nexit 1\n')

    code, calls, stderr = entrypoint(fake_bin, "web")

    assert code == 1
    assert "check refused" in stderr and calls == []  # gunicorn never ran


# -- gunicorn and the build -------------------------------------------------------------------------
def build_env(**values: str) -> dict[str, str]:
    """A bare environment: no DEVSTACK, no secret, no database; the image's build flag."""
    return {"PATH": os.environ["PATH"], "HOME": str(BASE_DIR), "WHARF_BUILD": "1", **values}


def test_gunicorn_takes_its_settings_from_the_environment():
    result = subprocess.run(
        [GUNICORN, "--print-config", "-c", "python:config.gunicorn", "config.wsgi"],
        cwd=BASE_DIR,
        env=build_env(
            PORT="9000",
            WEB_CONCURRENCY="5",
            WEB_THREADS="3",
            WEB_TIMEOUT_S="40",
            WEB_GRACEFUL_TIMEOUT_S="20",
            WEB_KEEPALIVE_S="90",
            FORWARDED_ALLOW_IPS="*",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    values = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))

    assert values["bind"] == "['0.0.0.0:9000']"
    assert (values["workers"], values["threads"], values["timeout"]) == ("5", "3", "40")
    assert (values["graceful_timeout"], values["keepalive"]) == ("20", "90")
    assert values["forwarded_allow_ips"] == "['*']"
    assert values["accesslog"] == "None"  # the request middleware logs requests, with their ids


def test_the_build_collects_static_files_without_any_secret_or_database():
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run"],
        cwd=BASE_DIR,
        env=build_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "static files copied" in result.stdout
