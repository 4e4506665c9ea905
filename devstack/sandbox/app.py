"""The sandbox's Flask app: `create_app(SandboxConfig(access_token=...))`."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from devstack.sandbox import control, inbound, media, messages, numbers, sms, templates
from devstack.sandbox.errors import GraphApiError, unknown_path
from devstack.sandbox.outbox import OutboundSettings, Outbox
from devstack.sandbox.state import SandboxState
from devstack.sandbox.statuses import StatusDispatcher


@dataclass(frozen=True)
class SandboxConfig:
    access_token: str  # the bearer token every Graph API call must carry
    app_secret: str = ""  # signs the webhooks the sandbox posts (X-Hub-Signature-256)
    webhook_url: str = ""  # where it posts them: Wharf's /webhooks/whatsapp/
    sms_webhook_url: str = ""  # where inbound SMS go, as SNS would post them: Wharf's /webhooks/sms/
    max_upload_bytes: int = 110 * 1024 * 1024


class VersionConverter(BaseConverter):
    """A Graph API version in a path: v23.0."""

    regex = r"v\d+\.\d+"


def create_app(config: SandboxConfig) -> Flask:
    if not config.access_token:
        raise ValueError("the sandbox needs an access token (SANDBOX_ACCESS_TOKEN)")
    app = Flask("wharf-sandbox")
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False
    app.url_map.converters["version"] = VersionConverter
    app.extensions["sandbox_config"] = config
    app.extensions["sandbox_state"] = SandboxState()
    app.extensions["sandbox_url_key"] = secrets.token_bytes(32)
    app.extensions["sandbox_outbox"] = Outbox(
        OutboundSettings(webhook_url=config.webhook_url, app_secret=config.app_secret)
    )
    app.extensions["sandbox_statuses"] = StatusDispatcher()
    app.extensions["sandbox_standings"] = numbers.Standings()
    # Links of sent media are fetched off the request threads, as Meta fetches them to deliver.
    app.extensions["sandbox_link_fetchers"] = ThreadPoolExecutor(
        max_workers=8, thread_name_prefix="link-fetch"
    )
    app.extensions["sandbox_sms"] = sms.SmsOutbox(webhook_url=config.sms_webhook_url)
    app.extensions["sandbox_sns_signer"] = sms.SnsSigner()
    app.register_blueprint(media.blueprint)
    app.register_blueprint(messages.blueprint)
    app.register_blueprint(templates.blueprint)
    app.register_blueprint(numbers.blueprint)
    app.register_blueprint(control.blueprint)
    app.register_blueprint(inbound.blueprint)
    app.register_blueprint(sms.blueprint)

    @app.errorhandler(GraphApiError)
    def graph_api_error(error: GraphApiError):
        if request.blueprint == "messages":
            app.extensions["sandbox_outbox"].error_count(error.code)
        return error.response()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 404:
            return unknown_path().response()
        answer = GraphApiError(error.code or 500, 1, error.description or error.name).response()
        return answer

    return app
