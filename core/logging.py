"""Logs a machine can read, with no secret in them.

Every handler of `logging_config()` (the settings' LOGGING, gunicorn's too) carries two filters:
`ContextFilter` adds the request id (set by `RequestIdMiddleware`) or the Celery task id (set by
config/celery.py's signal handlers) to each record, and `RedactFilter` removes secrets from the
message, its arguments, its extra fields and its traceback: the configured values of the settings
in `SECRET_SETTINGS`, bearer tokens, passwords in URLs (`https://user:password@host`, as SNS posts
inbound SMS) and `password=`/`token=`-like parameters. Records go to stdout as JSON lines
(LOG_FORMAT=json, production's default) or as plain text (LOG_FORMAT=plain, the development
stack's default, so that `make run` stays readable).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

# Settings whose values never appear in a log line, and environment variables likewise.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "SMS_WEBHOOK_TOKEN",
    "EMAIL_HOST_PASSWORD",
)
SECRET_ENVIRONMENT = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Shorter values are left alone: replacing them would garble every line, and they are no secrets.
SECRET_MIN_LENGTH = 8
REDACTED = "[redacted]"
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^/\s@'\"]+@"), rf"\g<1>{REDACTED}@"),
    (
        re.compile(r"(?i)\b((?:hub\.verify_|access_|api_|app_)?(?:token|secret|password|passwd)=)[^&\s'\"]+"),
        rf"\g<1>{REDACTED}",
    ),
    (
        re.compile(r"(?i)(['\"](?:access_token|token|secret|password|app_secret)['\"]\s*:\s*['\"])[^'\"]*"),
        rf"\g<1>{REDACTED}",
    ),
)
# Attributes every LogRecord has; the others are a call's `extra=` fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LOG_FORMATS = ("json", "plain")


def secret_values() -> list[str]:
    """The secrets configured now, longest first (so that one containing another goes whole)."""
    values: list[str] = []
    try:
        values += [str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS]
        values.append(str(settings.DATABASES.get("default", {}).get("PASSWORD") or ""))
    except ImproperlyConfigured:  # logging before the settings are (a process's very start)
        pass
    values += [os.environ.get(name, "") for name in SECRET_ENVIRONMENT]
    return sorted({value for value in values if len(value) >= SECRET_MIN_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` without the configured secrets, bearer tokens and passwords in URLs or parameters."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any, secrets: list[str]) -> Any:
    """An extra field without secrets: its text, or the text inside its dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item, secrets) for item in value)
    return value


class RedactFilter(logging.Filter):
    """Formats the message and traceback early, without secrets; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the message: keep both, as text
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message, secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # formatters print exc_text instead
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES:
                setattr(record, name, _redacted(value, secrets))
        return True


class ContextFilter(logging.Filter):
    """Adds `request_id` or `task_id`, when the record was made within a request or a task."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id_var), ("task_id", task_id_var)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


def task_context_enter(task_id: str | None) -> None:
    task_id_var.set(task_id)


def task_context_exit() -> None:
    task_id_var.set(None)


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-ID when it is a plain token, else a new
    one), which every log line of the request carries and the response returns; then logs the
    request in one line (method, path without the query string, status, duration)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.logger = logging.getLogger("wharf.request")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            self.logger.info(
                "%s %s %s %.1f ms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
            return response
        finally:
            request_id_var.reset(token)


def logging_config(
    *, log_format: str, level: str, stream: IO[str] | str = "ext://sys.stdout"
) -> dict[str, Any]:
    """The one logging configuration (Django's LOGGING, gunicorn's and Celery's): the root logger
    to `stream`, in `log_format`, through the two filters; Django's errors also mailed to ADMINS."""
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    filters = ["context", "redact"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "redact": {"()": RedactFilter},
            "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": log_format,
                "filters": filters,
            },
            "mail_admins": {
                "class": "django.utils.log.AdminEmailHandler",
                "level": "ERROR",
                "filters": ["require_debug_false", *filters],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own loggers reach the console through the root, and mail errors to ADMINS.
            "django": {"handlers": ["mail_admins"], "level": "INFO"},
            # gunicorn's loggers lose their own handlers and go through the root like the rest.
            "gunicorn.error": {"handlers": [], "level": "INFO"},
            "gunicorn.access": {"handlers": [], "level": "INFO"},
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
