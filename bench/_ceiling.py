"""The webhook bench's ceiling: bare Django doing the least a webhook must (check the signature in
constant time, INSERT the raw body), served by the same gunicorn settings as Wharf.

Settings module and URLconf in one (DJANGO_SETTINGS_MODULE=bench._ceiling): no apps, no middleware,
the project's own database settings. Served as `django.core.wsgi:get_wsgi_application()`.
"""

import hashlib
import hmac
import os

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from config.settings import DATABASES  # noqa: F401 - the same connection settings as Wharf's

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = __name__
TABLE = "bench_ceiling_body"
CREATE_TABLE_SQL = f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, body bytea NOT NULL)"

_APP_SECRET = os.environ["WHATSAPP_APP_SECRET"].encode()


def webhook(request: HttpRequest) -> HttpResponse:
    body = request.body
    given = request.headers.get("X-Hub-Signature-256", "").removeprefix("sha256=")
    expected = hmac.new(_APP_SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode(errors="replace")):
        return JsonResponse({"error": "Invalid signature."}, status=403)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (body) VALUES (%s)", [body])
    return JsonResponse({"status": "ok"})


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("webhooks/whatsapp/", webhook), path("healthz", healthz)]
