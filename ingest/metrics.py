"""Ingest metrics in CloudWatch Embedded Metric Format: aggregated in memory, one EMF line per interval."""

from __future__ import annotations

import json
import logging
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


class Metrics:
    def __init__(self, service: str = "ingest") -> None:
        self.service = service
        self._sums: dict[str, float] = defaultdict(float)
        self._values: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, value: float = 1) -> None:
        self._sums[name] += value

    def observe(self, name: str, value: float) -> None:
        values = self._values[name]
        if len(values) < 100:  # EMF takes at most 100 values per metric
            values.append(value)

    def emf(self) -> dict[str, Any] | None:
        """The EMF document for what was recorded since the last call (None when nothing was)."""
        if not self._sums and not self._values:
            return None
        doc: dict[str, Any] = {"Service": self.service}
        doc.update(self._sums)
        doc.update({k: v for k, v in self._values.items() if v})
        names = sorted(set(self._sums) | {k for k, v in self._values.items() if v})
        doc["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [["Service"]],
            "Metrics": [{"Name": n, "Unit": UNITS.get(n, "None")} for n in names]}]}
        self._sums.clear()
        self._values.clear()
        return doc

    def flush(self) -> None:
        doc = self.emf()
        if doc is not None:
            log.info(json.dumps(doc, separators=(",", ":")))
