"""Ingest's cost per request in CPU instructions, ours against the bare endpoints, counted by valgrind.

On a shared machine the throughput benchmark (``bench/ingest.py``) moves by a third from one round to the
next; an instruction count does not move at all. This counts, for each shape (a 100-event body, a single
event) and each handler, the instructions one request costs in process: the handler called as an ASGI
callable by 32 concurrent tasks on uvloop (no sockets, no HTTP parser: what every server adds is left out),
``ours`` exactly as ``python -m ingest`` builds it (auth, body limits, validation, the deadline, group commit
into the null stream of ``bench/ingest_server.py``), the bare endpoints as that benchmark runs them.

Each handler runs twice under ``valgrind --tool=callgrind`` (Debian package ``valgrind``), with ``--warm`` and
with ``--warm`` + ``--requests`` requests; instructions per request = the difference / ``--requests`` (start-up,
imports and warm-up cancel out). The ratio is bare / ours: the share of the bare endpoint's speed ours would
reach if instructions were all a request cost (they are not: the cache misses of a server under load are not
counted). Results: ``results/ingest_cost.{json,md}``. ``python -m bench.ingest_cost`` (``make bench-cost``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS

HANDLERS = ("ours", "bare_asgi", "bare_typed")
SHAPES = {"batched_100": 100, "single_event": 1}
CONCURRENCY = 32
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def run_requests(handler: str, batch: int, requests: int) -> None:
    """Call ``handler`` with ``requests`` bodies of ``batch`` events, 32 at a time (the child's work)."""
    import uvloop

    from bench.ingest import build_bodies
    from bench.ingest_server import KEY, bare_asgi, bare_typed, ours

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            committer = None
            if handler == "ours":
                app: Any = ours(data)[0]
                committer = app.state.committer
                await committer.start()
            else:
                app = {"bare_asgi": bare_asgi, "bare_typed": bare_typed}[handler]
            bodies = build_bodies(batch, 64 if batch == 1 else 16)
            statuses: list[int] = []

            async def one(body: bytes) -> None:
                scope = {"type": "http", "method": "POST", "path": "/v1/events", "query_string": b"",
                         "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                                     (b"x-api-key", KEY.encode()), (b"content-length", b"%d" % len(body))]}

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": body, "more_body": False}

                async def send(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        statuses.append(message["status"])

                await app(scope, receive, send)

            async def worker(w: int) -> None:
                for i in range(w, requests, CONCURRENCY):
                    await one(bodies[i % len(bodies)])

            await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
            if committer is not None:
                await committer.stop()
            if statuses != [202] * requests:  # the valid path is what is counted
                raise SystemExit(f"{handler}: not every request answered 202: {sorted(set(statuses))}")

    uvloop.run(main())


def instructions(handler: str, batch: int, requests: int) -> int:
    """What a child calling the handler ``requests`` times executed, in instructions (valgrind's count)."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.ingest_cost",
            "--child", handler, "--batch", str(batch), "--requests", str(requests)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{handler} x{requests} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return int(found.group(1))


def per_request(handler: str, batch: int, warm: int, requests: int) -> float:
    with ThreadPoolExecutor(2) as pool:  # the two children at once (valgrind runs each on one CPU)
        base, more = pool.map(lambda n: instructions(handler, batch, n), (warm, warm + requests))
    return (more - base) / requests


def measure(requests: dict[str, int], warm: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for shape, batch in SHAPES.items():
        counts = {h: per_request(h, batch, warm, requests[shape]) for h in HANDLERS}
        print(f"{shape}: " + ", ".join(f"{h} {v:,.0f}" for h, v in counts.items()), file=sys.stderr, flush=True)
        results[shape] = {"events_per_request": batch, "requests": requests[shape],
                          "instructions_per_request": {h: round(v) for h, v in counts.items()},
                          "instructions_per_event": {h: round(v / batch) for h, v in counts.items()},
                          "bare_vs_ours": round(counts["bare_asgi"] / counts["ours"], 3),
                          "typed_vs_ours": round(counts["bare_typed"] / counts["ours"], 3)}
    return results


def table(doc: dict[str, Any]) -> str:
    lines = ["# Ingest cost per request (instructions, valgrind)", "",
             f"Measured {doc['measured_at']} with {doc['valgrind']}, Python {doc['python']}: each handler called in "
             f"process by {CONCURRENCY} concurrent tasks on uvloop (no sockets, no HTTP parser), instructions per "
             "request = (count after warm-up + N requests - count after warm-up) / N. Ratio = bare / ours.", "",
             "| requests | ours | bare ASGI (untyped decode) | bare, schema-typed decode | bare / ours "
             "| typed / ours |",
             "|---|---|---|---|---|---|"]
    for shape, r in doc["results"].items():
        c = r["instructions_per_request"]
        lines.append(f"| {shape} | {c['ours']:,} | {c['bare_asgi']:,} | {c['bare_typed']:,} | {r['bare_vs_ours']:.2f} "
                     f"| {r['typed_vs_ours']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=HANDLERS, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=0, help="requests counted (default 3,200 single, 640 batched)")
    p.add_argument("--warm", type=int, default=320, help="requests before the counted ones (default 320)")
    args = p.parse_args()
    if args.child:
        run_requests(args.child, args.batch, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind); `make bench-cost` installs it",
              file=sys.stderr)
        return 2
    requests = {"batched_100": args.requests or 640, "single_event": args.requests or 3200}
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    doc = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "valgrind": version,
           "python": platform.python_version(), "concurrency": CONCURRENCY, "warm": args.warm,
           "results": measure(requests, args.warm)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_cost.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = table(doc)
    (RESULTS / "ingest_cost.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
