"""Status webhooks for accepted messages, posted later, off the request threads, in order per message.

One scheduler thread keeps a heap of statuses by due time; a few poster threads post them signed
to the webhook URL, as Meta does. A message's next status is scheduled only once its previous one
has been posted (at its own delay after acceptance, or at once if that has passed), so the webhook
sees sent, then delivered, then read. A post that fails is tried three times, then counted as
failed. With `batch_max` over 1, the statuses of one number due within 100 ms of each other
share a webhook, as Meta sometimes sends them. `reset()` forgets everything scheduled; posts
already under way finish but schedule nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import httpx

from devstack.sandbox import payloads

logger = logging.getLogger(__name__)

POSTERS = 8
POST_ATTEMPTS = 3
POST_TIMEOUT_S = 10.0
BATCH_WINDOW_S = 0.1  # with batches, statuses due this close together are posted together


@dataclass
class StatusPlan:
    """The statuses one accepted message will get: `steps` of (status, delay after acceptance in s)."""

    url: str
    app_secret: str
    phone_number_id: str
    display_phone_number: str
    waba_id: str
    wamid: str
    recipient_id: str
    steps: list[tuple[str, float]]
    accepted_at: float = field(default_factory=time.monotonic)
    callback: str = ""
    conversation: dict | None = None
    pricing: dict | None = None
    errors: list[dict] | None = None  # for a failed status
    batch_max: int = 1

    def status(self, step: int) -> dict:
        name = self.steps[step][0]
        entry = payloads.status(
            wamid=self.wamid,
            recipient_id=self.recipient_id,
            status=name,
            errors=self.errors if name == "failed" else None,
        )
        # Meta's conversation comes with the first status only (with its expiry), the pricing with
        # sent and delivered; a failed status carries its errors and neither.
        if name == "sent" and self.conversation:
            entry["conversation"] = self.conversation
        if name in ("sent", "delivered") and self.pricing:
            entry["pricing"] = self.pricing
        if self.callback:
            entry["biz_opaque_callback_data"] = self.callback
        return entry


class StatusDispatcher:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, int, StatusPlan, int]] = []
        self._sequence = itertools.count()
        self._generation = 0
        self._posts: queue.Queue = queue.Queue()
        self._started = False
        self._client: httpx.Client | None = None
        self.posted = 0
        self.failed = 0
        self._in_flight = 0

    def schedule(self, plan: StatusPlan) -> None:
        if not plan.steps or not plan.url:
            return
        with self._condition:
            self._start()
            self._push(plan, 0)

    def reset(self) -> None:
        with self._condition:
            self._heap.clear()
            self._generation += 1
            self.posted = self.failed = 0

    def snapshot(self) -> dict:
        with self._condition:
            return {
                "posted": self.posted,
                "failed": self.failed,
                "pending": len(self._heap) + self._in_flight,
            }

    def _push(self, plan: StatusPlan, step: int) -> None:
        due = max(plan.accepted_at + plan.steps[step][1], time.monotonic())
        heapq.heappush(self._heap, (due, next(self._sequence), self._generation, plan, step))
        self._condition.notify()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._client = httpx.Client(timeout=POST_TIMEOUT_S, limits=httpx.Limits(max_connections=POSTERS))
        threading.Thread(target=self._schedule_loop, name="statuses-scheduler", daemon=True).start()
        for index in range(POSTERS):
            threading.Thread(target=self._post_loop, name=f"statuses-poster-{index}", daemon=True).start()

    def _schedule_loop(self) -> None:
        while True:
            with self._condition:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                due: list[tuple[StatusPlan, int, int]] = []
                horizon = time.monotonic() + (BATCH_WINDOW_S if self._heap[0][3].batch_max > 1 else 0)
                while self._heap and self._heap[0][0] <= horizon:
                    _, _, generation, plan, step = heapq.heappop(self._heap)
                    due.append((plan, step, generation))
                batches: dict[tuple, list] = {}
                for plan, step, generation in due:
                    key = (plan.url, plan.app_secret, plan.phone_number_id, plan.waba_id, generation)
                    batch = batches.setdefault(key, [[]])
                    if len(batch[-1]) >= plan.batch_max:
                        batch.append([])
                    batch[-1].append((plan, step))
                for key, chunks in batches.items():
                    for chunk in chunks:
                        self._in_flight += len(chunk)
                        self._posts.put((key[-1], chunk))

    def _post_loop(self) -> None:
        while True:
            generation, chunk = self._posts.get()
            first: StatusPlan = chunk[0][0]
            try:
                body = payloads.statuses_body(
                    statuses=[plan.status(step) for plan, step in chunk],
                    phone_number_id=first.phone_number_id,
                    display_phone_number=first.display_phone_number,
                    waba_id=first.waba_id,
                )
                delivered = self._post(first.url, body, first.app_secret)
            except Exception:  # a poster that dies would leave its statuses in flight for ever
                logger.exception("status webhook to %s could not be posted", first.url)
                delivered = False
            with self._condition:
                self._in_flight -= len(chunk)
                if generation != self._generation:
                    continue
                if delivered:
                    self.posted += len(chunk)
                else:
                    self.failed += len(chunk)
                for plan, step in chunk:
                    if step + 1 < len(plan.steps):
                        self._push(plan, step + 1)

    def _post(self, url: str, body: dict, app_secret: str) -> bool:
        raw = payloads.body_encode(body)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": payloads.body_signature(raw, app_secret),
        }
        for attempt in range(POST_ATTEMPTS):
            try:
                response = self._client.post(url, content=raw, headers=headers)
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                problem = repr(error)
            logger.info("status webhook to %s failed (%s), attempt %d", url, problem, attempt + 1)
            time.sleep(0.2 * (attempt + 1))
        return False
