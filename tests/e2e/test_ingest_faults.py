"""Ingest under faults, end to end on loopback: a throttling stream, then a dead stream, then recovery; a
dead stream and queue together; a kill -9 under load. Every event that got a 202 is counted exactly once."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import API_KEY, StackProcess, cli, http_client
from tests.e2e.test_local_stack import Oracle, assert_boards_match, now_ms, random_scores, refresh

pytestmark = pytest.mark.slow


def _set_faults(path: Path, **faults: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(faults))
    tmp.replace(path)
    time.sleep(0.05)  # the plan is re-read when the file's mtime changes


def _post(client: httpx.Client, url: str, events: list[dict[str, Any]]) -> httpx.Response:
    return client.post(f"{url}/v1/events", json={"events": events}, headers={"x-api-key": API_KEY})


def _event_ids(data_dir: Path) -> list[str]:
    out = cli("sql", "SELECT event_id FROM score_events", "--data-dir", str(data_dir), "--format", "json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line)["event_id"] for line in out.stdout.splitlines()]


def test_throttling_then_outage_then_recovery_loses_nothing(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    data = tmp_path / "data"
    stack = StackProcess(data, tmp_path / "stack.log", env={"STREAMBOARD_FAULT_FILE": str(faults)}).start()
    rng = random.Random(5)
    events = random_scores(rng, now_ms(), users=40)
    assert len(events) >= 120
    thirds = [events[i::3] for i in range(3)]
    try:
        stack.wait_ready()
        with http_client() as client:
            _set_faults(faults, stream_throttle=0.3)
            for i in range(0, len(thirds[0]), 20):
                assert _post(client, stack.ingest_url, thirds[0][i:i + 20]).status_code == 202
            _set_faults(faults, stream_down=True)
            for i in range(0, len(thirds[1]), 20):
                assert _post(client, stack.ingest_url, thirds[1][i:i + 20]).status_code == 202  # into the DLQ
            _set_faults(faults, stream_down=True, dlq_down=True)
            refused = _post(client, stack.ingest_url, thirds[2][:10])
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1, refused.text
            _set_faults(faults)  # recovered
            for i in range(0, len(thirds[2]), 20):  # the refused events are retried with the rest
                assert _post(client, stack.ingest_url, thirds[2][i:i + 20]).status_code == 202
            redriven = cli("redrive", "--data-dir", str(data))
            assert redriven.returncode == 0, redriven.stderr
            assert json.loads(redriven.stdout[redriven.stdout.index("{"):])["remaining"] == 0
            refresh(client, stack.api_url)
            assert_boards_match(client, stack.api_url, Oracle(events))
        ids = _event_ids(data)
        assert sorted(ids) == sorted(e["event_id"] for e in events)  # each exactly once
        log = stack.output()  # the faults really hit the ingest path
        assert "fault injection is ON" in log and "go to the dead-letter queue" in log, log
    finally:
        stack.stop()


def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stack = StackProcess(data, tmp_path / "stack.log").start()
    rng = random.Random(9)
    now = now_ms()
    batches = [random_scores(rng, now, users=20, prefix=f"w{i}") for i in range(60)]
    acknowledged: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(mine: list[list[dict[str, Any]]]) -> None:
        with http_client() as client:
            for batch in mine:
                if stop.is_set():
                    return
                try:
                    resp = _post(client, stack.ingest_url, batch[:50])
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if resp.status_code == 202:
                    with lock:
                        acknowledged.extend(batch[:50])

    try:
        stack.wait_ready()
        threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        stack.kill9()  # under load: requests are in flight
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acknowledged) >= 600
        restarted = StackProcess(data, tmp_path / "restart.log").start().wait_ready()
        try:
            with http_client() as client:
                refresh(client, restarted.api_url)
        finally:
            assert restarted.stop() == 0
        ids = set(_event_ids(data))
        missing = [e["event_id"] for e in acknowledged if e["event_id"] not in ids]
        assert missing == [], f"{len(missing)} acknowledged events lost"
    finally:
        stack.stop()
