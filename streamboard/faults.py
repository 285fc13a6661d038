"""Fault injection for tests and drills: a stream or queue that throttles, fails or hangs on command.

Never active unless ``STREAMBOARD_FAULT_FILE`` names a JSON file; the file is re-read when it changes,
so a test switches faults on and off while the stack runs. Keys (all optional):
``{"stream_throttle": 0.3, "stream_down": false, "stream_hang_seconds": 0, "dlq_down": false}``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamboard.ports import DeadLetterQueue, EventStream, PutResult, QueueMessage, ReadRecord, StreamRecord


class FaultPlan:
    def __init__(self, path: Path, seed: int = 1) -> None:
        self.path = Path(path)
        self.rng = random.Random(seed)
        self._mtime: float | None = None
        self._plan: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._plan, self._mtime = {}, None
            return self._plan
        if mtime != self._mtime:
            try:
                self._plan = dict(json.loads(self.path.read_text() or "{}"))
            except ValueError:
                return self._plan  # a half-written file: keep the last plan
            self._mtime = mtime
        return self._plan


class FaultyStream:
    """Wraps an EventStream; reads pass through, puts obey the plan."""

    def __init__(self, inner: EventStream, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        plan = self.plan.get()
        if plan.get("stream_hang_seconds"):
            time.sleep(float(plan["stream_hang_seconds"]))
        if plan.get("stream_down"):
            raise ConnectionError("injected fault: the stream is down")
        share = float(plan.get("stream_throttle", 0))
        fail = [self.plan.rng.random() < share for _ in records]
        ok = self.inner.put_records([r for r, f in zip(records, fail, strict=True) if not f]) if not all(fail) else []
        it = iter(ok)
        return [PutResult(error_code="ProvisionedThroughputExceededException", error_message="injected throttle")
                if f else next(it) for f in fail]

    def shard_ids(self) -> list[str]:
        return self.inner.shard_ids()

    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]:
        return self.inner.read(shard_id, after, limit)

    def latest(self, shard_id: str) -> str | None:
        return self.inner.latest(shard_id)


class FaultyQueue:
    def __init__(self, inner: DeadLetterQueue, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def send(self, bodies: Sequence[bytes]) -> None:
        if self.plan.get().get("dlq_down"):
            raise ConnectionError("injected fault: the dead-letter queue is down")
        self.inner.send(bodies)

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        return self.inner.receive(max_messages)

    def delete(self, receipts: Sequence[str]) -> None:
        self.inner.delete(receipts)

    def release(self, receipts: Sequence[str]) -> None:
        self.inner.release(receipts)

    def depth(self) -> int:
        return self.inner.depth()
