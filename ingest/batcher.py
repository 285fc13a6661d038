"""Group commit: concurrent requests share PutRecords calls.

Requests hand their records to one committer; it closes a batch at 500 records,
5 MiB, or after a short linger, writes it with one ``put_records`` call, retries
only the failed records with exponential backoff and full jitter, sends what
still failed to the dead-letter queue, and only then resolves each request.
A request is never split across batches, so its fate is one: durable, or not
acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.metrics import Metrics
from streamboard.errors import Unavailable
from streamboard.ports import DeadLetterQueue, EventStream, StreamRecord

log = logging.getLogger("streamboard.ingest")

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024
MAX_QUEUE_MESSAGE = 256 * 1024  # SQS's message limit


@dataclass
class _Pending:
    records: Sequence[StreamRecord]
    size: int
    future: asyncio.Future[None]


class CircuitBreaker:
    """Stops hammering a failing stream: after ``threshold`` failed calls in a row it opens for ``cooldown``
    seconds (records go straight to the dead-letter queue), then lets one batch probe the stream."""

    def __init__(self, threshold: int = 3, cooldown: float = 5.0) -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.cooldown else "half-open"

    def allow(self) -> bool:
        return self.state != "open"

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()  # (re)open; a failed probe starts a new cool-down


@dataclass
class CommitStats:
    batches: int = 0
    records: int = 0
    retried: int = 0
    to_dlq: int = 0
    failed_requests: int = 0
    rejected_busy: int = 0


class GroupCommitter:
    def __init__(
        self,
        stream: EventStream,
        dlq: DeadLetterQueue,
        *,
        linger_ms: float = 2.0,
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
        retry_seconds: float = 2.0,
        max_pending: int = 50_000,
        breaker: CircuitBreaker | None = None,
        oversize: Callable[[bytes], bytes] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.stream = stream
        self.dlq = dlq
        self.linger = linger_ms / 1000
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.retry_seconds = retry_seconds
        self.max_pending = max_pending
        self.breaker = breaker or CircuitBreaker()
        # Turns a record too large for the queue into a small pointer message (the record kept elsewhere).
        self.oversize = oversize
        self.pending = 0
        self.metrics = metrics or Metrics()
        self.stats = CommitStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: _Pending | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Write everything already submitted, then stop."""
        if self._queue is None or self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def submit(self, records: Sequence[StreamRecord]) -> None:
        """Return once every record is durable (stream or DLQ); raise :class:`Unavailable` otherwise."""
        if not records:
            return
        if self._queue is None:
            raise Unavailable("the ingest service is not started")
        if self.pending + len(records) > self.max_pending:
            self.stats.rejected_busy += 1
            raise Unavailable(f"ingest is at capacity ({self.pending} events waiting to be written); retry shortly",
                              1.0)
        self.pending += len(records)
        try:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._queue.put(_Pending(records, sum(len(r.data) for r in records), fut))
            await fut
        finally:
            self.pending -= len(records)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            batch = [first]
            count, size = len(first.records), first.size
            deadline = loop.time() + self.linger
            while count < self.max_records:
                timeout = deadline - loop.time()
                try:
                    if timeout <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if count + len(item.records) > self.max_records or size + item.size > self.max_bytes:
                    self._held = item
                    break
                batch.append(item)
                count += len(item.records)
                size += item.size
            try:
                await asyncio.to_thread(self._commit, [r for p in batch for r in p.records])
                for p in batch:
                    if not p.future.done():
                        p.future.set_result(None)
            except Exception as exc:  # noqa: BLE001 - reported to every waiting request as 503
                self.stats.failed_requests += len(batch)
                log.error("batch of %d records not durable: %s", count, exc)
                err = exc if isinstance(exc, Unavailable) else Unavailable(
                    "the event stream and the dead-letter queue are both unavailable; retry later", 2.0)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _commit(self, records: list[StreamRecord]) -> None:
        """One PutRecords; retry only the failed records until ``retry_seconds``; then the DLQ."""
        self.stats.batches += 1
        self.stats.records += len(records)
        self.metrics.observe("BatchSize", len(records))
        pending = records
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while pending and self.breaker.allow():
            try:
                started = time.perf_counter()
                results = self.stream.put_records(pending)
                self.metrics.observe("PutRecordsLatency", (time.perf_counter() - started) * 1000)
                still = [r for r, res in zip(pending, results, strict=True) if not res.ok]
                self.metrics.add("PutRecordsFailedRecords", len(still))
                self.breaker.record(len(still) < len(pending))  # progress counts as a working stream
                pending = still
            except Exception as exc:  # noqa: BLE001 - the stream failed as a whole; retry or fall back
                self.breaker.record(False)
                log.warning("put_records failed (%d records): %s", len(pending), exc)
            if not pending:
                return
            attempt += 1
            self.stats.retried += len(pending)
            delay = random.uniform(0, min(1.0, 0.05 * 2**attempt))  # full jitter
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
        log.warning("%d records go to the dead-letter queue (breaker %s)", len(pending), self.breaker.state)
        try:
            bodies = [r.data for r in pending]
            if self.oversize is not None:
                bodies = [self.oversize(b) if len(b) > MAX_QUEUE_MESSAGE else b for b in bodies]
            self.dlq.send(bodies)
        except Exception as exc:
            raise Unavailable("the event stream and the dead-letter queue are both unavailable; retry later",
                              2.0) from exc
        self.stats.to_dlq += len(pending)
        self.metrics.add("DlqFallbacks", len(pending))
