"""The abuse suite: ``streamboard up`` as a subprocess, attacked the way an attacker or a careless client
would (loopback only, bounded in count and time, every attacker stops by itself). Throughout: no 5xx, the
server's memory and descriptors stay bounded, a well-behaved client is served during the attacks, no
traceback floods the log, and the boards are exact afterwards."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamboard.serving import ACCEPTS_PER_TURN
from tests.e2e.support import ADMIN_KEY, API_KEY, REPO, StackProcess, cli_env, http_client

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 2
IDLE_CONNECTIONS = 20_000  # as the attacker had: the process's whole descriptor limit here
ATTACKERS = 2  # each holds its share of the idle connections (a process has 20,000 descriptors at most)
HOLD_S = 8.0

# Every event the well-behaved client got a 202 for: the boards must count exactly these at the end.
accepted: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    tmp = tmp_path_factory.mktemp("abuse")
    env = {"STREAMBOARD_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "STREAMBOARD_KEEP_ALIVE_S": "2"}
    proc = StackProcess(tmp / "data", tmp / "stack.log", env=env).start().wait_ready()
    yield proc
    proc.stop()


def rss_mb(stack: StackProcess) -> float:
    assert stack.proc is not None
    for line in Path(f"/proc/{stack.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(stack: StackProcess) -> int:
    assert stack.proc is not None
    return len(list(Path(f"/proc/{stack.proc.pid}/fd").iterdir()))


def fd_limit(stack: StackProcess) -> int:
    assert stack.proc is not None
    for line in Path(f"/proc/{stack.proc.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no descriptor limit")


def score(user: str, points: int, **extra: Any) -> dict[str, Any]:
    ts = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": user, "category": "puzzle",
            "ts": ts.isoformat(timespec="milliseconds"), "points": points, **extra}


def post_good(client: httpx.Client, stack: StackProcess, n: int = 3) -> None:
    """The well-behaved client: a small batch, which must get a 202."""
    events = [score(f"good-{i % 4}", 10 + i) for i in range(n)]
    resp = client.post(f"{stack.ingest_url}/v1/events", json={"events": events}, headers={"x-api-key": API_KEY})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": n, "rejected": []}
    accepted.extend(events)


def attack(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.e2e.attacker", *args], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def latin1_user() -> bytes:
    return json.dumps(score("PLACEHOLDER", 5)).encode().replace(b"PLACEHOLDER", "José".encode("latin-1"))


def hostile_requests(stack: StackProcess) -> list[tuple[str, str, dict[str, str], bytes, int]]:
    """(method, url, headers, body, expected status) of each hostile request that once got a 5xx or a
    wrong answer."""
    key = {"x-api-key": API_KEY}
    ev = score("multi", 7)
    doc = json.dumps({"events": [ev, score("multi", 8)]}).encode()
    i, a = stack.ingest_url, stack.api_url
    return [
        ("POST", f"{i}/v1/events", key, latin1_user(), 400),
        ("POST", f"{i}/v1/events", key, b'{"events":[' + latin1_user() + b"]}", 400),
        ("POST", f"{i}/v1/events", key, json.dumps(score("x", 1)).encode().replace(b'"x"', b'"\xff"'), 400),
        ("GET", f"{a}/v1/leaderboards/overall?limit={'9' * 5000}", {}, b"", 400),
        ("POST", f"{i}/v1/events", {"x-api-key": ADMIN_KEY}, json.dumps(score("admin", 1)).encode(), 403),
        ("POST", f"{i}/v1/events", key,
         b'{"events":[' + json.dumps(score("dup", 1)).encode() + b'],"events":[' + json.dumps(score("dup", 2)).encode()
         + b"]}", 400),
        ("POST", f"{i}/v1/events", {**key, "content-encoding": "gzip"},
         gzip.compress(doc[:50]) + gzip.compress(doc[50:]), 202),
        ("GET", f"{a}/v1/leaderboards/puzzle%0a", {}, b"", 404),
        ("HEAD", f"{a}/healthz", {}, b"", 200),
        ("HEAD", f"{a}/v1/leaderboards/overall", {}, b"", 200),
        ("HEAD", f"{i}/healthz", {}, b"", 200),
        ("POST", f"{a}/v1/leaderboards/overall", {}, b"", 405),
        ("GET", f"{a}/v1/admin/refresh", {}, b"", 405),
        ("DELETE", f"{i}/v1/events", key, b"", 405),
        ("GET", f"{a}/v1/users/{'u' * 5000}", {}, b"", 400),
        ("GET", f"{a}/v1/leaderboards/%00", {}, b"", 404),
    ]


def test_hostile_requests_get_a_clear_4xx_never_a_5xx(stack: StackProcess) -> None:
    with http_client() as client:
        for method, url, headers, body, expected in hostile_requests(stack):
            resp = client.request(method, url, headers=headers, content=body)
            assert resp.status_code == expected, (method, url[:120], resp.status_code, resp.text[:300])
            if expected == 405:
                assert resp.headers.get("allow"), (method, url)
            if resp.status_code >= 400:
                assert "Traceback" not in resp.text and resp.json()["error"]
            if url.endswith("/v1/events") and resp.status_code == 202:
                assert resp.json()["accepted"] == 2  # both gzip members
                accepted.extend(json.loads(gzip.decompress(body))["events"])


def test_huge_bodies_are_refused_early_and_memory_stays_flat(stack: StackProcess) -> None:
    before = rss_mb(stack)
    answers = [
        finish(attack("body", str(stack.api_port), "/v1/leaderboards/overall", str(1 << 30))),
        finish(attack("body", str(stack.api_port), "/v1/admin/refresh", str(256 << 20))),
        finish(attack("body", str(stack.ingest_port), "/v1/events", str(1 << 30), f"x-api-key: {API_KEY}")),
        finish(attack("body", str(stack.ingest_port), "/v1/events", str(1 << 30))),  # no key
        finish(attack("body", str(stack.ingest_port), "/healthz", str(1 << 30))),
    ]
    after = rss_mb(stack)
    for answer in answers:
        assert answer["answer"].split(" ")[1] in ("401", "405", "413"), answer
        assert answer["sent"] <= 16 << 20, answer  # refused after a few MiB at most, not read to the end
    assert after - before < 50, (before, after)
    with http_client() as client:
        post_good(client, stack)


def test_an_idle_connection_flood_does_not_lock_out_a_well_behaved_client(stack: StackProcess) -> None:
    before_mb, before_fds = rss_mb(stack), open_fds(stack)
    share = IDLE_CONNECTIONS // (2 * ATTACKERS)  # both ports
    attackers = [attack("idle", str(port), str(share), str(HOLD_S))
                 for port in (stack.ingest_port, stack.api_port) for _ in range(ATTACKERS)]
    try:
        for proc in attackers:  # each has opened its connections
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "open"
        peak_fds = open_fds(stack)
        with httpx.Client(timeout=10, trust_env=False) as client:
            for _ in range(5):
                post_good(client, stack)
                resp = client.get(f"{stack.api_url}/v1/leaderboards/overall")
                assert resp.status_code == 200, resp.text
                time.sleep(0.2)
        during_mb = rss_mb(stack)
        results = [finish(proc) for proc in attackers]
    finally:
        for proc in attackers:
            proc.kill()
            proc.wait(10)
    assert sum(r["connected"] for r in results) == IDLE_CONNECTIONS
    # The server held about its cap of connections (4,096 a server by default; the accepts of a few turns of
    # the loop, 64 a turn, may pass it until the idle ones it closes are gone), far from running out of
    # descriptors; the idle connections it let go got no answer (nothing was asked). (With the loop's own
    # accept, a whole burst a turn, the peak was 12,300-16,600 here, past the 2 x (4,096 + 2,048) this allowed.)
    assert peak_fds < before_fds + 2 * (4096 + 4 * ACCEPTS_PER_TURN), peak_fds
    assert peak_fds < fd_limit(stack) - 2048, peak_fds
    assert sum(r["closed_by_server"] for r in results) >= IDLE_CONNECTIONS - 2 * 4096
    assert during_mb - before_mb < 200, (before_mb, during_mb)
    deadline = time.monotonic() + 10
    while open_fds(stack) > before_fds + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(stack) <= before_fds + 20


def test_a_trickled_request_head_is_cut_off_at_the_deadline(stack: StackProcess) -> None:
    result = finish(attack("trickle", str(stack.ingest_port), "0.2", "30"))
    assert result["answer"].startswith("HTTP/1.1 408"), result
    assert result["held_seconds"] < HEADER_TIMEOUT_S + 3, result


def test_the_log_has_no_tracebacks_and_the_boards_are_exact_afterwards(stack: StackProcess) -> None:
    with http_client() as client:
        post_good(client, stack, n=5)
        resp = client.post(f"{stack.api_url}/v1/admin/refresh", headers={"x-api-key": ADMIN_KEY})
        assert resp.status_code == 200, resp.text
        board = client.get(f"{stack.api_url}/v1/leaderboards/overall", params={"limit": 1000}).json()
    totals: dict[str, int] = defaultdict(int)
    for event in accepted:
        totals[event["user_id"]] += event["points"]
    assert {e["user_id"]: e["score"] for e in board["entries"]} == dict(totals)
    log = stack.output()
    assert "Traceback" not in log, log[-3000:]
    assert len(log) < 64_000, f"{len(log)} bytes of log"
