"""The API docs open in a browser cut off from everything but Wharf: Swagger UI comes from Wharf's
own static files and draws the schema's operations."""

from playwright.sync_api import expect


def test_swagger_ui_renders_with_no_network_but_wharf(admin_page, live_server, screenshot):
    page = admin_page
    elsewhere: list[str] = []

    def only_wharf(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_wharf)

    page.goto("/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Wharf API")
    operation = page.locator(".opblock-summary-path").filter(has_text="/api/v1/messages/").first
    expect(operation).to_be_visible()
    screenshot(page, "api-docs")
    assert elsewhere == []
