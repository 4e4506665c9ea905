"""Uploaded files' sizes, refused before they are read whole.

Django reads a request's body only up to its Content-Length (a body without one is read as empty),
so the length is a promise the body cannot break. `UploadLimitMiddleware`, ahead of anything that
reads the body (the CSRF check reads a form's fields), answers 413 to a multipart request longer
than UPLOAD_MAX_BYTES without reading a byte of it; a file under that is spooled to a temporary
file past FILE_UPLOAD_MAX_MEMORY_SIZE, never held whole in memory, and stored by streaming it on.
Each door then holds its file to its own limit, naming its field: `upload_length_check` on the
Content-Length before the body is parsed (the API: 413), `upload_size_check` on the parsed file
(the field's error in a form or a serializer).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status

# What a multipart form adds to its file: boundaries, headers, the other fields.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
_MB = 1024 * 1024


class UploadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The upload is too large."


def upload_too_large_text(limit: int) -> str:
    megabytes = f" ({limit / _MB:.4g} MB)" if limit >= _MB else ""
    return f"The file is larger than {limit:,} bytes{megabytes}, the most this takes."


def _content_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def upload_length_check(request: HttpRequest, *, field: str, limit: int) -> None:
    """Before the body is read: UploadTooLarge (413) naming `field` when the request is longer than
    a file of `limit` bytes and its form."""
    if _content_length(request) > limit + MULTIPART_ENVELOPE_BYTES:
        raise UploadTooLarge({field: [upload_too_large_text(limit)]})


def upload_size_check(file, *, limit: int) -> None:
    """A parsed upload (in a form's or a serializer's check of its field): ValidationError when it is
    larger than `limit` bytes."""
    if file is not None and file.size > limit:
        raise ValidationError(upload_too_large_text(limit), code="too_large")


class UploadLimitMiddleware:
    """413 for a multipart request longer than UPLOAD_MAX_BYTES, before its body is read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.UPLOAD_MAX_BYTES
        if request.content_type == "multipart/form-data" and _content_length(request) > limit:
            return JsonResponse(
                {"body": f"The request is longer than {limit:,} bytes (UPLOAD_MAX_BYTES)."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return self.get_response(request)
