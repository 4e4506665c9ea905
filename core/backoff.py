"""How long to wait before trying again: the one backoff every retry in Wharf uses."""

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    """Exponential with jitter: half to all of base * 2**(attempts - 1), at most `cap_s`.

    The jitter spreads the retries of many rows that failed together; the half kept fixed means a
    retry never comes much sooner than its step.
    """

    base_s: float
    cap_s: float

    def seconds(self, attempts: int) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** (max(attempts, 1) - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=self.seconds(attempts))
