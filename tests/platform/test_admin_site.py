"""The admin site's frame: no link in its header leads to a page that does not exist."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("page", ["/admin/", "/admin/contacts/contact/", "/admin/messaging/conversation/"])
def test_the_header_has_no_view_site_link(admin_client, page):
    response = admin_client.get(page, follow=True)

    assert response.status_code == 200
    assert "View site" not in response.text
    assert 'href="/"' not in response.text
