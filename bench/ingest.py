"""Ingest benchmark: our ingest service against a ceiling measured in the same run.

Two servers, one at a time, on 127.0.0.1 with the same server (uvicorn) and worker count (1):
  full: the ingest app (auth, body limits, per-event validation, group commit) with a null stream sink;
  bare: an endpoint that only reads and JSON-decodes the body.
For batched requests (100 events) and single-event requests it measures, with a closed loop of concurrent
keep-alive connections, the peak events/s (and requests/s) and p50/p99 latency; then, with an open loop at
70% of our peak, the p99 latency (measured from each request's scheduled send time, so queueing counts).
Bare and ours alternate for a few rounds and the median round counts; with two CPUs or more the server is
pinned to one CPU and this load generator to the others.

Results go to bench/results/ingest.json and bench/results/ingest.md. Usage: python -m bench.ingest
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=i % 600)
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"user-{i % 5000}",
            "ts": now.isoformat(), "category": ("arcade", "puzzle", "racing")[i % 3], "points": 1 + i % 1000,
            "user_name": f"Player {i % 5000}"}


def build_requests(port: int, batch: int, count: int = 200) -> list[bytes]:
    """``count`` distinct raw HTTP/1.1 requests of ``batch`` events each (single events are posted bare)."""
    out = []
    for r in range(count):
        events = [_event(r * batch + i) for i in range(batch)]
        body = json.dumps({"events": events} if batch > 1 else events[0]).encode()
        head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"x-api-key: {KEY}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> None:
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    if status != 202:
        raise RuntimeError(f"the server answered {status}")


async def closed_loop(port: int, requests: list[bytes], connections: int, seconds: float) -> dict[str, float]:
    """Every connection sends its next request as soon as the previous answer is in."""
    latencies: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await _one(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - t0)
            done += 1
            i += connections
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    return _summary(done / elapsed, latencies)


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, connections: int
                    ) -> dict[str, float]:
    """Requests are scheduled at a fixed rate over a pool of connections; latency counts from the schedule."""
    latencies: list[float] = []
    total = int(rate * seconds)
    started = time.perf_counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await _one(reader, writer, requests[n % len(requests)])
            latencies.append(time.perf_counter() - scheduled)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return _summary(total / elapsed, latencies)


def _summary(rps: float, latencies: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {"requests_per_s": round(rps, 1), "p50_ms": round(qs[49] * 1000, 2), "p99_ms": round(qs[98] * 1000, 2),
            "requests": len(latencies)}


# With two or more CPUs the server gets its own CPU and the load generator the others, so they do not take
# turns on one core (ours also runs its PutRecords thread on the server's CPU).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS = set(CPUS[-1:]) if len(CPUS) >= 2 else set()
CLIENT_CPUS = set(CPUS[:-1]) if len(CPUS) >= 2 else set()


class Server:
    def __init__(self, mode: str) -> None:
        self.mode, self.port = mode, free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.ingest_server", "--mode", mode,
                                      "--port", str(self.port)], cwd=ROOT)
        if SERVER_CPUS:
            os.sched_setaffinity(self.proc.pid, SERVER_CPUS)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{self.port}/v1/events", content=b"{}", timeout=1, trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the {mode} server did not start") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(mode: str, batch: int, seconds: float, connections: int) -> dict[str, Any]:
    """One server: its peak (closed loop), and for ours the p99 at 70% of that peak (open loop)."""
    server = Server(mode)
    try:
        reqs = build_requests(server.port, batch)
        asyncio.run(closed_loop(server.port, reqs, connections, 1.0))  # warm-up
        server_cpu, client_cpu, started = server.cpu_seconds(), time.process_time(), time.perf_counter()
        peak = asyncio.run(closed_loop(server.port, reqs, connections, seconds))
        elapsed = time.perf_counter() - started
        # CPUs busy during the peak: a server near 1.0 is the limit, not the load generator.
        peak["server_cpus"] = round((server.cpu_seconds() - server_cpu) / elapsed, 2)
        peak["load_generator_cpus"] = round((time.process_time() - client_cpu) / elapsed, 2)
        entry: dict[str, Any] = {"peak": peak, "events_per_s": round(peak["requests_per_s"] * batch, 1)}
        if mode == "full":
            rate = 0.7 * peak["requests_per_s"]
            entry["at_70pct"] = {"offered_requests_per_s": round(rate, 1),
                                 **asyncio.run(open_loop(server.port, reqs, rate, seconds, connections))}
        return entry
    finally:
        server.stop()


def run(seconds: float, connections: int, rounds: int) -> dict[str, Any]:
    """Bare and ours alternate, ``rounds`` times each, so drift on the machine hits both; medians count."""
    results: dict[str, Any] = {}
    for label, batch in (("batched_100", 100), ("single_event", 1)):
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "full": []}
        for n in range(rounds):
            for mode in ("bare", "full"):
                runs[mode].append(measure(mode, batch, seconds, connections))
                print(f"{label} round {n + 1}/{rounds} {mode}: {runs[mode][-1]['events_per_s']:,.0f} events/s",
                      file=sys.stderr)
        per_mode: dict[str, Any] = {}
        for mode, entries in runs.items():
            median = sorted(entries, key=lambda e: e["events_per_s"])[len(entries) // 2]
            per_mode[mode] = {**median, "rounds_events_per_s": [e["events_per_s"] for e in entries]}
        per_mode["full"]["rounds_p99_at_70pct_ms"] = [e["at_70pct"]["p99_ms"] for e in runs["full"]]
        per_mode["ratio_events_per_s"] = round(per_mode["full"]["events_per_s"] / per_mode["bare"]["events_per_s"], 3)
        per_mode["rounds_ratio"] = [round(f["events_per_s"] / b["events_per_s"], 3)
                                    for b, f in zip(runs["bare"], runs["full"], strict=True)]
        results[label] = per_mode
    return results


def _cpus(peak: dict[str, Any]) -> str:
    return f"{peak['server_cpus']}, {peak['load_generator_cpus']}"


def write(results: dict[str, Any], seconds: float, connections: int, rounds: int) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "method": {"seconds_per_point": seconds, "connections": connections, "rounds": rounds,
                      "server": "uvicorn, 1 worker" + (f", pinned to CPU {sorted(SERVER_CPUS)}" if SERVER_CPUS else ""),
                      "client": "asyncio keep-alive connections in one process on the same machine"
                                + (f", pinned to CPUs {sorted(CLIENT_CPUS)}" if CLIENT_CPUS else ""),
                      "summary": "bare and ours alternate; the median round of each counts"},
           "results": results}
    (RESULTS / "ingest.json").write_text(json.dumps(doc, indent=2) + "\n")
    pinning = (f" Server pinned to CPU {sorted(SERVER_CPUS)}, load generator to CPUs {sorted(CLIENT_CPUS)}."
               if SERVER_CPUS else "")
    lines = ["# Ingest benchmark", "", f"Measured {doc['measured_at']} on {os.cpu_count()} CPUs "
             f"({seconds:g} s per point, {connections} connections, {rounds} alternating rounds, medians)."
             f"{pinning} Ceiling = bare endpoint (read + decode only), same server and worker count, same run.", "",
             "| requests | bare events/s | ours events/s | ratio (rounds) | ours p50 / p99 at peak "
             "| ours p99 at 70% (rounds) | CPUs busy at peak: server, load generator (bare; ours) |",
             "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        rounds_ratio = ", ".join(f"{x:.2f}" for x in r["rounds_ratio"])
        rounds_p99 = ", ".join(f"{x:g}" for x in r["full"]["rounds_p99_at_70pct_ms"])
        lines.append(f"| {label} | {r['bare']['events_per_s']:,.0f} | {r['full']['events_per_s']:,.0f} | "
                     f"{r['ratio_events_per_s']:.2f} ({rounds_ratio}) | {r['full']['peak']['p50_ms']} / "
                     f"{r['full']['peak']['p99_ms']} ms | {max(r['full']['rounds_p99_at_70pct_ms']):g} ms max "
                     f"({rounds_p99}) | {_cpus(r['bare']['peak'])}; {_cpus(r['full']['peak'])} |")
    (RESULTS / "ingest.md").write_text("\n".join(lines) + "\n")
    return RESULTS / "ingest.md"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of bare and ours (default 5)")
    args = p.parse_args()
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)
    results = run(args.seconds, args.connections, args.rounds)
    path = write(results, args.seconds, args.connections, args.rounds)
    print(path.read_text())


if __name__ == "__main__":
    main()
