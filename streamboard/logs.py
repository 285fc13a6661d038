"""Structured JSON logs (one object a line), as CloudWatch Logs Insights reads them."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(default_level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("STREAMBOARD_LOG_LEVEL", default_level))


class RepeatFilter(logging.Filter):
    """Rate-limits repeated log records: the first of a kind (same logger, level, message template and
    exception type) passes as it is; further ones pass at most once per ``every`` seconds, as one line that
    says how many were held back, without a traceback."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self._seen: dict[tuple[Any, ...], list[float]] = {}  # key -> [last passed at, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        key = (record.name, record.levelno, str(record.msg), exc_type)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key] = [now, 0]
            return True
        if now - seen[0] < self.every:
            seen[1] += 1
            return False
        held, seen[0], seen[1] = seen[1], now, 0
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = f"{record.getMessage()}{f' ({type(exc).__name__}: {exc})' if exc else ''}" \
                     f" [again; {int(held)} more like this in the last {self.every:g} s were not logged]"
        record.args = None
        record.exc_info = record.exc_text = None
        record.stack_info = None
        return True


def install_repeat_filter(every: float = 10.0) -> None:
    """Put a :class:`RepeatFilter` on every handler of the root logger (where all records end up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(every))
