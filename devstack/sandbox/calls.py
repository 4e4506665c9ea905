"""What every Graph API call in the sandbox does before its work: latency, the token, faults."""

from __future__ import annotations

import functools
import hmac
import time

from flask import current_app, request

from devstack.sandbox.errors import GraphApiError, invalid_token, unknown_object
from devstack.sandbox.outbox import Outbox
from devstack.sandbox.state import SandboxState
from devstack.sandbox.statuses import StatusDispatcher


def sandbox_state() -> SandboxState:
    return current_app.extensions["sandbox_state"]


def sandbox_outbox() -> Outbox:
    return current_app.extensions["sandbox_outbox"]


def sandbox_statuses() -> StatusDispatcher:
    return current_app.extensions["sandbox_statuses"]


def phone_number_check(phone_number_id: str) -> None:
    """Meta's unknown object for a phone number id the sandbox does not know (outbox.py's header)."""
    if not sandbox_outbox().number_known(phone_number_id):
        raise unknown_object(phone_number_id, method=request.method.lower())


def sandbox_config():
    return current_app.extensions["sandbox_config"]


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.args.get("access_token", "")


def graph_call(route: str):
    """Wrap a view as the Graph API call `route` (the name faults refer to)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            state = sandbox_state()
            if latency_s := state.latency_s():
                time.sleep(latency_s)
            if not hmac.compare_digest(bearer_token().encode(), sandbox_config().access_token.encode()):
                raise invalid_token()
            if fault := state.fault_take(route):
                raise GraphApiError(
                    fault.status,
                    fault.code,
                    fault.message,
                    error_type=fault.error_type,
                    details=fault.details,
                )
            return view(*args, **kwargs)

        return wrapper

    return decorate
