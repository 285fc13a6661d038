"""The ingest container's entry point (`python -m ingest`) on loopback: SIGTERM under load stops accepting,
finishes in-flight requests, flushes, and exits within the stop timeout with every acknowledged event written."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamboard.adapters.local.stores import LocalAppRegistry
from streamboard.adapters.local.stream import LocalEventStream
from tests.conftest import events_of, free_port
from tests.e2e.support import REPO, cli_env, http_client
from tests.e2e.test_local_stack import now_ms, random_scores

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def ingest_process(tmp_path: Path, **env_extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``python -m ingest`` on the local backend and a free port, ready (bounded wait); killed at the end."""
    data = tmp_path / "data"
    LocalAppRegistry(data / "apps.db").create("game", key="game-key")
    port = free_port()
    env = {**cli_env(), "STREAMBOARD_BACKEND": "local", "STREAMBOARD_DATA_DIR": str(data),
           "STREAMBOARD_INGEST_PORT": str(port), "STREAMBOARD_BIND": "127.0.0.1", **env_extra}
    log = open(tmp_path / "ingest.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=2, trust_env=False) as probe:
            for _ in range(300):
                try:
                    if probe.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise AssertionError((tmp_path / "ingest.log").read_text())
        yield url, proc, data
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_sigterm_under_load_flushes_everything_acknowledged(tmp_path: Path) -> None:
    import random

    with ingest_process(tmp_path, STREAMBOARD_STOP_TIMEOUT_S="10") as (url, proc, data):
        acknowledged: list[dict[str, Any]] = []
        lock = threading.Lock()
        rng = random.Random(3)
        batches = [random_scores(rng, now_ms(), users=15, prefix=f"t{i}") for i in range(80)]

        def worker(mine: list[list[dict[str, Any]]]) -> None:
            with http_client() as client:
                for batch in mine:
                    try:
                        resp = client.post(f"{url}/v1/events", json={"events": batch[:40]},
                                           headers={"x-api-key": "game-key"})
                    except httpx.TransportError:
                        return  # refused or cut: not acknowledged
                    if resp.status_code == 202:
                        with lock:
                            acknowledged.extend(batch[:40])

        threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - sent_at
        for t in threads:
            t.join(30)
        # uvicorn shuts down gracefully, then re-raises the signal: exit by SIGTERM is the clean end here.
        assert code in (0, -signal.SIGTERM) and took < 10 + 2, (code, took)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=1, trust_env=False)  # no longer accepting
        stream = LocalEventStream(data / "stream.db")
        records = (r.data for s in stream.shard_ids() for r in stream.read(s, None, 10**6))
        stored = {e["event_id"] for e in events_of(records)}
        assert len(acknowledged) >= 400
        assert {e["event_id"] for e in acknowledged} <= stored


def test_the_container_server_cuts_idle_and_trickling_connections(tmp_path: Path) -> None:
    with ingest_process(tmp_path, STREAMBOARD_HEADER_TIMEOUT_S="1", STREAMBOARD_MAX_CONNECTIONS="3") as (url, _, _):
        port = url.rsplit(":", 1)[1]
        silent = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        idle = [socket.create_connection(("127.0.0.1", int(port)), timeout=5) for _ in range(2)]
        try:
            with httpx.Client(timeout=5, trust_env=False) as client:  # at the cap: the longest idle makes room
                assert client.get(f"{url}/healthz").status_code == 200
            silent.settimeout(5)
            assert silent.recv(1024) == b""  # closed without a word: nothing was asked
            trickle = subprocess.run([sys.executable, "-m", "tests.e2e.attacker", "trickle", port, "0.2", "20"],
                                     cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
            result = json.loads(trickle.stdout.strip().splitlines()[-1])
            assert result["answer"].startswith("HTTP/1.1 408") and result["held_seconds"] < 4, result
        finally:
            for s in [silent, *idle]:
                s.close()
