"""Outbound messages: one send service, and a worker that hands each message to Meta at most once.

The protocol, in the order things happen:

1. Queue. `message_send` checks Meta's rules and the 24-hour window, then writes the message as
   `queued` (a local placeholder `wamid`, `wharf-<uuid>`, until Meta names it; `payload` is the Graph
   request body) with its audit row in one transaction, and after commit raises the `outgoing`
   WakeUp flag, coalesced as inbound's (messaging/wakeups.py), which enqueues one drain. A medium
   in S3 (under MEDIA_OUTGOING_PREFIX) is sent by a link presigned at each attempt, valid for
   MEDIA_LINK_EXPIRY_S, rather than uploaded to Meta: no second copy, no media id to expire.
2. Claim. `outgoing_drain` takes, per sender that is not paused, about ROUND_S worth of due
   queued messages with SELECT ... FOR UPDATE SKIP LOCKED, marks them `sending` with `claimed_by`
   (a token of this drain) and `claimed_at`, and commits; it claims again for a sender whose
   claimed messages run short. Concurrent drains take disjoint batches; a redelivered task finds
   the messages no longer queued. Only the claim's holder may send a message.
3. Pace. Slots are taken just before they are needed: a sender's next group (GROUP_S worth of its
   rate, at most GROUP_MAX) takes its slots from the shared limiter (messaging/ratelimit.py) when
   the drain's prepared sends for it end within GROUP_S. So drains sharing a sender hold slots at
   most about two groups ahead, and their sends interleave closely. A message whose slot is far
   off, or whose recipient's turn comes after its slot, goes back to the queue, due then (where it
   takes a new slot). In a drain's first round each sender's first message goes alone and the
   rest take their slots after its answer, so a sender Meta refuses or does not answer costs one
   attempt, not a group of them.
4. Attempt. One statement checks that the group's claims are still this drain's (refreshing
   `claimed_at`) and inserts a SendAttempt without outcome for each, not yet cleared to leave.
   When a send's slot comes within CLEAR_AHEAD_S, the drain clears it: one statement for the sends
   due by then checks their claims again (refreshing `claimed_at`) and sets their attempts'
   `cleared_at`; it commits BEFORE any of their requests leaves, and a send whose claim was taken
   meanwhile is given up. A dispatcher thread, which does nothing but wait for each cleared
   request's slot, hands it at its slot to one of SEND_CONCURRENCY request threads, so it does not
   wait behind a slow answer or the drain's own statements. Meta counts any one second, and slots
   leave only the headroom free (20 ms of each second at 2 %), so a request that leaves more than
   LATE_MAX_S after its slot (a stalled process, no request thread free) could meet, within one of
   Meta's seconds, a second's worth of sends that leave on time after it. Lateness is read in the
   request thread, as the request leaves. For a sender faster than one send per GROUP_S the drain
   then moves the sender's schedule on by the lateness beyond LATE_MAX_S (`rate_slots_delay`): the
   slots taken after it (all but the next two groups, and Meta's second ends a second later) begin
   that much later. A slower sender's next slot may already be taken by another drain: there the
   late request does not leave; its attempt is closed unsent and the message queued again.
   The drain records the answers as they come, the successes together (at most GROUP_MAX of them,
   or every GROUP_S) in one statement (attempts and messages, with the locks parsing takes on their
   wamids, messaging/statuses.py), each other answer at once in a statement of its own:
   sent (Meta's wamid; statuses that arrived first, kept pending by wamid, are applied), queued
   again with a due time (retryable errors, exponential backoff with jitter, failed after
   MAX_ATTEMPTS), failed (Meta's code, title and details), queued again with its sender paused
   (190, operators alerted), or in doubt (the request left but no answer came: a read timeout, a
   dropped connection), settled at once as sent when a status that came first carries its id
   (see step 5). An answer that pauses the sender, or silence (its first request in the drain
   unanswered, or SILENT_MAX in a row), stops its sends not yet handed over: their attempts are
   closed unsent and the messages queued again (after a backoff for silence). A worker that dies
   leaves the attempts of its prepared groups open: those it had cleared (the sends of its next
   CLEAR_AHEAD_S and those in flight) may have left, and step 5 makes them in doubt, which errs on
   the safe side; the others never left, and step 5 queues them again.
5. Sweep. Beat runs `outgoing_sweep`: a message `sending` under a claim older than CLAIM_STALE_S()
   lost its worker. Without an open attempt that was cleared, no request left for it: it is queued
   again (an open attempt closed unsent). With one, a request may have reached Meta: it becomes
   `in_doubt`, which nothing resends automatically. If
   it did reach Meta, Meta's statuses for it carry its id as `biz_opaque_callback_data`, which
   settles it as sent with their wamid (`outgoing_doubts_resolve`: when the status is parsed, when
   the worker records the silence, and at each sweep, whichever comes last); else an operator resends
   it (`message_resend`) or abandons it (`message_abandon`), from the evidence its in-doubt page
   gathers (whether Meta's statuses for its number kept arriving since its request was cleared,
   and none for it). The claim checks in step 4 and the sweep lock the same row, so a worker that
   is only slow either keeps its claim (its refresh came first) or finds it gone and skips the
   message; a slow drain that claims back messages the sweep queued again from it keeps the one
   copy it holds of each.

Why never twice: a request for a message leaves only from the drain whose claim is on the row,
after an attempt row, cleared under that claim, says so; every path back to `queued` either
proves no request left (the claim was released before an attempt, or the attempt was never
cleared, or it was closed by the drain whose request never left: not handed over, or not sent
by its request thread; or the request failed to connect, or Meta answered an error) or is an
operator's decision, taken only while no status has shown that it was sent.
"""
