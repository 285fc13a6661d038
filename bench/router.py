"""Router benchmark: the router Lambda's cost per event on the local runtime, against a ceiling in the same run.

The router (``processors.router.route``) is invoked the way the event source mapping invokes it (Lambda-shaped
Kinesis events of up to ``router_batch_size`` records) over a local backend in a temporary data dir, for two
traffic shapes:

- batched: stream records of 100 events each (one ingest request each), users drawn from 10,000;
- single: stream records of one event each, every one from a different user.

Per shape it measures the handler's CPU time (``time.process_time``, this process only: SQLite writes of the
local delivery and profile stores included) and wall time per event, and the calls the handler makes to its
sinks per invocation (delivery batches, profile writes), which on AWS are network round trips that a Lambda is
billed for while it waits. The ceiling is the least work the same records need: base64-decode each record,
read its events (``Registry.read_record``) and encode each event back to the JSON line the router sends,
with no sink, measured in the same run on the same records. Bare and ours alternate for a few rounds; the
median counts.

Results go to bench/results/router.json and bench/results/router.md. ``streamboard capacity`` can take its
per-event CPU time from the JSON (``per_event_cpu_ms``) instead of an assumed constant.

Usage: python -m bench.router [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BATCHED_EVENTS_PER_RECORD = 100


def stream_records(events: int, per_record: int, users: int, seed: int) -> list[bytes]:
    """Stream records as ingest writes them: ``per_record`` checked score events of one request each."""
    from streamboard.registry import REGISTRY, format_ts
    from streamboard.synthetic import generate

    received = dt.datetime.now(dt.UTC)
    # valid score events without repeats (the generator also makes invalid ones and duplicates for demos)
    client_events = [e for e in generate(events * 2, users=users, seed=seed, now=received, invalid_every=10**9,
                                         duplicate_every=10**9) if e["event_type"] == "score"][:events]
    if per_record == 1:  # single-event requests from distinct users
        for i, e in enumerate(client_events):
            e["user_id"] = f"single-{seed}-{i}"
    out = []
    for i in range(0, len(client_events), per_record):
        checked = [REGISTRY.check(e, app_id="bench", received_at=received)
                   for e in client_events[i:i + per_record]]
        [(_, data)] = REGISTRY.records(checked, app_id="bench", received_at_text=format_ts(received))
        out.append(data)
    return out


def lambda_events(records: list[bytes], batch_size: int) -> list[dict[str, Any]]:
    """The Kinesis events the event source mapping would invoke the router with."""
    from streamboard.ports import ReadRecord
    from streamboard.runtime.esm import kinesis_event, within_payload

    reads = [ReadRecord("shardId-000000000000", f"{i:020d}", "k", data, time.time())
             for i, data in enumerate(records)]
    out = []
    while reads:
        batch = within_payload(reads[:batch_size])
        out.append(kinesis_event(batch, "arn:aws:kinesis:local:000000000000:stream/bench", "local"))
        reads = reads[len(batch):]
    return out


def bare(invocations: list[dict[str, Any]]) -> int:
    """The ceiling: what routing the same records takes at least (decode, read, encode), no sink."""
    from streamboard.registry import REGISTRY

    encode = msgspec.json.Encoder().encode
    lines = 0
    for event in invocations:
        for rec in event["Records"]:
            events, _ = REGISTRY.read_record(base64.b64decode(rec["kinesis"]["data"]))
            lines += sum(1 for e in events if encode(e))
    return lines


class Counting:
    """Wraps a sink and counts its calls (what the handler waits on over the network on AWS)."""

    def __init__(self, inner: Any, methods: tuple[str, ...]) -> None:
        self._inner, self.calls = inner, 0
        for name in methods:
            setattr(self, name, self._counted(getattr(inner, name)))

    def _counted(self, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)
        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def ours(invocations: list[dict[str, Any]], data_dir: Path) -> dict[str, Any]:
    """Route every invocation through the real handler over a fresh local backend; CPU and wall seconds."""
    from processors.router import handle
    from streamboard.backend import build_local_backend
    from streamboard.settings import Settings

    backend = build_local_backend(Settings(data_dir=data_dir))
    delivery = Counting(backend.delivery, ("put_record_batch",))
    profiles = Counting(backend.profiles, ("apply",))
    backend.delivery, backend.profiles = delivery, profiles
    cpu, wall = time.process_time(), time.perf_counter()
    failures = sum(len(handle(event, backend)["batchItemFailures"]) for event in invocations)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_seconds": cpu, "wall_seconds": wall, "failed_records": failures,
            "delivery_calls": delivery.calls, "profile_calls": profiles.calls}


def measure(shape: str, events: int, per_record: int, users: int, rounds: int, batch_size: int
            ) -> dict[str, Any]:
    records = stream_records(events, per_record, users, seed=11)
    invocations = lambda_events(records, batch_size)
    n = events
    runs = []
    for r in range(rounds):
        cpu = time.process_time()
        routed = bare(invocations)
        bare_cpu = time.process_time() - cpu
        assert routed == events, (routed, events)
        with tempfile.TemporaryDirectory(prefix="streamboard-bench-router-") as tmp:
            got = ours(invocations, Path(tmp) / "data")
        runs.append({"bare_cpu_seconds": bare_cpu, **got})
        print(f"{shape} round {r + 1}: ours {got['cpu_seconds']:.2f} s CPU, bare {bare_cpu:.2f} s CPU",
              file=sys.stderr, flush=True)
    med = {k: statistics.median(run[k] for run in runs) for k in ("cpu_seconds", "wall_seconds",
                                                                  "bare_cpu_seconds")}
    return {
        "shape": shape, "events": n, "events_per_record": per_record, "records": len(records),
        "invocations": len(invocations), "rounds": runs,
        "per_event_cpu_ms": round(med["cpu_seconds"] / n * 1e3, 4),
        "per_event_wall_ms": round(med["wall_seconds"] / n * 1e3, 4),
        "bare_per_event_cpu_ms": round(med["bare_cpu_seconds"] / n * 1e3, 4),
        "events_per_cpu_second": round(n / med["cpu_seconds"]),
        "bare_vs_ours": round(med["bare_cpu_seconds"] / med["cpu_seconds"], 3),
        "delivery_calls_per_invocation": round(runs[-1]["delivery_calls"] / len(invocations), 2),
        "profile_calls_per_invocation": round(runs[-1]["profile_calls"] / len(invocations), 2),
        "failed_records": runs[-1]["failed_records"],
    }


def write(doc: dict[str, Any]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"Measured {doc['measured_at']} on {doc['machine']['nproc']} CPUs, Python "
             f"{doc['machine']['python']}; router batches of up to {doc['batch_size']} records; median of "
             f"{doc['rounds']} rounds. CPU = this process's CPU time in the handler (local delivery and profile "
             "stores' SQLite writes included); ceiling = decode, read and encode the same records with no sink.",
             "", "| traffic | events | invocations | CPU per event | events per CPU-second | ceiling's CPU per "
             "event | ceiling / ours | sink calls per invocation (delivery, profiles) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        lines.append(f"| {r['shape']} ({r['events_per_record']} per record) | {r['events']:,} | {r['invocations']} "
                     f"| {r['per_event_cpu_ms']:.3f} ms | {r['events_per_cpu_second']:,} "
                     f"| {r['bare_per_event_cpu_ms']:.3f} ms | {r['bare_vs_ours']:.2f} "
                     f"| {r['delivery_calls_per_invocation']}, {r['profile_calls_per_invocation']} |")
    table = "\n".join(lines) + "\n"
    (RESULTS / "router.md").write_text("# Router benchmark\n\n" + table)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000, help="events per traffic shape (default 50,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per shape; the median counts (default 3)")
    args = p.parse_args(argv)
    from streamboard.settings import Settings

    batch_size = Settings().router_batch_size
    results = [measure("batched", args.events, BATCHED_EVENTS_PER_RECORD, 10_000, args.rounds, batch_size),
               measure("single", max(1, args.events // 5), 1, 10_000, args.rounds, batch_size)]
    doc = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "batch_size": batch_size,
           "rounds": args.rounds, "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
           "results": results}
    print(write(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
