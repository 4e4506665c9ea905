"""The operators' console for messaging, a module per family of pages (importing the package
registers them all with the admin site):

- inbox: the inbox of conversations and its live answer; reports: its figures
- senders: sender numbers (paused ones resumed)
- messages: messages and the conversation page (reply box, in-doubt messages resent or abandoned)
- canned: canned responses, kept per team
- labels: the catalogue of conversation labels
- calls: WhatsApp calls, read-only
- templates: templates, synced from Meta
- events: the raw inbound events with their reprocessing, typed webhook events and analytics rows

Writes go through the services (messaging.services, .canned, .conversations, .inbound, .labels,
.outbound, .templates, core.alerts); raw events, calls, templates and analytics are read-only.
"""

from messaging.admin import calls, canned, events, inbox, labels, messages, senders, templates

__all__ = ["calls", "canned", "events", "inbox", "labels", "messages", "senders", "templates"]
