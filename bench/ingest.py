"""Ingest benchmark ("server stack", issue 13): our ingest server against the fastest bare Python endpoint
that reads and decodes the same bodies, measured in the same run.

Servers (bench/ingest_server.py), all up for a shape's rounds, each on 127.0.0.1 in its own process:
  full:         OUR ingest server as ``python -m ingest`` builds it (create_app under
                streamboard.serving.build_server: uvicorn + httptools on uvloop, our hygiene;
                auth, body limits, per-event validation, group commit) with a null stream sink;
  bare_asgi:    a plain ASGI callable that reads the body, msgspec-decodes it and answers 202, under plain
                uvicorn with uvloop and httptools (the fastest uvicorn, nothing of ours);
  bare_ours:    bare_asgi's callable on OUR server stack (build_server: that uvicorn with our connection
                hygiene), the bare app on the stack ours runs on;
  bare_aiohttp: the same handler in aiohttp (C parser) on uvloop;
  bare_typed:   bare_asgi decoding by the event schemas (Registry.decode): the least a validating endpoint
                does; a reference reported next to the ratio, not a ceiling.
The ceiling of a shape is the best of bare_asgi's, bare_ours' and bare_aiohttp's medians; the ratio is ours / it.

Load: wrk (C; ``-t1 -cN -dS --latency``) POSTing pre-built bodies from a Lua script, for two shapes: 100
events a request and one event a request. Without wrk (or with ``--generator python``), a Python asyncio
closed loop of keep-alive connections instead; the results say which ran. The servers are pinned to one CPU
(only the one under load works) and the load generator to the other. Each round measures every server back
to back (which goes first rotates by round), each measurement after a warm-up; the median round of each
server counts.

Results go to bench/results/ingest.json and bench/results/ingest.md.
Usage: python -m bench.ingest [--seconds 5] [--rounds 5] [--connections 32] [--generator auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    CLIENT_CPU,
    CPUS,
    RESULTS,
    SERVER_CPU,
    cpu_seconds,
    exit_on_sigterm,
    free_port,
    median_round,
    pinned,
    pinning_text,
    rss_kb,
    run_wrk,
    server,
    wrk_version,
)

KEY = "bench-key"
SHAPES = {"batched_100": 100, "single_event": 1}
TARGETS = {"batched_100": 0.7, "single_event": 0.75}  # issue 13: ours / best bare, events/s
BODIES = {100: 16, 1: 64}  # distinct pre-built bodies per shape, cycled through
WARM_UP_S = 1.0
LABELS = {"full": "ours", "bare_asgi": "bare ASGI (uvicorn + uvloop + httptools)",
          "bare_ours": "bare ASGI on our server stack (build_server)",
          "bare_aiohttp": "bare aiohttp (uvloop)",
          "bare_typed": "bare ASGI, schema-typed decode (reference, not a ceiling)"}
CEILINGS = ("bare_asgi", "bare_ours", "bare_aiohttp")  # the bare endpoints a shape's ceiling is the best of


def _event(i: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=i % 600)
    return {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"user-{i % 5000}",
            "ts": now.isoformat(), "category": ("arcade", "puzzle", "racing")[i % 3], "points": 1 + i % 1000,
            "user_name": f"Player {i % 5000}"}


def build_bodies(batch: int, count: int) -> list[bytes]:
    """``count`` distinct request bodies of ``batch`` events each (a single event is posted bare)."""
    out = []
    for r in range(count):
        events = [_event(r * batch + i) for i in range(batch)]
        out.append(json.dumps({"events": events} if batch > 1 else events[0]).encode())
    return out


def lua_script(bodies: list[bytes]) -> str:
    """A wrk script that POSTs ``bodies`` in turn with our API key. The requests are formatted once per
    thread in ``init`` (when wrk knows the host), so ``request()`` only hands the next one out."""
    for body in bodies:
        if b"]==]" in body:
            raise ValueError("a body contains the Lua long-string terminator ]==]")
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"',
             f'wrk.headers["x-api-key"] = "{KEY}"', "local bodies = {"]
    lines += [f"[==[{body.decode()}]==]," for body in bodies]
    lines += ["}", "wrk.body = bodies[1]", "local requests = {}", "local i = 0",
              "function init(args)",
              "  for n, body in ipairs(bodies) do requests[n] = wrk.format(nil, nil, nil, body) end",
              "end",
              "function request()",
              "  i = i % #requests + 1",
              "  return requests[i]",
              "end"]
    return "\n".join(lines) + "\n"


# --- the Python load generator (the fallback without wrk) -------------------------------------------------

def raw_requests(port: int, bodies: list[bytes]) -> list[bytes]:
    head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"x-api-key: {KEY}\r\n")
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


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


async def closed_loop(port: int, requests: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    """Every connection sends its next request as soon as the previous answer is in."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await _one(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - t0)
            i += connections
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    qs = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {"requests_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(qs[49] * 1000, 3),
            "p90_ms": round(qs[89] * 1000, 3), "p99_ms": round(qs[98] * 1000, 3),
            "max_ms": round(max(latencies, default=0.0) * 1000, 3), "requests": len(latencies)}


def python_load(port: int, bodies: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    """The Python closed loop, in this process (pinned to the load generator's CPU by ``main``)."""
    requests = raw_requests(port, bodies)
    cpu, started = time.process_time(), time.perf_counter()
    figures = asyncio.run(closed_loop(port, requests, connections, seconds))
    figures["load_generator_cpus"] = round((time.process_time() - cpu) / (time.perf_counter() - started), 2)
    return {"command": f"python asyncio closed loop, {connections} keep-alive connections, {seconds:g} s",
            **figures}


# --- one measurement --------------------------------------------------------------------------------------

def check(port: int, bodies: list[bytes], batch: int) -> bool:
    """Every body is answered 202 with all its events accepted (so ours measures its valid path). False while
    the server does not listen yet."""
    try:
        with httpx.Client(timeout=10, trust_env=False) as client:
            for body in bodies:
                resp = client.post(f"http://127.0.0.1:{port}/v1/events", content=body,
                                   headers={"x-api-key": KEY, "content-type": "application/json"})
                answer = resp.json() if resp.status_code == 202 else None
                if answer != {"accepted": batch, "rejected": []}:
                    raise RuntimeError(f"the server answered {resp.status_code}: {resp.text[:500]}")
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def started(mode: str, batch: int, bodies: list[bytes], tmp: Path) -> Iterator[tuple[Any, int, dict[str, Any]]]:
    """One server up (pinned to the server CPU) and checked; yields its process, port and what it runs on.
    Stopped on the way out whatever happens."""
    port, info = free_port(), tmp / f"{mode}.info.json"
    info.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.ingest_server", "--mode", mode, "--port", str(port), "--info", str(info)]
    with server(argv, lambda: check(port, bodies, batch), tmp / f"{mode}.log") as proc:
        yield proc, port, json.loads(info.read_text()) if info.exists() else {}


def measure(running: tuple[Any, int, dict[str, Any]], batch: int, bodies: list[bytes], script: Path,
            generator: str, seconds: float, connections: int) -> dict[str, Any]:
    """One measurement of a running server: a warm-up, then the load (with the server's CPU and memory)."""
    proc, port, stack = running
    url = f"http://127.0.0.1:{port}/v1/events"

    def load(duration: float) -> dict[str, Any]:
        if generator == "wrk":
            cmd = pinned(CLIENT_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                                      "--latency", "--timeout", "10s", "-s", str(script), url])
            return run_wrk(cmd, duration)
        return python_load(port, bodies, connections, duration)

    load(WARM_UP_S)
    cpu, t0 = cpu_seconds(proc.pid), time.perf_counter()
    figures = load(seconds)
    elapsed = time.perf_counter() - t0
    rss, peak = rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")
    server_cpus = round((cpu_seconds(proc.pid) - cpu) / elapsed, 2)
    if "command" in figures:  # the same command for every server of a shape, whatever port and temp dir
        figures["command"] = figures["command"].replace(str(script), script.name).replace(f":{port}/", ":PORT/")
    return {**figures, "events_per_s": round(figures["requests_per_s"] * batch, 1), "server_cpus": server_cpus,
            "rss_mb": round(rss / 1024, 1) if rss else None, "peak_rss_mb": round(peak / 1024, 1) if peak else None,
            "stack": stack}


def summarise(shape: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One shape's result from every server's rounds (``full`` is ours, the others bare): each server's
    median round, the ceiling (the best bare median), ours / ceiling in events/s and per round."""
    bares = [m for m in runs if m in CEILINGS]
    result: dict[str, Any] = {"events_per_request": SHAPES[shape],
                              **{m: median_round(e, "events_per_s") for m, e in runs.items()}}
    ceiling = max(bares, key=lambda m: result[m]["events_per_s"])
    ratio = result["full"]["events_per_s"] / result[ceiling]["events_per_s"]
    if "bare_typed" in result:  # a reference: ours against the least a validating endpoint does
        result["ratio_to_typed"] = round(result["full"]["events_per_s"] / result["bare_typed"]["events_per_s"], 3)
    result.update(ceiling=ceiling, ratio_events_per_s=round(ratio, 3), target=TARGETS[shape],
                  meets_target=ratio >= TARGETS[shape],
                  rounds_ratio=[round(ours["events_per_s"] / max(runs[m][i]["events_per_s"] for m in bares), 3)
                                for i, ours in enumerate(runs["full"])])
    # The paired figure: each round's ours / that round's best bare (measured back to back), their median; a
    # slow spell of the machine moves a round's servers together, so this moves less than the medians' ratio.
    result["ratio_median_of_rounds"] = round(statistics.median(result["rounds_ratio"]), 3)
    return result


def run(seconds: float, connections: int, rounds: int, generator: str, modes: tuple[str, ...]) -> dict[str, Any]:
    """Per shape, every server up at once (on the same CPU; only the one under load works), then ``rounds``
    rounds measuring each back to back, which goes first rotating by round: a slow spell of the machine
    falls on all of them alike."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="streamboard-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for shape, batch in SHAPES.items():
            bodies = build_bodies(batch, BODIES[batch])
            script = tmp / f"{shape}.lua"
            script.write_text(lua_script(bodies))
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
            with contextlib.ExitStack() as stack:
                servers = {m: stack.enter_context(started(m, batch, bodies, tmp)) for m in modes}
                for n in range(rounds):
                    for mode in modes[n % len(modes):] + modes[:n % len(modes)]:  # each goes first in turn
                        entry = measure(servers[mode], batch, bodies, script, generator, seconds, connections)
                        runs[mode].append(entry)
                        print(f"{shape} round {n + 1}/{rounds} {mode}: {entry['events_per_s']:,.0f} events/s, "
                              f"p50 {entry['p50_ms']} ms, p99 {entry['p99_ms']} ms, RSS {entry['rss_mb']} MB",
                              file=sys.stderr)
            results[shape] = summarise(shape, runs)
    return results


# --- results ----------------------------------------------------------------------------------------------

def write(results: dict[str, Any], method: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "machine": {"nproc": len(CPUS) or os.cpu_count(), "cpu_count": os.cpu_count(),
                       "python": platform.python_version(), "platform": platform.platform()},
           "method": method, "results": results}
    (RESULTS / "ingest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "ingest.md").write_text("# Ingest benchmark (server stack)\n\n" + table(doc))
    return RESULTS / "ingest.md"


def table(doc: dict[str, Any]) -> str:
    """The results as Markdown: a line about the method, then one row per shape and server."""
    m = doc["method"]
    lines = [f"Measured {doc['measured_at']} on {doc['machine']['nproc']} CPUs, Python {doc['machine']['python']}; "
             f"load generator: {m['load_generator']}; {m['connections']} connections, {m['seconds_per_point']:g} s "
             f"per point, {m['rounds']} rounds (every server back to back), medians; {m['pinning']}. Ratio = ours / "
             "the best bare endpoint of the shape (events/s), same run.", "",
             "| requests | server | events/s (requests/s) | p50 / p99 | RSS after (peak) | CPUs busy: server, "
             "load generator | ratio to best bare (rounds) | target |",
             "|---|---|---|---|---|---|---|---|"]
    for shape, r in doc["results"].items():
        for mode in LABELS:
            if mode not in r:
                continue
            e = r[mode]
            if mode == "full":
                rounds = ", ".join(f"{x:.2f}" for x in r["rounds_ratio"])
                verdict = "met" if r["meets_target"] else "NOT met"
                ratio = f"**{r['ratio_events_per_s']:.2f}**; rounds {rounds} (median {r['ratio_median_of_rounds']:.2f})"
                target = f">= {r['target']} ({verdict})"
            elif mode == "bare_typed":
                ratio, target = f"ours / it: {r['ratio_to_typed']:.2f}", ""
            else:
                ratio, target = ("ceiling" if r["ceiling"] == mode else ""), ""
            lines.append(f"| {shape} | {LABELS[mode]} | {e['events_per_s']:,.0f} ({e['requests_per_s']:,.0f}) "
                         f"| {e['p50_ms']:g} / {e['p99_ms']:g} ms | {e['rss_mb']} MB ({e['peak_rss_mb']} MB) "
                         f"| {e['server_cpus']}, {e['load_generator_cpus']} | {ratio} | {target} |")
    starved = [f"{shape} {mode} ({r[mode]['server_cpus']})" for shape, r in doc["results"].items()
               for mode in LABELS if mode in r and r[mode]["server_cpus"] < 0.9]
    if starved:
        lines += ["", f"Warning: in these median rounds the server used under 0.9 of its CPU, so something else "
                      f"limited them (a busy machine, or the load generator): {', '.join(starved)}. Run again on "
                      "a quiet machine before trusting the ratios."]
    return "\n".join(lines) + "\n"




def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--rounds", type=int, default=9, help="rounds, each every server back to back (default 9)")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk when installed (auto, the default), or the Python fallback")
    args = p.parse_args()
    have_wrk = shutil.which("wrk") is not None
    if args.generator == "wrk" and not have_wrk:
        sys.exit("wrk is not installed: apt-get install wrk (make bench does it)")
    generator = "wrk" if args.generator == "wrk" or (args.generator == "auto" and have_wrk) else "python"
    modes: tuple[str, ...] = ("full", "bare_asgi", "bare_ours", "bare_aiohttp", "bare_typed")
    notes = []
    if importlib.util.find_spec("aiohttp") is None:
        modes = ("full", "bare_asgi", "bare_ours", "bare_typed")
        notes.append("aiohttp is not installed (pip install -e '.[dev]'): no bare aiohttp endpoint in this run")
    if generator == "python":
        notes.append("wrk not found: the Python load generator ran" if args.generator == "auto"
                     else "--generator python")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if generator == "python" and CLIENT_CPU is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    results = run(args.seconds, args.connections, args.rounds, generator, modes)
    method = {
        "load_generator": f"wrk ({wrk_version()}), -t1, Lua script POSTing pre-built bodies" if generator == "wrk"
        else "Python asyncio closed loop (fallback)",
        "generator": generator, "seconds_per_point": args.seconds, "connections": args.connections,
        "rounds": args.rounds, "warm_up_s": WARM_UP_S, "bodies_per_shape": {s: BODIES[b] for s, b in SHAPES.items()},
        "pinning": pinning_text(), "server_cpu": SERVER_CPU, "load_generator_cpu": CLIENT_CPU,
        "servers": {m: LABELS[m] for m in modes},
        "summary": "every server of a shape up at once and checked (every body answered 202 with all its events "
                   "accepted); each round measures them back to back, which goes first rotating by round, each "
                   "after a warm-up; the median round of each counts; the ceiling of a shape is its best bare "
                   "endpoint",
        "latency": "closed loop: measured from each request's send, so queueing behind a slow answer is not "
                   "counted (see streamboard loadtest --rate for open-loop latency)",
        "notes": notes,
        "commands": sorted({e["command"] for r in results.values() for m in modes for e in [r[m]]}),
    }
    path = write(results, method)
    print(path.read_text())


if __name__ == "__main__":
    main()
