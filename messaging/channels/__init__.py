"""Email and SMS: one send per contact, for campaigns, paced and reported like WhatsApp's.

- `email_send(...)`: through Django's email backend (SMTP, SES's SMTP endpoint; console locally),
  with an unsubscribe link and RFC 8058's one-click `List-Unsubscribe` header.
- `sms_send(...)`: through AWS End User Messaging SMS (boto3, pinpoint-sms-voice-v2), the sandbox
  locally; STOP replies arrive through SNS at /webhooks/sms/.
- `channel_slots_take(...)`: the shared pace of a channel (core/pacing.py, as a sender number's);
  wait for each slot with core.pacing's `pace_wait`.

Each send refuses a contact without an address on the channel or opted out of it (ChannelError
"no_address", "opted_out", neither retryable) and raises ChannelError for every failure.
"""

from messaging.channels.email import email_send, unsubscribe_token, unsubscribe_url
from messaging.channels.errors import ChannelError
from messaging.channels.pacing import channel_slots_take
from messaging.channels.sms import sms_send

__all__ = [
    "ChannelError",
    "channel_slots_take",
    "email_send",
    "sms_send",
    "unsubscribe_token",
    "unsubscribe_url",
]
