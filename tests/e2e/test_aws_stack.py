"""The whole pipeline on the aws adapters, against a moto server on loopback: the same traffic and the same
plain-Python oracle as the local end-to-end test, the same exact boards and profiles."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.support import REPO, StackProcess, cli_env, http_client
from tests.e2e.test_local_stack import assert_boards_match, build_traffic, now_ms, post_traffic_and_refresh

pytestmark = pytest.mark.slow


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                try:
                    if client.get(f"{url}/moto-api/").status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "the moto server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_aws_backend_on_moto_matches_the_oracle(moto_server: str, tmp_path: Path) -> None:
    now = now_ms()
    traffic, _ = build_traffic(now)
    stack = StackProcess(tmp_path / "data", tmp_path / "stack.log",
                         ("--backend", "aws", "--endpoint-url", moto_server),
                         env={"STREAMBOARD_LOG_LEVEL": "INFO"}).start()
    try:
        stack.wait_ready(60)
        with http_client() as client:
            oracle = post_traffic_and_refresh(client, stack, traffic)
            assert_boards_match(client, stack.api_url, oracle)
            for user in oracle.users():
                got = client.get(f"{stack.api_url}/v1/users/{user}").json()
                expected = oracle.profile(user)
                assert (got["total"], got["categories"], got["user_name"]) == (
                    expected["total"], expected["categories"], expected["user_name"]), user
            # Health from CloudWatch, which on moto has no datapoints: it still answers, with what it can tell.
            health = client.get(f"{stack.api_url}/v1/health")
            assert health.status_code == 200 and health.headers["cache-control"] == "no-store", health.text
            body = health.json()
            assert body["dlq_depth"] == 0 and body["stream_backlog"]["records"] is None
            assert body["last_refresh"] is not None and body["freshness_seconds"] >= 0
        # An analyst's query on the aws backend: moto runs no SQL, so it reads the stack's mirror of the lake.
        sql = subprocess.run(
            [sys.executable, "-m", "streamboard.cli", "sql", "--backend", "aws", "--endpoint-url", moto_server,
             "--data-dir", str(tmp_path / "data"), "SELECT count(DISTINCT event_id) AS n FROM score",
             "--format", "json"],
            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert sql.returncode == 0, sql.stderr
        assert json.loads(sql.stdout) == {"n": len(oracle.events)}
        assert "runs no SQL" in sql.stderr and "mirror" in sql.stderr
        assert stack.stop() == 0
        assert "stopped cleanly" in stack.output()
        assert "Traceback" not in stack.output(), stack.output()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- the stack's log ---\n{stack.output()}") from exc
    finally:
        stack.stop()
