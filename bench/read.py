"""Read benchmark (issue 12): the local read API's board reads per second, unconditional (200 with the board)
and conditional (``If-None-Match`` with the current ETag: 304), against a bare endpoint that returns the same
bytes, measured in the same run.

Servers (bench/read_server.py), both up for the whole run, each on 127.0.0.1 in its own process:
  ours: the read API as ``streamboard up`` serves it (read_api_app over the local backend of a data dir
        with real boards, under streamboard.serving.build_server: uvicorn + httptools on uvloop);
  bare: a plain ASGI callable under plain uvicorn with uvloop and httptools (the fastest stack bench/ingest.py
        found here) replaying ours' captured answers: the same body and headers, 304 on a matching ETag.

Load: ``wrk -t1 -cN -dS --latency`` on ``/v1/leaderboards/overall?window=all&limit=10`` and ``limit=100``,
without and with ``-H 'If-None-Match: ETAG'``. Both servers are pinned to one CPU (only the one under
load works) and wrk to the other. Each round measures every case on ours and on bare back to back, the
first of the pair alternating by round, each measurement after a warm-up; the median round of each case
counts. The ratio is ours / bare in requests/s (the median of the pairs' ratios is reported next to it).

Results go to bench/results/read.json and bench/results/read.md.
Usage: python -m bench.read [--seconds 3] [--rounds 7] [--connections 32]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
from bench.read_server import capture, seed_data_dir

BOARD = "/v1/leaderboards/overall?window=all&limit={limit}"
LIMITS = (10, 100)
CASES = {f"limit{n}_{kind}": (n, kind) for n in LIMITS for kind in ("200", "304")}
WARM_UP_S = 1.0
SEED_USERS, SEED_EVENTS = 2000, 20000
LABELS = {"ours": "ours (read_api_app, build_server)", "bare": "bare ASGI (uvicorn + uvloop + httptools)"}


def _url(limit: int) -> str:
    return BOARD.format(limit=limit)


def check(port: int, captured: dict[str, Any] | None) -> bool:
    """The server answers every board as ours did (the same body and ETag; 304 on a matching ETag). False
    while it does not listen yet."""
    if captured is None:  # ours, before the capture: just wait for it to listen
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            for url, c in captured.items():
                ok = client.get(url)
                if ok.status_code != 200 or ok.content != base64.b64decode(c["ok"]["body_b64"]) \
                        or ok.headers.get("etag") != c["etag"]:
                    raise RuntimeError(f"{url}: answered {ok.status_code} with another body or ETag")
                nm = client.get(url, headers={"if-none-match": c["etag"]})
                if nm.status_code != 304 or nm.content:
                    raise RuntimeError(f"{url} with If-None-Match: answered {nm.status_code}")
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def started(mode: str, data: Path, captured_file: Path, captured: dict[str, Any] | None,
            tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, Any]]]:
    """One server up (pinned to the server CPU) and checked: ours' answers captured (when ``captured`` is
    None) or compared with what ours gave; yields the process, its base URL and the captured answers. Stopped
    on the way out whatever happens."""
    port, info = free_port(), tmp / f"{mode}.info.json"
    info.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.read_server", "--mode", mode, "--port", str(port), "--info", str(info)]
    argv += ["--data-dir", str(data)] if mode == "ours" else ["--captured", str(captured_file)]
    base = f"http://127.0.0.1:{port}"
    with server(argv, lambda: check(port, captured), tmp / f"{mode}.log") as proc:
        if captured is None:
            with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
                captured = capture(client, [_url(n) for n in LIMITS])
            captured_file.write_text(json.dumps(captured))
        yield proc, base, captured


def measure(proc: subprocess.Popen[bytes], base: str, case: str, etag: str, seconds: float,
            connections: int) -> dict[str, Any]:
    """One case on one running server: a warm-up, then the measurement (with the server's CPU and memory)."""
    limit, kind = CASES[case]
    header = ["-H", f"If-None-Match: {etag}"] if kind == "304" else []

    def wrk(duration: float) -> dict[str, Any]:
        cmd = pinned(CLIENT_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                                  "--latency", "--timeout", "10s", *header, f"{base}{_url(limit)}"])
        return {**run_wrk(cmd, duration), "command": shlex.join(cmd)}  # -H's value has a space

    wrk(WARM_UP_S)
    cpu, t0 = cpu_seconds(proc.pid), time.perf_counter()
    figures = wrk(seconds)
    elapsed = time.perf_counter() - t0
    figures["command"] = figures["command"].replace(base.rsplit(":", 1)[1] + "/", "PORT/")
    rss, peak = rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")
    return {**figures, "server_cpus": round((cpu_seconds(proc.pid) - cpu) / elapsed, 2),
            "rss_mb": round(rss / 1024, 1) if rss else None, "peak_rss_mb": round(peak / 1024, 1) if peak else None}


def run(seconds: float, connections: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed a data dir, start both servers (on the same CPU; only the one under load works), then ``rounds``
    rounds: every case on ours and on bare back to back, in turn first (ours, bare; then bare, ours), so that
    each pair is measured within seconds and a slow spell of the machine falls on both alike."""
    with tempfile.TemporaryDirectory(prefix="streamboard-bench-") as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        data = tmp / "data"
        t0 = time.perf_counter()
        seeded = seed_data_dir(data, SEED_USERS, SEED_EVENTS)
        seeded = {"events": seeded["events"], "users": seeded["users"], "seconds": round(time.perf_counter() - t0, 1)}
        captured_file = tmp / "captured.json"
        ours = stack.enter_context(started("ours", data, captured_file, None, tmp))
        captured = ours[2]
        servers = {"ours": ours, "bare": stack.enter_context(started("bare", data, captured_file, captured, tmp))}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {"ours": [], "bare": []} for c in CASES}
        for n in range(rounds):
            for case in CASES:
                etag = captured[_url(CASES[case][0])]["etag"]
                for mode in (("ours", "bare") if n % 2 == 0 else ("bare", "ours")):
                    proc, base, _ = servers[mode]
                    entry = measure(proc, base, case, etag, seconds, connections)
                    runs[case][mode].append(entry)
                    print(f"round {n + 1}/{rounds} {mode} {case}: {entry['requests_per_s']:,.0f} req/s, "
                          f"p50 {entry['p50_ms']} ms, p99 {entry['p99_ms']} ms, peak RSS {entry['peak_rss_mb']} MB",
                          file=sys.stderr)
        stacks = {m: json.loads(p.read_text()) if (p := tmp / f"{m}.info.json").exists() else {} for m in servers}
    for case_runs in runs.values():
        for mode, entries in case_runs.items():
            for entry in entries:
                entry["stack"] = stacks[mode]
    results: dict[str, Any] = {}
    for case, (limit, kind) in CASES.items():
        ours_m, bare_m = (median_round(runs[case][m], "requests_per_s") for m in ("ours", "bare"))
        c = captured[_url(limit)]
        body_bytes = len(base64.b64decode(c["ok"]["body_b64"])) if kind == "200" else 0
        pairs = [round(o["requests_per_s"] / b["requests_per_s"], 3)
                 for o, b in zip(runs[case]["ours"], runs[case]["bare"], strict=True)]
        results[case] = {
            "url": _url(limit), "conditional": kind == "304", "status": int(kind), "body_bytes": body_bytes,
            "ours": ours_m, "bare": bare_m,
            "ratio_requests_per_s": round(ours_m["requests_per_s"] / bare_m["requests_per_s"], 3),
            "rounds_ratio": pairs,
            "median_pair_ratio": round(statistics.median(pairs), 3),
            "p50_vs_bare": round(ours_m["p50_ms"] / bare_m["p50_ms"], 2) if bare_m["p50_ms"] else None,
        }
    peaks = {m: max(e["peak_rss_mb"] or 0 for case in runs.values() for e in case[m]) for m in ("ours", "bare")}
    headers = {url: {"ok": c["ok"]["headers"], "not_modified": c["not_modified"]["headers"]}
               for url, c in captured.items()}
    return results, {"seeded": seeded, "peak_rss_mb": peaks, "headers": headers}


# --- results ----------------------------------------------------------------------------------------------

def write(results: dict[str, Any], extra: dict[str, Any], method: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "machine": {"nproc": len(CPUS) or os.cpu_count(), "cpu_count": os.cpu_count(),
                       "python": platform.python_version(), "platform": platform.platform(),
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
           "method": method, "results": results, **extra}
    (RESULTS / "read.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "read.md").write_text("# Read benchmark (board reads)\n\n" + table(doc))
    return RESULTS / "read.md"


def table(doc: dict[str, Any]) -> str:
    m = doc["method"]
    lines = [f"Measured {doc['measured_at']} on {doc['machine']['nproc']} CPUs, Python {doc['machine']['python']}; "
             f"wrk -t1 -c{m['connections']}, {m['seconds_per_point']:g} s per point, {m['rounds']} rounds "
             f"(each case on both servers back to back), medians; {m['pinning']}. Boards from "
             f"{doc['seeded']['events']:,} events of "
             f"{doc['seeded']['users']:,} players through the local pipeline. Ratio = ours / bare (requests/s), "
             "same run; the bare endpoint sends the same bytes and headers.", "",
             "| request | server | requests/s | p50 / p99 | RSS after (peak) | CPUs busy: server, wrk "
             "| ratio to bare (median of pairs; each pair) |",
             "|---|---|---|---|---|---|---|"]
    for r in doc["results"].values():
        what = f"limit={r['url'].rsplit('=', 1)[1]}, " + (
            "If-None-Match -> 304" if r["conditional"] else f"200, {r['body_bytes']:,} B body")
        for mode in ("ours", "bare"):
            e = r[mode]
            if mode == "ours":
                rounds = ", ".join(f"{x:.2f}" for x in r["rounds_ratio"])
                ratio = f"**{r['ratio_requests_per_s']:.2f}** ({r['median_pair_ratio']:.2f}; {rounds})"
            else:
                ratio = "ceiling"
            lines.append(f"| {what} | {LABELS[mode]} | {e['requests_per_s']:,.0f} | {e['p50_ms']:g} / "
                         f"{e['p99_ms']:g} ms | {e['rss_mb']} MB ({e['peak_rss_mb']} MB) | {e['server_cpus']}, "
                         f"{e['load_generator_cpus']} | {ratio} |")
    peaks = doc["peak_rss_mb"]
    lines += ["", f"Server peak RSS over the run: ours {peaks['ours']} MB, bare {peaks['bare']} MB."]
    starved = [f"{case} {mode} ({r[mode]['server_cpus']})" for case, r in doc["results"].items()
               for mode in ("ours", "bare") if r[mode]["server_cpus"] < 0.9]
    if starved:
        lines += ["", f"Warning: in these median rounds the server used under 0.9 of its CPU, so something else "
                      f"limited them (a busy machine, or wrk): {', '.join(starved)}. Run again on a quiet machine "
                      "before trusting the ratios."]
    for note in m.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"




def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--rounds", type=int, default=7,
                   help="rounds, each every case on both servers back to back (default 7)")
    p.add_argument("--note", action="append", default=[], help="a note for the results (repeatable)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (make bench-read does it)")
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    load_before = [round(x, 2) for x in os.getloadavg()]
    notes = list(args.note)
    if load_before[0] > 0.5:
        notes.append(f"the machine was not idle: load average {load_before[0]} (1 min) before the run, on "
                     f"{len(CPUS) or os.cpu_count()} CPUs; a server sharing its CPU gets less of it, so the "
                     "figures are noisy")
    results, extra = run(args.seconds, args.connections, args.rounds)
    method = {
        "load_generator": f"wrk ({wrk_version()}), -t1", "seconds_per_point": args.seconds,
        "connections": args.connections, "rounds": args.rounds, "warm_up_s": WARM_UP_S,
        "pinning": pinning_text(), "server_cpu": SERVER_CPU, "load_generator_cpu": CLIENT_CPU,
        "servers": LABELS,
        "ceiling": "a plain ASGI callable under uvicorn (uvloop, httptools) replaying ours' captured answers: the "
                   "same body and headers (less Date and Server, which uvicorn adds to both), 304 with ours' 304 "
                   "headers when If-None-Match equals the ETag; bench/ingest.py found this the fastest bare stack",
        "summary": "both servers up for the whole run, checked at start (the same body and ETag as ours' first "
                   "answer, 304 on a matching ETag); each round measures every case on both back to back, which "
                   "goes first alternating by round; every measurement warmed up; the median round counts",
        "latency": "closed loop: measured from each request's send (coordinated omission: queueing behind a slow "
                   "answer is not counted)",
        "loadavg_before": load_before,
        "notes": notes,
        "commands": sorted({r[m]["command"] for r in results.values() for m in ("ours", "bare")}),
    }
    path = write(results, extra, method)
    print(path.read_text())


if __name__ == "__main__":
    main()
