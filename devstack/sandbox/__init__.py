"""The sandbox: a local look-alike of Meta's Graph API for development and tests.

It runs as its own process (`python -m devstack.sandbox --port 8002`) and imports nothing from
Django, so it stands in for graph.facebook.com exactly where the real one would be: over HTTP,
with a bearer token and Meta's JSON shapes for answers and errors. `app.py` builds the Flask app
from blueprints (`media.py` for Meta's media endpoints, `messages.py` for sending and marking read,
`templates.py` for message templates, `control.py` for the test controls under `/sandbox/`);
`validation.py` holds Meta's rules for a message, `outbox.py` the settings, counts and limits of
sending, `statuses.py` posts the status webhooks, `state.py` keeps media and faults in memory, and
`payloads.py` builds Meta-shaped webhook bodies.
"""
