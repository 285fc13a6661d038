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
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ingest.metrics import Metrics
from streamboard.errors import Unavailable
from streamboard.overflow import queue_safe
from streamboard.ports import DeadLetterQueue, EventStream, StreamRecord

log = logging.getLogger("streamboard.ingest")

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024
MAX_QUEUE_MESSAGE = 256 * 1024  # SQS's message limit
THROTTLED = "ProvisionedThroughputExceededException"  # Kinesis's per-record throttling error


class _Group:
    """The requests that go to the stream in one PutRecords call: their records, in order, and the one future
    they all wait on (a request joins a group whole, and the group's fate is each of its requests')."""

    __slots__ = ("records", "size", "events", "requests", "future", "deadline")

    def __init__(self, future: asyncio.Future[None], deadline: float) -> None:
        self.records: list[StreamRecord] = []
        self.size = 0
        self.events = 0
        self.requests = 0
        self.future = future
        self.deadline = deadline


TOO_LONG = "writing the events took too long; retry with the same event_ids"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class CircuitBreaker:
    """Stops hammering a failing stream: after ``threshold`` failed calls in a row it opens for ``cooldown``
    seconds (records go straight to the dead-letter queue), then lets one batch probe the stream."""

    def __init__(self, threshold: int = 3, cooldown: float = 5.0) -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self._lock = threading.Lock()  # batches are written from several threads
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
        with self._lock:
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
    """Forms batches from the records of concurrent requests and writes up to ``max_in_flight`` of them at
    once, each in a worker thread (the stream and queue clients block)."""

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
        max_in_flight: int = 4,
        breaker: CircuitBreaker | None = None,
        oversize: Callable[[bytes], bytes] | None = None,
        metrics: Metrics | None = None,
        written: Callable[[int], None] | None = None,
        request_timeout: float | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1 (got {max_in_flight})")
        self.stream = stream
        self.dlq = dlq
        self.linger = linger_ms / 1000
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.retry_seconds = retry_seconds
        self.max_pending = max_pending
        self.max_in_flight = max_in_flight
        self.breaker = breaker or CircuitBreaker()
        # Turns a record too large for the queue into a small pointer message (the record kept elsewhere).
        self.oversize = oversize
        self.pending = 0  # events queued or being written
        self.metrics = metrics or Metrics()
        # Told, in the worker thread, how many events each batch made durable (the local stack counts them).
        self.written = written
        self.stats = CommitStats()
        # A request waits at most this long for its group to be written, then gets 503 (not acknowledged; its
        # records stay queued and are still written). Kept per group, by one task that wakes a few times per
        # timeout: the deadline of a request that joined a filling group is the group's, earlier than its own
        # by the linger at most.
        self.request_timeout = request_timeout
        self._lock = threading.Lock()  # the stats, the breaker and the metrics, updated from worker threads
        self._waiting: deque[_Group] = deque()  # the groups not yet being written, oldest first
        self._open: _Group | None = None  # the newest of them, which requests join until it is full or taken
        self._in_flight: set[_Group] = set()
        self._wake: asyncio.Event | None = None
        self._lingering: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="group-commit")
        self._task = asyncio.create_task(self._run(), name="group-commit")
        if self.request_timeout is not None:
            self._expiry = asyncio.create_task(self._expire(self.request_timeout), name="group-commit-deadlines")

    async def stop(self, timeout: float | None = None) -> None:
        """Write everything already submitted, then stop; give up after ``timeout`` seconds (a hung stream).
        What is left then was never acknowledged: a request gets its 202 only once its records are written."""
        if self._task is None or self._executor is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._waiting or self._writes:
            if deadline is not None and time.monotonic() > deadline:
                log.warning("stopping with %d events not written (their requests were not acknowledged)",
                            self.pending)
                break
            await asyncio.sleep(0.005)
        for task in (self._task, self._expiry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._executor.shutdown(wait=deadline is None or time.monotonic() <= deadline, cancel_futures=True)

    async def submit(self, records: Sequence[StreamRecord], events: int | None = None) -> None:
        """Return once every record is durable (stream or DLQ); raise :class:`Unavailable` otherwise.

        ``events``: how many events the records carry (default: one each), what the buffer bound counts."""
        if records:
            await self.join(records, len(records) if events is None else events)

    def join(self, records: Sequence[StreamRecord], events: int) -> asyncio.Future[None]:
        """Queue a request's records (``events`` events) and return the future that completes once they are
        durable, or fails with :class:`Unavailable`: the future of the group they joined, which every request
        of the group awaits. A cancelled group future (a request's task cancelled while it waited) fails the
        group's other requests' wait but not the write. Raises :class:`Unavailable` at once when the buffer
        is full or the committer is not started."""
        loop = self._loop
        if loop is None:
            raise Unavailable("the ingest service is not started")
        if self.pending + events > self.max_pending:
            self.stats.rejected_busy += 1
            raise Unavailable(f"ingest is at capacity ({self.pending} events waiting to be written); retry shortly",
                              1.0)
        n = len(records)
        size = len(records[0].data) if n == 1 else sum(len(r.data) for r in records)
        group = self._open
        if group is None or (group.records and (len(group.records) + n > self.max_records
                                                or group.size + size > self.max_bytes)):
            group = self._open = _Group(loop.create_future(),
                                        loop.time() + (self.request_timeout or 0.0))
            self._waiting.append(group)
            lingering = self._lingering
            if lingering is not None and not lingering.done():
                lingering.set_result(None)  # a full group does not wait out the linger
            assert self._wake is not None  # set by start, with the loop
            self._wake.set()
        group.records += records
        group.size += size
        group.events += events
        group.requests += 1
        # Counted until written (or failed), not until the request stops waiting: a request that times out
        # leaves its records queued, and they still take room in the buffer.
        self.pending += events
        return group.future

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.max_in_flight)
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Linger only while writes are in flight: an idle committer writes at once (lowest latency), a busy
            # one lets the open group fill up (fewer, larger calls).
            if self.linger > 0 and self._writes and len(self._waiting) == 1:
                self._lingering = loop.create_future()
                timer = loop.call_later(self.linger, _resolve, self._lingering)
                await self._lingering
                timer.cancel()
                self._lingering = None
            await slots.acquire()  # meanwhile, more requests join the open group
            group = self._waiting.popleft()
            if group is self._open:
                self._open = None
            self._in_flight.add(group)
            task = loop.create_task(self._write(group, slots))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _expire(self, timeout: float) -> None:
        """Fail the wait of every group past its deadline (its records are still written)."""
        loop = asyncio.get_running_loop()
        tick = min(0.25, timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            late = [g for g in self._in_flight if g.deadline <= now]
            for group in self._waiting:  # oldest first
                if group.deadline > now:
                    break
                late.append(group)
            for group in late:
                if not group.future.done():
                    group.future.set_exception(Unavailable(TOO_LONG, 2.0))

    async def _write(self, group: _Group, slots: asyncio.Semaphore) -> None:
        future = group.future
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, group.records,
                                                             group.events)
            if not future.done():
                future.set_result(None)
        except Exception as exc:  # noqa: BLE001 - reported to every waiting request as 503
            self.stats.failed_requests += group.requests
            log.error("batch of %d records not durable: %s", len(group.records), exc)
            if not future.done():
                future.set_exception(exc if isinstance(exc, Unavailable) else Unavailable(
                    "the event stream and the dead-letter queue are both unavailable; retry later", 2.0))
        finally:
            self._in_flight.discard(group)
            self.pending -= group.events
            slots.release()

    def _commit(self, records: list[StreamRecord], events: int | None = None) -> None:
        """Write the batch (``events`` events, by default one a record), then tell :attr:`written`."""
        self._write_records(records)
        if self.written is not None:
            self.written(len(records) if events is None else events)

    def _write_records(self, records: list[StreamRecord]) -> None:
        """One PutRecords; retry only the failed records until ``retry_seconds``; then the DLQ."""
        with self._lock:
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
                failed = [(r, res) for r, res in zip(pending, results, strict=True) if not res.ok]
                self.metrics.add("PutRecordsFailedRecords", len(failed))
                if len(failed) < len(pending):
                    self.breaker.record(True)  # progress counts as a working stream
                elif any(res.error_code != THROTTLED for _, res in failed):
                    self.breaker.record(False)
                # else: every record throttled: the stream works but is busy; back off, keep the breaker shut
                pending = [r for r, _ in failed]
            except Exception as exc:  # noqa: BLE001 - the stream failed as a whole; retry or fall back
                self.breaker.record(False)
                log.warning("put_records failed (%d records): %s", len(pending), exc)
            if not pending:
                return
            attempt += 1
            with self._lock:
                self.stats.retried += len(pending)
            delay = random.uniform(0, min(1.0, 0.05 * 2**attempt))  # full jitter
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
        log.warning("%d records go to the dead-letter queue (breaker %s)", len(pending), self.breaker.state)
        try:
            bodies = [queue_safe(r.data) for r in pending]  # sized as the queue will take them
            if self.oversize is not None:
                bodies = [self.oversize(b) if len(b) > MAX_QUEUE_MESSAGE else b for b in bodies]
            self.dlq.send(bodies)
        except Exception as exc:
            raise Unavailable("the event stream and the dead-letter queue are both unavailable; retry later",
                              2.0) from exc
        with self._lock:
            self.stats.to_dlq += len(pending)
        self.metrics.add("DlqFallbacks", len(pending))
