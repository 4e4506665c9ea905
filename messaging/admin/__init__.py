"""The operators' console for messaging, a module per family of pages: the inbox of conversations,
sender numbers (paused ones resumed), messages and conversations (with a reply box, and in-doubt
messages resent or abandoned), canned responses (kept per team), templates (synced from Meta), the
raw inbound events with their reprocessing, typed webhook events and analytics rows. Importing the
package registers them all with the admin site.

Writes go through the services (messaging.services, .canned, .inbound, .outbound, .templates,
core.alerts); raw events, templates and analytics are read-only.
"""

from messaging.admin import canned, events, inbox, messages, senders, templates

__all__ = ["canned", "events", "inbox", "messages", "senders", "templates"]
