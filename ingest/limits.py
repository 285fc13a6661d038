"""Per-app rate limits: a token bucket of events per second with a burst allowance."""

from __future__ import annotations

import math
import time

from streamboard.errors import RateLimited


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.updated = time.monotonic()

    def take(self, n: float) -> float:
        """Take ``n`` tokens; return 0 when granted, else the seconds until they would be."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class RateLimiter:
    """One bucket per app; a request of more events than the burst can never pass, so it is told so."""

    def __init__(self, events_per_second: float, burst: float) -> None:
        self.rate, self.burst = events_per_second, max(burst, 1.0)
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, app_id: str, events: int) -> None:
        if self.rate <= 0:
            return  # unlimited
        bucket = self._buckets.get(app_id)
        if bucket is None:
            bucket = self._buckets[app_id] = TokenBucket(self.rate, self.burst)
        wait = bucket.take(min(events, self.burst))
        if wait > 0:
            raise RateLimited(f"app {app_id!r} is over its rate limit of {self.rate:g} events/s; "
                              f"retry after {math.ceil(wait)} s", retry_after=math.ceil(wait))
