"""The API's docs: Swagger UI served from Wharf's own static files (no CDN), behind a login."""

import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from tests.factories import UserFactory

DOCS = "/api/docs/"
SCHEMA = "/api/schema/"

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_the_admin_login(client):
    response = client.get(DOCS)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={DOCS}"


def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_admin_login(client):
    client.force_login(UserFactory(is_staff=False))

    response = client.get(DOCS)

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_page_loads_only_wharf_s_own_static_files(admin_client):
    response = admin_client.get(DOCS)

    assert response.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert urls, "the page references no assets"
    assert all(not urlsplit(url).scheme and not urlsplit(url).netloc for url in urls), urls
    static = [url for url in urls if url.startswith(settings.STATIC_URL)]
    assert {url.rsplit("/", 1)[1] for url in static} >= {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
    for url in static:
        assert finders.find(url.removeprefix(settings.STATIC_URL)), f"{url} is not a static file"


def test_the_schema_needs_a_signed_in_user(client, api_client):
    anonymous = client.get(SCHEMA, {"format": "json"})
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"]

    # an API token of a user with no permission at all reads it, as a client generator would
    assert api_client().get(SCHEMA, {"format": "json"}).status_code == 200
