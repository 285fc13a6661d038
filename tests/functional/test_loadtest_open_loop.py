"""``streamboard loadtest --rate``: an open loop against small HTTP servers on 127.0.0.1 in this process.

What is checked is what a user relies on: the number of requests follows the schedule (rate x seconds, the
spike FACTOR times more), answers are counted by status, latency counts from each request's scheduled
time (so requests queued behind a slow server count their wait), the run is bounded and stops by itself,
and bad flags are one-line errors. No test asserts how fast anything is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from streamboard.cli import main
from streamboard.loadgen import Phase, parse_spike, phases, schedule

pytestmark = pytest.mark.slow

Reply = Callable[[int], int]  # the n-th request (from 0) -> the status to answer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) closed its connection: nothing to report


class FakeIngest:
    """POST /v1/events answered with ``reply(n)`` after ``delay`` seconds, one request at a time when
    ``serial`` (so a second request waits for the first)."""

    def __init__(self, reply: Reply = lambda n: 202, delay: float = 0.0, serial: bool = False) -> None:
        self.reply, self.delay, self.serial = reply, delay, serial
        self.count, self.events = 0, 0
        self.keys: set[str] = set()
        self._count_lock, self._serial_lock = threading.Lock(), threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall between

            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with fake._count_lock:
                    n = fake.count
                    fake.count += 1
                    fake.events += len(body["events"])
                    fake.keys.add(self.headers.get("x-api-key", ""))
                if fake.serial:
                    with fake._serial_lock:
                        time.sleep(fake.delay)
                else:
                    time.sleep(fake.delay)
                status = fake.reply(n)
                payload = json.dumps({"accepted": len(body["events"]), "rejected": []} if status == 202
                                     else {"error": "no"}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeIngest]]:
    started: list[tuple[FakeIngest, threading.Thread]] = []

    def start(**kwargs: Any) -> FakeIngest:
        fake = FakeIngest(**kwargs)
        thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
        thread.start()
        started.append((fake, thread))
        return fake

    yield start
    for fake, thread in started:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(10)


def loadtest(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["loadtest", *args, "--format", "json", "--key", "test-key"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_the_schedule_is_rate_times_seconds_and_answers_are_counted_by_status(
        serve: Callable[..., FakeIngest], capsys: pytest.CaptureFixture[str]) -> None:
    # every 10 requests: one 429, one 503, one 400, seven 202
    fake = serve(reply=lambda n: {3: 429, 7: 503, 9: 400}.get(n % 10, 202))
    report = loadtest(capsys, "--url", fake.url, "--rate", "50", "--seconds", "2", "--batch", "5")
    [steady] = report["phases"]
    assert steady["scheduled"] == steady["sent"] == 100 == fake.count  # 50 requests/s for 2 s
    assert (steady["2xx"], steady["429"], steady["503"], steady["other"], steady["errors"]) == (70, 10, 10, 10, 0)
    assert steady["events_accepted"] == 70 * 5 and fake.events == 100 * 5
    assert fake.keys == {"test-key"}
    assert 0 < steady["latency_ms"]["p50"] <= steady["latency_ms"]["p90"] <= steady["latency_ms"]["p99"] \
        <= steady["latency_ms"]["max"]


def test_the_spike_sends_factor_times_more_in_its_phase(serve: Callable[..., FakeIngest],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake = serve()
    report = loadtest(capsys, "--url", fake.url, "--rate", "20", "--seconds", "3", "--spike", "4@1",
                      "--batch", "2")
    before, spike, after, total = report["phases"]
    assert [p["phase"] for p in report["phases"]] == ["before", "spike", "after", "all"]
    assert before["sent"] == after["sent"] == 20 and spike["sent"] == 4 * before["sent"] == 80
    assert spike["offered_rate"] == 80 and before["offered_rate"] == 20
    assert total["sent"] == total["2xx"] == fake.count == 120 and total["events_accepted"] == 240


def test_latency_counts_from_the_schedule_so_queueing_behind_a_slow_server_shows(
        serve: Callable[..., FakeIngest], capsys: pytest.CaptureFixture[str]) -> None:
    delay = 0.04
    # One connection to a server that takes 40 ms a request can answer at most 25 requests/s; 50 are
    # scheduled in 1 s, so the 50th cannot be answered before 50 x 40 ms = 2 s, over 1 s after its
    # scheduled time. Measured from the send, every latency would be about 40 ms.
    fake = serve(delay=delay, serial=True)
    report = loadtest(capsys, "--url", fake.url, "--rate", "50", "--seconds", "1", "--concurrency", "1",
                      "--batch", "1")
    [steady] = report["phases"]
    assert steady["sent"] == steady["2xx"] == 50 == fake.count
    assert steady["latency_ms"]["max"] >= (50 * delay - 1) * 1000
    assert steady["latency_ms"]["p99"] >= 10 * delay * 1000


def test_the_run_is_bounded_by_events_and_by_seconds_plus_timeout(serve: Callable[..., FakeIngest],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake = serve()
    # --events 100 in requests of 10 allows 10 of the 100 scheduled requests
    assert main(["loadtest", "--url", fake.url, "--rate", "50", "--seconds", "2", "--events", "100",
                 "--batch", "10", "--format", "json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["phases"][0]["sent"] == 10 == fake.count
    assert "raise --events" in out.err
    # a server that never answers in time: the answers count as errors and the run still ends by itself
    stuck = serve(delay=3.0)
    report = loadtest(capsys, "--url", stuck.url, "--rate", "5", "--seconds", "1", "--timeout", "0.5")
    [steady] = report["phases"]
    assert steady["sent"] == steady["errors"] == 5 and steady["2xx"] == 0
    assert steady["errors_by_kind"] == {"timeout": 5}


def test_bad_flags_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--rate", "10", "--spike", "5x10"], ["--rate", "10", "--spike", "0@3"],
                 ["--rate", "10", "--spike", "5@"], ["--rate", "10", "--seconds", "5", "--spike", "2@5"],
                 ["--spike", "5@10"], ["--rate", "0"]):
        assert main(["loadtest", "--url", "http://127.0.0.1:9", *args]) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("streamboard: error: "), (args, err)
    assert main(["loadtest", "--url", "http://127.0.0.1:9", "--rate", "1", "--spike", "nonsense"]) == 1
    assert "FACTOR@SECONDS" in capsys.readouterr().err


def test_the_schedule_itself() -> None:
    assert parse_spike("5@10").factor == 5 and parse_spike("2.5@1.5s").seconds == 1.5
    plan = phases(10, 8, parse_spike("3@2"))
    assert plan == [Phase("before", 0, 3, 10), Phase("spike", 3, 5, 30), Phase("after", 5, 8, 10)]
    times = schedule(plan)
    assert [sum(1 for _, p in times if p == i) for i in range(3)] == [30, 60, 30]
    assert all(b[0] > a[0] for a, b in zip(times, times[1:], strict=False)) and times[-1][0] < 8
    assert len(schedule(phases(3, 2.5))) == 8  # at 0, 1/3, ... up to (not including) 2.5 s
    assert len(schedule(plan, max_requests=7)) == 7
