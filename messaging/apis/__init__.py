"""The messaging API: `messages.py` (messages and media uploads), `conversations.py` (the inbox)."""
