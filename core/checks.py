"""System checks that keep development values out of production.

Outside the development stack (DEVSTACK) every endpoint Wharf talks to must be a real one: no
loopback or local host (the sandbox, moto's server, the embedded PostgreSQL), and no plain HTTP
where a token or a password travels. `manage.py check` runs them, and so does the image's
entrypoint before it starts the web, a worker or beat; `migrate` runs them too.
"""

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

PRODUCTION_TAG = "production"
_HINTS = {
    "WHATSAPP_GRAPH_URL": "Leave it unset for Meta's Graph API (https://graph.facebook.com/v23.0).",
    "AWS_ENDPOINT_URL": "Leave it unset in AWS: S3 and SQS are reached in AWS_REGION.",
    "SMS_ENDPOINT_URL": "Leave it unset in AWS: End User Messaging SMS is reached in AWS_REGION.",
    "PUBLIC_BASE_URL": "Set it to this site's public https:// address, e.g. https://wharf.example.com.",
    "SMS_SNS_CERT_URL_PREFIXES": "Leave it unset: SNS's certificates come from sns.<region>.amazonaws.com.",
}


def _local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified or address.is_link_local


def _endpoint_errors(name: str, url: str, *, https: bool = True) -> Iterator[Error]:
    parts = urlsplit(url)
    if _local_host(parts.hostname or ""):
        yield Error(
            f"{name} points at a local host ({parts.hostname}): a development endpoint in production",
            hint=_HINTS.get(name, f"Set {name} to the real service's URL."),
            id="wharf.E001",
        )
    elif https and parts.scheme != "https":
        yield Error(
            f"{name} is not https ({url.split('://')[0]}://…): credentials would travel in clear",
            hint=_HINTS.get(name, f"Set {name} to an https:// URL."),
            id="wharf.E002",
        )


@register(PRODUCTION_TAG)
def production_endpoints_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Refuse the development stack's endpoints when the development stack is not on."""
    if settings.DEVSTACK or settings.BUILD:
        return []
    errors: list[CheckMessage] = []
    endpoints = [
        ("WHATSAPP_GRAPH_URL", settings.WHATSAPP_GRAPH_URL),
        ("AWS_ENDPOINT_URL", settings.AWS_ENDPOINT_URL),
        ("SMS_ENDPOINT_URL", settings.SMS_ENDPOINT_URL),
        ("PUBLIC_BASE_URL", settings.PUBLIC_BASE_URL),
        *(("SMS_SNS_CERT_URL_PREFIXES", prefix) for prefix in settings.SMS_SNS_CERT_URL_PREFIXES),
    ]
    for name, url in endpoints:
        if url:
            errors += _endpoint_errors(name, url)
    broker = urlsplit(settings.CELERY_BROKER_URL)
    if _local_host(broker.hostname or "") or broker.scheme == "memory":
        errors.append(
            Error(
                "CELERY_BROKER_URL points at a local broker: a development endpoint in production",
                hint="Leave CELERY_BROKER_URL unset for SQS in AWS_REGION.",
                id="wharf.E001",
            )
        )
    database_host = str(settings.DATABASES["default"].get("HOST") or "")
    if not database_host or database_host.startswith("/") or _local_host(database_host):
        errors.append(
            Error(
                f"DATABASE_URL points at a local PostgreSQL ({database_host or 'a Unix socket'}): "
                "a development database in production",
                hint="Set DATABASE_URL to the production database (RDS) by its host name.",
                id="wharf.E001",
            )
        )
    return errors
