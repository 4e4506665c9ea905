"""Meta's error answers:
`{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}`; the Business
Management API's (templates) add `is_transient`, `error_user_title` and `error_user_msg`, the words
meant for the person who filled the form in."""

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
        user_title: str = "",
        user_msg: str = "",
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.subcode = subcode
        self.details = details
        self.user_title = user_title
        self.user_msg = user_msg

    def response(self) -> Response:
        error: dict = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        if self.user_msg:
            error["is_transient"] = False
            error["error_user_title"] = self.user_title
            error["error_user_msg"] = self.user_msg
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


def template_refused(subcode: int | None, title: str, text: str) -> GraphApiError:
    """A template create Meta refuses: code 100 "Invalid parameter", the subcode (2388xxx) saying
    which rule, and the words for the person who wrote it."""
    return GraphApiError(400, 100, "Invalid parameter", subcode=subcode, user_title=title, user_msg=text)


def unknown_path() -> GraphApiError:
    return GraphApiError(400, 2500, "Unknown path components", error_type="OAuthException")


def _fbtrace_id() -> str:
    return secrets.token_urlsafe(8)
