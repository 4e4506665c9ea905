"""What a channel's send raises when the message did not certainly go."""

from __future__ import annotations

from contacts.models import Channel, Contact
from contacts.reachability import NO_ADDRESS, contact_reachable


class ChannelError(Exception):
    """A send that failed, or whose outcome is unknown.

    `code` is the provider's (an SMTP reply code as "smtp_550", an AWS error code such as
    "ThrottlingException") or ours ("opted_out", "no_address", "connection", "timeout").
    `retryable`: trying again later may succeed. `request_left`: the message may have reached the
    provider and been accepted (a timeout or a dropped connection after it left), so sending it
    again could deliver it twice; False when nothing left or the provider's answer proves it refused.
    """

    def __init__(
        self, *, code: str, title: str, detail: str = "", retryable: bool, request_left: bool = False
    ):
        super().__init__(f"{code}: {title}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.title = title
        self.detail = detail
        self.retryable = retryable
        self.request_left = request_left

    def __reduce__(self):
        """Pickled by its fields (keyword-only), so it crosses processes and Celery's result backend."""
        return _channel_error, (self.code, self.title, self.detail, self.retryable, self.request_left)


def _channel_error(code: str, title: str, detail: str, retryable: bool, request_left: bool) -> ChannelError:
    return ChannelError(code=code, title=title, detail=detail, retryable=retryable, request_left=request_left)


def contact_reachable_check(*, contact: Contact, channel: Channel) -> None:
    """Refuses, before anything is sent, a contact without an address on the channel or opted out of it."""
    reason = contact_reachable(contact, channel)
    if reason == NO_ADDRESS:
        raise ChannelError(code=reason, title=f"The contact has no {channel.label} address.", retryable=False)
    if reason is not None:
        raise ChannelError(code=reason, title=f"The contact opted out of {channel.label}.", retryable=False)
