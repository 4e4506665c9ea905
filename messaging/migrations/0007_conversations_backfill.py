"""Conversations for the messages stored before there were any, in SQL, a range of contacts at a
time (each range's statements commit on their own, so a large table is not one long transaction).

Per (contact, sender number): the times from its messages, the preview from its latest message
that is not a reaction, edit, revoke or system notice, open when that message is inbound (waiting
since the first inbound one after our latest outbound one) and pending otherwise; nothing unread.
Rerunnable: conversations are inserted ON CONFLICT DO NOTHING and only unlinked messages are linked.
"""

from django.db import connection, migrations

BATCH_CONTACTS = 5000
QUIET = "('reaction', 'edit', 'revoke', 'system')"

INSERT = f"""
WITH per AS (
    SELECT contact_id, phone_number_id,
           MAX(timestamp) FILTER (WHERE direction = 'inbound' AND type <> 'system') AS last_in,
           MAX(timestamp) FILTER (WHERE direction = 'outbound') AS last_out
    FROM messaging_message
    WHERE contact_id >= %(low)s AND contact_id < %(high)s AND conversation_id IS NULL
    GROUP BY contact_id, phone_number_id
), latest AS (
    SELECT DISTINCT ON (contact_id, phone_number_id) contact_id, phone_number_id, direction, type, text,
           timestamp
    FROM messaging_message
    WHERE contact_id >= %(low)s AND contact_id < %(high)s AND conversation_id IS NULL
      AND type NOT IN {QUIET}
    ORDER BY contact_id, phone_number_id, timestamp DESC, id DESC
)
INSERT INTO messaging_conversation (
    contact_id, phone_number_id, status, labels, priority, unread_count, last_inbound_at,
    last_outbound_at, last_message_at, last_message_preview, waiting_since, created_at, updated_at
)
SELECT per.contact_id, per.phone_number_id,
       CASE WHEN latest.direction = 'inbound' THEN 'open' ELSE 'pending' END,
       '{{}}', 'none', 0, per.last_in, per.last_out, latest.timestamp,
       COALESCE(left(NULLIF(btrim(regexp_replace(latest.text, '\\s+', ' ', 'g')), ''), 200),
                CASE WHEN latest.type IS NULL THEN '' ELSE '[' || latest.type || ']' END),
       CASE WHEN latest.direction = 'inbound' THEN (
           SELECT MIN(m.timestamp) FROM messaging_message m
           WHERE m.contact_id = per.contact_id
             AND m.phone_number_id IS NOT DISTINCT FROM per.phone_number_id
             AND m.direction = 'inbound' AND m.type NOT IN {QUIET}
             AND m.timestamp > COALESCE(per.last_out, '-infinity')
       ) END,
       now(), now()
FROM per
LEFT JOIN latest ON latest.contact_id = per.contact_id
    AND latest.phone_number_id IS NOT DISTINCT FROM per.phone_number_id
ON CONFLICT (contact_id, phone_number_id) DO NOTHING
"""

LINK = """
UPDATE messaging_message m SET conversation_id = c.id
FROM messaging_conversation c
WHERE m.contact_id >= %(low)s AND m.contact_id < %(high)s AND m.conversation_id IS NULL
  AND c.contact_id = m.contact_id AND c.phone_number_id = m.phone_number_id
"""

LINK_WITHOUT_NUMBER = """
UPDATE messaging_message m SET conversation_id = c.id
FROM messaging_conversation c
WHERE m.contact_id >= %(low)s AND m.contact_id < %(high)s AND m.conversation_id IS NULL
  AND m.phone_number_id IS NULL AND c.contact_id = m.contact_id AND c.phone_number_id IS NULL
"""


def conversations_build(apps, schema_editor, *, batch_contacts: int = BATCH_CONTACTS) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(contact_id), MAX(contact_id) FROM messaging_message")
        first, last = cursor.fetchone()
        if first is None:
            return
        for low in range(first, last + 1, batch_contacts):
            bounds = {"low": low, "high": low + batch_contacts}
            for statement in (INSERT, LINK, LINK_WITHOUT_NUMBER):
                cursor.execute(statement, bounds)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("messaging", "0006_conversations")]

    operations = [migrations.RunPython(conversations_build, migrations.RunPython.noop, elidable=True)]
