"""Keep-alive latency of the local stack against a ceiling measured in the same run.

Issue 9: on one keep-alive connection every request used to wait ~40 ms (Nagle's algorithm meeting the
client's delayed ACK), which no throughput benchmark with many connections shows. So this one drives the
real ``streamboard up`` with ``wrk -t1 -c1`` (one connection, one request at a time) and, for throughput,
with ``-c16``, on three endpoints: ingest ``/healthz``, read API ``/healthz`` and a top-10 leaderboard.

The ceiling is the fastest bare endpoint this machine serves with the same server library: a plain ASGI
callable answering ``{"status":"ok"}`` under ``uvicorn.run`` (which creates its own listening socket), driven
by the same wrk commands. Ratios against it cancel out the machine; a p50 far above the bare one at ``-c1``
points at a stall, not at our code being slow.

Everything runs on 127.0.0.1, the server pinned to one CPU and wrk to another (``taskset``), and every
process started here is stopped before the end, also on error. Results go to bench/results/stack_latency.json
and bench/results/stack_latency.md. Usage: python -m bench.stack_latency [--duration 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import CLIENT_CPU as WRK_CPU
from bench.common import CPUS, SERVER_CPU, free_port, lifespan, parse_wrk, pinned, rss_kb, server, wrk_version

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY, ADMIN_KEY = "bench-key", "bench-admin-key"
CONNECTIONS = (1, 16)  # -c1: the per-request latency of one keep-alive client; -c16: throughput
WARM_UP_S = 1
LEADERBOARD = "/v1/leaderboards/overall?limit=10"
SEED_EVENTS = 2000  # enough distinct users that the top-10 board is full

# --- the ceiling ------------------------------------------------------------------------------------------

_OK = b'{"status":"ok"}'
_OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_OK)).encode())]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """No framework, no routing, no middleware: what is left is uvicorn's own cost per request. It speaks
    the lifespan protocol only so that uvicorn starts and stops it without a word in the log."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": _OK})


def serve_bare(port: int) -> None:
    import uvicorn  # only the bare-server process needs it

    uvicorn.run(bare_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- servers under test -----------------------------------------------------------------------------------


def healthy(*urls: str) -> Callable[[], bool]:
    """Ready when every URL answers 200 (``taskset`` execs the server, so the child's PID is its own)."""
    return lambda: all(_healthy(url) for url in urls)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def stack_env() -> dict[str, str]:
    """The caller's environment without any STREAMBOARD_* setting (a backend, a rate limit or a fault file
    from the shell would change what is measured), and with keys this benchmark knows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMBOARD_")}
    env.update(STREAMBOARD_API_KEY=API_KEY, STREAMBOARD_ADMIN_KEY=ADMIN_KEY)
    return env


def seed(ingest_url: str, api_url: str) -> int:
    """A leaderboard with ten entries, so that the leaderboard endpoint serves a real board rather than the
    empty answer of a fresh stack. Returns the number of entries served."""
    now = dt.datetime.now(dt.UTC)
    events = [{"event_id": f"00000000-0000-4000-8000-{i:012d}", "event_type": "score", "user_id": f"user-{i % 200}",
               "user_name": f"Player {i % 200}", "ts": (now - dt.timedelta(minutes=i % 600)).isoformat(),
               "category": ("arcade", "puzzle", "racing")[i % 3], "points": 1 + i * 7 % 1000}
              for i in range(SEED_EVENTS)]
    with httpx.Client(timeout=120, trust_env=False) as client:
        for i in range(0, len(events), 100):
            resp = client.post(f"{ingest_url}/v1/events", json={"events": events[i:i + 100]},
                               headers={"x-api-key": API_KEY})
            if resp.status_code != 202:
                raise RuntimeError(f"seeding: ingest answered {resp.status_code}: {resp.text}")
        resp = client.post(f"{api_url}/v1/admin/refresh", headers={"x-api-key": ADMIN_KEY})
        if resp.status_code != 200:
            raise RuntimeError(f"seeding: refresh answered {resp.status_code}: {resp.text}")
        return len(client.get(f"{api_url}{LEADERBOARD}").json()["entries"])


# --- wrk --------------------------------------------------------------------------------------------------

def wrk_command(url: str, connections: int, seconds: int) -> list[str]:
    return pinned(WRK_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url])


def run_wrk(url: str, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run; a run with errors or non-2xx answers measured something else, so it stops the benchmark."""
    cmd = wrk_command(url, connections, seconds)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr or done.stdout}")
    figures = parse_wrk(done.stdout)
    if figures["non_2xx"] or figures["socket_errors"]:
        raise RuntimeError(f"{' '.join(cmd)}: {figures['non_2xx']} non-2xx answers, "
                           f"{figures['socket_errors']} socket errors:\n{done.stdout}")
    return {"command": " ".join(cmd), **figures}


def measure(url: str, seconds: int) -> dict[str, Any]:
    """A short warm-up (first requests pay for imports, caches and connection set-up), then -c1 and -c16."""
    run_wrk(url, 1, WARM_UP_S)
    out: dict[str, Any] = {"url": url}
    for c in CONNECTIONS:
        out[f"c{c}"] = run_wrk(url, c, seconds)
        print(f"{url} -c{c}: p50 {out[f'c{c}']['p50_ms']} ms, {out[f'c{c}']['requests_per_s']:,.0f} req/s",
              file=sys.stderr)
    return out


# --- the run ----------------------------------------------------------------------------------------------


def run(seconds: int) -> dict[str, Any]:
    """The bare server first, then the stack; one server at a time, so neither competes with the other."""
    with tempfile.TemporaryDirectory(prefix="streamboard-bench-") as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "bench.stack_latency", "--bare-server", str(port)]
        bare_url = f"http://127.0.0.1:{port}/healthz"
        with server(argv, healthy(bare_url), Path(tmp) / "bare.log") as proc:
            before = rss_kb(proc.pid)
            bare = {"name": "bare /healthz (ceiling)", **measure(bare_url, seconds)}
            bare_rss = {"before_kb": before, "after_kb": rss_kb(proc.pid)}

        ingest_port, api_port = free_port(), free_port()
        ingest_url, api_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{api_port}"
        streamboard = str(Path(sys.executable).with_name("streamboard"))
        if not os.access(streamboard, os.X_OK):
            streamboard = shutil.which("streamboard") or "streamboard"
        argv = [streamboard, "up", "--data-dir", str(Path(tmp) / "data"), "--ingest-port", str(ingest_port),
                "--api-port", str(api_port)]
        with server(argv, healthy(f"{ingest_url}/healthz", f"{api_url}/healthz"), Path(tmp) / "stack.log",
                    env=stack_env()) as proc:
            entries = seed(ingest_url, api_url)
            before = rss_kb(proc.pid)
            ours = [{"name": "ingest /healthz", **measure(f"{ingest_url}/healthz", seconds)},
                    {"name": "read API /healthz", **measure(f"{api_url}/healthz", seconds)},
                    {"name": f"read API {LEADERBOARD}", **measure(f"{api_url}{LEADERBOARD}", seconds),
                     "board_entries": entries}]
            stack_rss = {"before_kb": before, "after_kb": rss_kb(proc.pid)}

    for endpoint in ours:
        for c in CONNECTIONS:
            endpoint[f"c{c}"]["ratio_requests_per_s"] = round(
                endpoint[f"c{c}"]["requests_per_s"] / bare[f"c{c}"]["requests_per_s"], 3)
        endpoint["c1"]["p50_vs_bare"] = round(endpoint["c1"]["p50_ms"] / bare["c1"]["p50_ms"], 2)
    return {"bare": bare, "stack": ours, "rss": {"bare": bare_rss, "stack": stack_rss}}


def write(results: dict[str, Any], seconds: int) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    pinning = (f"server pinned to CPU {SERVER_CPU}, wrk to CPU {WRK_CPU} (taskset)" if SERVER_CPU is not None
               else "nothing pinned (fewer than 2 CPUs)")
    doc: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": len(CPUS) or os.cpu_count(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform(), "wrk": wrk_version()},
        "method": {"duration_s": seconds, "warm_up": f"wrk -t1 -c1 -d{WARM_UP_S}s per endpoint, not recorded",
                   "pinning": pinning,
                   "ceiling": "a plain ASGI callable returning {\"status\":\"ok\"} under uvicorn.run(host=127.0.0.1, "
                              "log_level=warning, access_log=False), same uvicorn, same wrk commands, same run",
                   "stack": "streamboard up on a temporary data dir; the leaderboard seeded with "
                            f"{SEED_EVENTS} events and refreshed before the runs",
                   "commands": [r[f"c{c}"]["command"] for r in (results["bare"], *results["stack"])
                                for c in CONNECTIONS]},
        "results": results,
    }
    (RESULTS / "stack_latency.json").write_text(json.dumps(doc, indent=2) + "\n")

    bare, rss = results["bare"], results["rss"]
    lines = [f"Measured {doc['measured_at']} on {doc['machine']['nproc']} CPUs, Python {platform.python_version()}, "
             f"{seconds} s per point, {pinning}. Ceiling = bare uvicorn endpoint (plain ASGI, no framework), "
             "same wrk commands, same run. Ratios are ours / bare.", "",
             "| endpoint | p50 / p99 at -c1 | req/s -c1 | req/s -c16 | req/s vs bare (-c1, -c16) "
             "| p50 at -c1, ours vs bare |",
             "|---|---|---|---|---|---|",
             f"| {bare['name']} | {bare['c1']['p50_ms']} / {bare['c1']['p99_ms']} ms "
             f"| {bare['c1']['requests_per_s']:,.0f} | {bare['c16']['requests_per_s']:,.0f} | 1.00, 1.00 | 1.0x |"]
    for r in results["stack"]:
        c1, c16 = r["c1"], r["c16"]
        lines.append(f"| {r['name']} | {c1['p50_ms']} / {c1['p99_ms']} ms | {c1['requests_per_s']:,.0f} "
                     f"| {c16['requests_per_s']:,.0f} | {c1['ratio_requests_per_s']:.2f}, "
                     f"{c16['ratio_requests_per_s']:.2f} | {c1['p50_ms']} vs {bare['c1']['p50_ms']} ms "
                     f"({c1['p50_vs_bare']:g}x) |")
    lines += ["", f"RSS of the stack: {_mb(rss['stack']['before_kb'])} before the runs, "
              f"{_mb(rss['stack']['after_kb'])} after (bare: {_mb(rss['bare']['before_kb'])}, "
              f"{_mb(rss['bare']['after_kb'])})."]
    table = "\n".join(lines) + "\n"
    (RESULTS / "stack_latency.md").write_text("# Stack keep-alive latency\n\n" + table)
    return table


def _mb(kb: int | None) -> str:
    return f"{kb / 1024:.1f} MB" if kb is not None else "n/a"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--bare-server", type=int, metavar="PORT", help="serve the ceiling endpoint on PORT (internal)")
    args = p.parse_args()
    if args.bare_server is not None:
        serve_bare(args.bare_server)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (make bench-stack does it)")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = run(args.duration)
    print(write(results, args.duration))


if __name__ == "__main__":
    main()
