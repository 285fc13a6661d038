"""The local runtime's health figures (``streamboard.health``): its usage counters, its stream against the event
source mapping's checkpoints, its dead-letter queue and the bad-events objects in its lake."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from streamboard.adapters.local.stream import LocalEventStream
from streamboard.badevents import BAD_EVENTS_PREFIX, hour_prefix
from streamboard.health import BAD_EVENTS_HOURS, RATE_WINDOW_SECONDS
from streamboard.ports import DeadLetterQueue, Lake, PipelineFigures
from streamboard.registry import format_ts
from streamboard.usage import Usage

SAMPLE_SECONDS = 5.0  # how often the pipeline's loop samples the accepted-events counter
MIN_RATE_SPAN = 1.0  # a rate over less than a second of samples says nothing


class Checkpoints(Protocol):
    """Where the router's event source mapping has got to on each shard."""

    def checkpoint(self, shard: str) -> str | None: ...


class LocalHealth:
    """Health figures of a running local stack (``Pipeline`` builds it; ``sample`` is called from its loop)."""

    def __init__(self, stream: LocalEventStream, checkpoints: Checkpoints, dlq: DeadLetterQueue, lake: Lake,
                 usage: Usage | None, clock: Callable[[], float] = time.time) -> None:
        self.stream, self.checkpoints, self.dlq, self.lake, self.usage = stream, checkpoints, dlq, lake, usage
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque()  # (epoch seconds, events accepted so far)
        self._lines: dict[str, int] = {}  # bad-events objects never change once written: lines by key
        self._lock = threading.Lock()

    def sample(self, force: bool = False) -> None:
        """Remember the accepted-events counter now (at most every :data:`SAMPLE_SECONDS` unless ``force``)."""
        if self.usage is None:
            return
        now = self.clock()
        with self._lock:
            if not force and self._samples and now - self._samples[-1][0] < SAMPLE_SECONDS:
                return
        accepted = self.usage.counters().get("events_accepted", 0.0)
        with self._lock:
            self._samples.append((now, accepted))
            # keep one sample at or before the window's start: the baseline of the rate
            while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_SECONDS:
                self._samples.popleft()

    def events_per_minute(self) -> float | None:
        """Events accepted per minute over the last :data:`RATE_WINDOW_SECONDS` (or since the first sample)."""
        self.sample(force=True)
        with self._lock:
            if len(self._samples) < 2:
                return None
            # the baseline is the last sample at or before the window's start (or the first one there is)
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return None if span < MIN_RATE_SPAN else max(0.0, n1 - n0) * 60.0 / span

    def backlog(self) -> tuple[int, float]:
        """Records behind the router's checkpoints, and the oldest one's wait in seconds (0 when caught up)."""
        records, oldest = 0, None
        for shard in self.stream.shard_ids():
            n, first = self.stream.backlog(shard, self.checkpoints.checkpoint(shard))
            records += n
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
        return records, 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def bad_events(self) -> int:
        """Bad events in the hour partitions of the last :data:`BAD_EVENTS_HOURS` hours (each a JSON line)."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        keys = [key for hours in range(BAD_EVENTS_HOURS)
                for key in self.lake.list_keys(f"{BAD_EVENTS_PREFIX}/{hour_prefix(now - dt.timedelta(hours=hours))}/")]
        counts = {key: self._lines.get(key) for key in keys}
        for key, n in counts.items():
            if n is None:
                counts[key] = sum(1 for line in self.lake.get_object(key).splitlines() if line.strip())
        self._lines = {key: n for key, n in counts.items() if n is not None}  # forget objects out of the window
        return sum(self._lines.values())

    def figures(self) -> PipelineFigures:
        records, age = self.backlog()
        return PipelineFigures(
            as_of=format_ts(dt.datetime.fromtimestamp(self.clock(), dt.UTC)),
            events_per_minute=self.events_per_minute(),
            backlog_records=records,
            backlog_age_seconds=age,
            dlq_depth=self.dlq.depth(),
            bad_events=self.bad_events(),
        )
