"""What the sandbox holds, in memory and shared by its request threads: media and injected faults."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

# Meta keeps uploaded media for 30 days; the ids of inbound media work for 7.
UPLOADED_MEDIA_TTL = timedelta(days=30)
INBOUND_MEDIA_TTL = timedelta(days=7)


@dataclass
class Media:
    id: str
    content: bytes
    mime_type: str
    phone_number_id: str
    filename: str
    sha256: str  # hex, of the content, as Meta's `GET /{media-id}` gives it
    expires_at: float  # time.time() after which the id is unknown

    @property
    def file_size(self) -> int:
        return len(self.content)


@dataclass
class ErrorFault:
    """The next `times` calls of `route` answer with this error instead of their work.

    `route` names a call ("media_info", "media_download", "media_upload", ...) or a family by its
    first word ("media" covers the three), or "*" for every Graph API call.
    """

    route: str
    status: int
    code: int
    message: str
    details: str = ""
    error_type: str = "OAuthException"
    times: int = 1

    def matches(self, route: str) -> bool:
        return self.route in ("*", route) or route.startswith(f"{self.route}_")

    def as_dict(self) -> dict:
        return {
            "route": self.route,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "type": self.error_type,
            "times": self.times,
        }


@dataclass
class Faults:
    errors: list[ErrorFault] = field(default_factory=list)
    latency_ms: int = 0  # added to every Graph API call
    corrupt_downloads: int = 0  # the next N downloads serve bytes other than the file's


class SandboxState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._media: dict[str, Media] = {}
        self.faults = Faults()

    # -- media ----------------------------------------------------------------------------------

    def media_add(
        self, *, content: bytes, mime_type: str, phone_number_id: str, filename: str, ttl: timedelta
    ) -> Media:
        with self._lock:
            media_id = _new_id(self._media)
            media = Media(
                id=media_id,
                content=content,
                mime_type=mime_type,
                phone_number_id=phone_number_id,
                filename=filename,
                sha256=hashlib.sha256(content).hexdigest(),
                expires_at=time.time() + ttl.total_seconds(),
            )
            self._media[media_id] = media
            return media

    def media_get(self, media_id: str) -> Media | None:
        with self._lock:
            media = self._media.get(media_id)
            if media is not None and media.expires_at <= time.time():
                del self._media[media_id]
                return None
            return media

    def media_delete(self, media_id: str) -> bool:
        with self._lock:
            return self._media.pop(media_id, None) is not None

    def media_expire(self, media_id: str) -> bool:
        """Age a media id past its expiry, as seven days would."""
        with self._lock:
            media = self._media.get(media_id)
            if media is None:
                return False
            media.expires_at = 0
            return True

    # -- faults ---------------------------------------------------------------------------------

    def faults_add(self, *, errors: list[ErrorFault], latency_ms: int | None, corrupt_downloads: int) -> None:
        with self._lock:
            self.faults.errors.extend(errors)
            if latency_ms is not None:
                self.faults.latency_ms = latency_ms
            self.faults.corrupt_downloads += corrupt_downloads

    def faults_clear(self) -> None:
        with self._lock:
            self.faults = Faults()

    def faults_snapshot(self) -> dict:
        with self._lock:
            return {
                "errors": [fault.as_dict() for fault in self.faults.errors],
                "latency_ms": self.faults.latency_ms,
                "corrupt_downloads": self.faults.corrupt_downloads,
            }

    def fault_take(self, route: str) -> ErrorFault | None:
        """The first error fault for `route`, used up by one; None when the call should work."""
        with self._lock:
            for fault in self.faults.errors:
                if fault.matches(route):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.errors.remove(fault)
                    return fault
            return None

    def corrupt_take(self) -> bool:
        with self._lock:
            if self.faults.corrupt_downloads <= 0:
                return False
            self.faults.corrupt_downloads -= 1
            return True

    def latency_s(self) -> float:
        return self.faults.latency_ms / 1000


def _new_id(taken: dict) -> str:
    """A numeric id like Meta's media ids (15 to 16 digits)."""
    while True:
        media_id = str(10**14 + secrets.randbelow(9 * 10**15))
        if media_id not in taken:
            return media_id
