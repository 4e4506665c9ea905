"""A small client for Meta's Graph API (the WhatsApp Cloud API), over one pooled httpx.Client.

Every call goes through `GraphClient.request`, which turns Meta's error JSON
(`{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}, "fbtrace_id"}}`),
timeouts and connection failures into `GraphError`s that say whether trying again can help:
callers back off on `GraphRetryableError` and give up at once on `GraphPermanentError`.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Iterator
from functools import cache
from http.cookiejar import CookieJar
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

# Meta's codes that mean "not now": API unknown/service (1, 2), app rate limit (4), account rate
# limit (80007), throughput (130429), unknown error (131000), service unavailable (131016),
# pair rate limit (131056), business account unavailable (133004).
RETRYABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 133004})
# Codes that mean the token is wrong, expired or lacks permission: operators must act.
AUTH_CODES = frozenset({0, 190})
# A media download is written on in pieces of this size.
DOWNLOAD_CHUNK_BYTES = 64 * 1024

_TITLE_PREFIX = re.compile(r"^\(#\d+\)\s*")


class GraphError(Exception):
    """A Graph API call that did not succeed, with Meta's code, title and details when it sent them."""

    retryable = False

    def __init__(
        self,
        title: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        details: str = "",
        error_type: str = "",
        fbtrace_id: str = "",
    ):
        super().__init__(title)
        self.title = title
        self.status = status
        self.code = code
        self.subcode = subcode
        self.details = details
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id

    @property
    def reason(self) -> str:
        """One line for operators: `(#131052) Media download error: <details> (HTTP 400)`."""
        text = f"(#{self.code}) {self.title}" if self.code is not None else self.title
        if self.details and self.details != self.title:
            text = f"{text}: {self.details}"
        return f"{text} (HTTP {self.status})" if self.status else text

    def __str__(self) -> str:
        return self.reason


class GraphRetryableError(GraphError):
    """5xx, 429, timeouts, connection errors and Meta's throttling codes: back off and try again."""

    retryable = True


class GraphPermanentError(GraphError):
    """A 4xx that will answer the same next time (invalid parameter, media download error ...)."""


class GraphAuthError(GraphPermanentError):
    """The access token is invalid, expired or lacks permission (code 190)."""


def graph_error_from_response(response: httpx.Response) -> GraphError:
    """The typed error for a failed response, read from Meta's error JSON when the body has it."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = _int_or_none(error.get("code"))
    error_data = error.get("error_data")
    details = error_data.get("details", "") if isinstance(error_data, dict) else ""
    message = str(error.get("message") or response.reason_phrase or "Graph API error")
    kwargs = {
        "status": response.status_code,
        "code": code,
        "subcode": _int_or_none(error.get("error_subcode")),
        "details": str(details or error.get("error_user_msg") or ""),
        "error_type": str(error.get("type") or ""),
        "fbtrace_id": str(error.get("fbtrace_id") or ""),
    }
    title = _TITLE_PREFIX.sub("", message)
    if code in AUTH_CODES or response.status_code == 401:
        return GraphAuthError(title, **kwargs)
    if response.status_code >= 500 or response.status_code == 429 or code in RETRYABLE_CODES:
        return GraphRetryableError(title, **kwargs)
    return GraphPermanentError(title, **kwargs)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _NoCookies(CookieJar):
    """The Graph API authenticates by token and sets no cookie we would send back: answers are not
    searched for them (a cookie jar's look costs about as much as reading the answer)."""

    def extract_cookies(self, response, request) -> None:
        return None


class GraphClient:
    """One pooled HTTP client for a Graph API base URL (which includes the version) and token."""

    def __init__(self, *, base_url: str, access_token: str, timeout_s: float, transport=None):
        self.base_url = base_url.rstrip("/") + "/"
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            verify=_ssl_context(),
            # Every connection the request threads use stays open between requests: one closed
            # after its answer costs a new connection for a later request (and that request time).
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            headers={"User-Agent": "wharf"},
            transport=transport,
            cookies=_NoCookies(),
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict:
        """Call `path` (relative to the base URL, or an absolute URL) and return its JSON object."""
        response = self._send(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise GraphRetryableError(
                "Graph API answered with a body that is not JSON", status=response.status_code
            ) from None
        if not isinstance(data, dict):
            raise GraphRetryableError("Graph API answered with JSON that is not an object")
        return data

    def media_info(self, media_id: str) -> dict:
        """`GET /{media-id}`: {"url", "mime_type", "sha256", "file_size", "id"}; the url lasts 5 minutes."""
        data = self.request("GET", _path_segment(media_id))
        if not data.get("url"):
            raise GraphRetryableError(f"Graph API gave no url for media {media_id}")
        return data

    def media_download(self, url: str, *, out: IO[bytes], max_bytes: int) -> int:
        """Writes the bytes at a media url (it wants the bearer token too) to `out` as they arrive,
        never holding the whole file; refused past `max_bytes`. Returns how many were written."""
        try:
            # A redirect to another host (a CDN) is followed without the token: httpx drops it.
            with self._http.stream("GET", url, headers=self._auth, follow_redirects=True) as response:
                if response.is_error:
                    response.read()
                    raise graph_error_from_response(response)
                declared = _int_or_none(response.headers.get("Content-Length"))
                if declared is not None and declared > max_bytes:
                    raise _too_large(declared, max_bytes)
                size = 0
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(size, max_bytes)
                    out.write(chunk)
        except httpx.HTTPError as error:
            raise _transport_error(error) from error
        return size

    def media_upload(self, *, phone_number_id: str, content: bytes, mime_type: str, filename: str) -> str:
        """`POST /{phone-number-id}/media`; returns the new media id."""
        data = self.request(
            "POST",
            f"{_path_segment(phone_number_id)}/media",
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        return str(data["id"])

    def object_read(self, object_id: str, *, fields: str) -> dict:
        """`GET /{object-id}?fields=...`: a phone number, a template ... with the fields asked for."""
        return self.request("GET", _path_segment(object_id), params={"fields": fields})

    def edge_pages(
        self, object_id: str, edge: str, *, params: dict[str, Any], max_pages: int
    ) -> Iterator[list[dict]]:
        """The objects of an edge (`{waba_id}/phone_numbers`), a page at a time, following
        `paging.next` when it is on this client's host (elsewhere it would be given the token) and
        else the `after` cursor; more than `max_pages` pages is an error, not a loop."""
        path = f"{_path_segment(object_id)}/{edge}"
        url, query = path, dict(params)
        for _ in range(max_pages):
            data = self.request("GET", url, params=query)
            items = data.get("data")
            yield [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
            paging = data.get("paging") if isinstance(data.get("paging"), dict) else {}
            cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
            following, after = paging.get("next"), cursors.get("after")
            if not following:
                return
            if isinstance(following, str) and _same_origin(following, self.base_url):
                url, query = following, None
            elif after:
                url, query = path, {**params, "after": after}
            else:
                return
        raise GraphPermanentError(f"more than {max_pages} pages of {path}")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **self._auth}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise _transport_error(error) from error
        if response.is_error:
            raise graph_error_from_response(response)
        return response


def _path_segment(value: str) -> str:
    """An id as one path segment: Meta's ids are digits, so anything else is refused here."""
    value = str(value)
    if not value or not re.fullmatch(r"[A-Za-z0-9_.\-]+", value) or value in (".", ".."):
        raise GraphPermanentError(f"not a Graph API id: {value!r}", code=100)
    return value


def _same_origin(url: str, base_url: str) -> bool:
    left, right = urlsplit(url), urlsplit(base_url)
    return (left.scheme, left.netloc) == (right.scheme, right.netloc)


def _too_large(size: int, max_bytes: int) -> GraphPermanentError:
    return GraphPermanentError(f"media of {size} bytes is larger than the limit of {max_bytes} bytes")


def _transport_error(error: httpx.HTTPError) -> GraphRetryableError:
    if isinstance(error, httpx.TimeoutException):
        return GraphRetryableError(f"Graph API timed out ({type(error).__name__})")
    return GraphRetryableError(f"Graph API unreachable ({type(error).__name__})")


@cache
def _client(base_url: str, access_token: str, timeout_s: float) -> GraphClient:
    return GraphClient(base_url=base_url, access_token=access_token, timeout_s=timeout_s)


def graph_client() -> GraphClient:
    """This process's client; the cache key includes the settings so tests can override them."""
    return _client(
        settings.WHATSAPP_GRAPH_URL, settings.WHATSAPP_ACCESS_TOKEN, settings.WHATSAPP_HTTP_TIMEOUT_S
    )


_threads = threading.local()


def graph_client_of_thread() -> GraphClient:
    """This thread's own client, for threads that each send one request after another (the outgoing
    drain's request threads). httpx's pool looks at every connection it holds, and polls each idle
    one, at every request and every answer: shared by 32 threads, that cost more CPU than the
    requests themselves. A thread's own pool holds one connection."""
    key = (settings.WHATSAPP_GRAPH_URL, settings.WHATSAPP_ACCESS_TOKEN, settings.WHATSAPP_HTTP_TIMEOUT_S)
    held = getattr(_threads, "client", None)
    if held is None or held[0] != key:
        if held is not None:
            held[1].close()
        held = _threads.client = (key, GraphClient(base_url=key[0], access_token=key[1], timeout_s=key[2]))
    return held[1]


@cache
def _ssl_context() -> ssl.SSLContext:
    """One for every client: making one (reading the CA bundle) costs about 30 ms of CPU."""
    return httpx.create_ssl_context()


def media_info(media_id: str) -> dict:
    return graph_client().media_info(media_id)


def media_download(url: str, *, out: IO[bytes]) -> int:
    return graph_client().media_download(url, out=out, max_bytes=settings.WHATSAPP_MEDIA_MAX_BYTES)
