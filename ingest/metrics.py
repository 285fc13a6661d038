"""Ingest metrics in CloudWatch Embedded Metric Format: aggregated in memory, one EMF line per interval."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from typing import Any

log = logging.getLogger("streamboard.metrics")

NAMESPACE = "Streamboard"
UNITS = {
    "EventsAccepted": "Count", "EventsRejected": "Count", "Requests": "Count", "BatchSize": "Count",
    "PutRecordsFailedRecords": "Count", "DlqFallbacks": "Count", "BufferDepth": "Count",
    "PutRecordsLatency": "Milliseconds", "BreakerOpen": "None", "Throttled": "Count", "Busy": "Count",
}


class Tally:
    """Counts by name, added to by one thread (the event loop's): ``tally.counts[i] += n``."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.counts = [0] * len(names)

    def take(self) -> tuple[tuple[str, float], ...]:
        """The counts so far (the nonzero ones), and from zero again."""
        counts, self.counts = self.counts, [0] * len(self.names)
        return tuple((n, c) for n, c in zip(self.names, counts, strict=True) if c)


class Metrics:
    def __init__(self, service: str = "ingest") -> None:
        self.service = service
        self._sums: dict[str, float] = defaultdict(float)
        self._values: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()  # recorded from the event loop and from the writer threads
        self._tallies: list[Tally] = []

    def add(self, name: str, value: float = 1) -> None:
        with self._lock:
            self._sums[name] += value

    def add_many(self, counts: tuple[tuple[str, float], ...]) -> None:
        """Several :meth:`add` at once (one lock)."""
        with self._lock:
            for name, value in counts:
                self._sums[name] += value

    def counter(self, *names: str) -> Tally:
        """Plain counts for the event loop's hot path (one list update, no lock), taken into these metrics at
        each :meth:`flush`: the counts a request adds, without the cost of :meth:`add_many` on every one."""
        tally = Tally(names)
        self._tallies.append(tally)
        return tally

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            values = self._values[name]
            if len(values) < 100:  # EMF takes at most 100 values per metric
                values.append(value)

    def emf(self) -> dict[str, Any] | None:
        """The EMF document for what was recorded since the last call (None when nothing was)."""
        for tally in self._tallies:
            self.add_many(tally.take())
        with self._lock:
            sums, values = dict(self._sums), {k: v for k, v in self._values.items() if v}
            self._sums.clear()
            self._values.clear()
        if not sums and not values:
            return None
        doc: dict[str, Any] = {"Service": self.service}
        doc.update(sums)
        doc.update(values)
        names = sorted(set(sums) | set(values))
        doc["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [["Service"]],
            "Metrics": [{"Name": n, "Unit": UNITS.get(n, "None")} for n in names]}]}
        return doc

    def flush(self) -> None:
        doc = self.emf()
        if doc is not None:
            log.info(json.dumps(doc, separators=(",", ":")))
