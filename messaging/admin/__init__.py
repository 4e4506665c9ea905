"""The operators' console for messaging, a module per family of pages: the inbox of conversations,
sender numbers (paused ones resumed), messages and conversations (with a reply box, and in-doubt
messages resent or abandoned), templates (synced from Meta), the catalogue of conversation labels,
the raw inbound events with their reprocessing, typed webhook events and analytics rows. Importing
the package registers them all with the admin site.

Writes go through the services (messaging.services, .inbound, .outbound, .templates, .labels, core.alerts);
raw events, templates and analytics are read-only.
"""

from messaging.admin import events, inbox, labels, messages, senders, templates

__all__ = ["events", "inbox", "labels", "messages", "senders", "templates"]
