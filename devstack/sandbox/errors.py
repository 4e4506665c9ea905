"""Meta's error answers:
`{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}`."""

from __future__ import annotations

import secrets

from flask import Response, jsonify


class GraphApiError(Exception):
    """Raised by a view; the app turns it into Meta's error JSON with this HTTP status."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        error_type: str = "OAuthException",
        subcode: int | None = None,
        details: str = "",
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.subcode = subcode
        self.details = details

    def response(self) -> Response:
        error: dict = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = _fbtrace_id()
        answer = jsonify({"error": error})
        answer.status_code = self.status
        if self.status == 401:
            answer.headers["WWW-Authenticate"] = 'OAuth "Facebook Platform" "invalid_token"'
        return answer


def invalid_token() -> GraphApiError:
    return GraphApiError(401, 190, "Invalid OAuth access token - Cannot parse access token")


def unknown_object(object_id: str, *, method: str = "get") -> GraphApiError:
    """What the Graph API answers for an id it does not have (or no longer has)."""
    return GraphApiError(
        400,
        100,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API "
        "documentation at https://developers.facebook.com/docs/graph-api",
        error_type="GraphMethodException",
        subcode=33,
    )


def invalid_parameter(message: str, *, details: str = "") -> GraphApiError:
    return GraphApiError(400, 100, f"(#100) {message}", details=details)


def unknown_path() -> GraphApiError:
    return GraphApiError(400, 2500, "Unknown path components", error_type="OAuthException")


def _fbtrace_id() -> str:
    return secrets.token_urlsafe(8)
