"""``streamboard``: run the local stack, demo it, refresh boards, query the lake, manage apps.

Errors are one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamboard.errors import ConfigError, StreamboardError
from streamboard.logs import install_repeat_filter
from streamboard.settings import ENV_ADMIN_KEY, ENV_API_KEY, Settings, load_settings

if TYPE_CHECKING:  # imported by the commands that make HTTP requests (an offline refresh makes none)
    import httpx

log = logging.getLogger("streamboard")


class CliError(Exception):
    """An error to print as one line, with exit status 1."""


# --- shared helpers ---------------------------------------------------------------------------------

def _settings(args: argparse.Namespace) -> Settings:
    s = load_settings()
    return s.with_overrides(
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        ingest_port=getattr(args, "ingest_port", None),
        api_port=getattr(args, "api_port", None),
        refresh_seconds=getattr(args, "refresh_seconds", None),
        firehose_buffer_seconds=getattr(args, "buffer_seconds", None),
        backend=getattr(args, "backend", None),
        endpoint_url=getattr(args, "endpoint_url", None),
    )


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str, stream: Any = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last = 0.0

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last >= 0.1 or self.done >= self.total:
                self._last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        rate = self.done / max(now - self.started, 1e-6)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{self.done}/{self.total} ({rate:,.0f}/s)")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], out: Any = None, max_rows: int | None = None
) -> None:
    out = out or sys.stdout
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    shown = rows if max_rows is None else rows[:max_rows]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in shown:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if max_rows is not None and len(rows) > max_rows:
        out.write(f"... {len(rows) - max_rows} more rows (use --format csv or json for all)\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


# --- commands ---------------------------------------------------------------------------------------

def _emulator_credentials() -> None:
    """An emulator endpoint accepts any credentials; real ones from the environment still win."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def cmd_up(args: argparse.Namespace) -> int:
    from streamboard.runtime.stack import LocalStack

    settings = _settings(args)
    if settings.backend == "aws" and not settings.endpoint_url:
        raise CliError("--backend aws runs the emulated pipeline against an AWS-compatible endpoint: "
                       "give --endpoint-url (on AWS itself, deploy with the CDK app instead)")
    if settings.endpoint_url:
        _emulator_credentials()
    stack = LocalStack(settings)
    print(f"streamboard {settings.backend} stack (data in {Path(settings.data_dir).resolve()})", flush=True)
    print(f"  ingest API: {stack.ingest_url}   (x-api-key from ${ENV_API_KEY}, default local-dev-key)", flush=True)
    print(f"  read API:   {stack.api_url}   (admin key from ${ENV_ADMIN_KEY}, default local-admin-key)", flush=True)
    print(f"  console:    {stack.api_url}/   (boards, players, pipeline health)", flush=True)
    print("  stop with Ctrl-C (SIGINT) or SIGTERM", flush=True)
    stack.run()
    print("stopped cleanly", flush=True)
    return 0


def _post_all(ingest_url: str, key: str, events: list[dict[str, Any]], batch: int = 100,
              workers: int = 4, label: str = "posting events", deadline: float | None = None,
              latencies: list[float] | None = None) -> dict[str, int]:
    """Post ``events`` in batches from ``workers`` threads, retrying 429/503 as told; stops at ``deadline``."""
    import httpx

    totals = {"accepted": 0, "rejected": 0, "requests": 0}
    progress = Progress(len(events), label)
    lock = threading.Lock()
    chunks = [events[i:i + batch] for i in range(0, len(events), batch)]

    def post(client: httpx.Client, chunk: list[dict[str, Any]]) -> None:
        for attempt in range(5):
            if deadline is not None and time.monotonic() > deadline:
                return
            started = time.perf_counter()
            resp = client.post(f"{ingest_url}/v1/events", json={"events": chunk}, headers={"x-api-key": key})
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            if resp.status_code in (429, 503) and attempt < 4:
                time.sleep(float(resp.headers.get("retry-after", "1")))
                continue
            if resp.status_code != 202:
                raise CliError(f"ingest answered {resp.status_code}: {resp.text}")
            body = resp.json()
            with lock:
                totals["accepted"] += body["accepted"]
                totals["rejected"] += len(body["rejected"])
                totals["requests"] += 1
            progress.advance(len(chunk))
            return

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(post, client, c) for c in chunks]:
            f.result()
    return totals


def _admin_refresh(api_url: str, admin_key: str) -> dict[str, Any]:
    import httpx

    resp = httpx.post(f"{api_url}/v1/admin/refresh", headers={"x-api-key": admin_key}, timeout=900)
    if resp.status_code != 200:
        raise CliError(f"refresh failed ({resp.status_code}): {resp.text}")
    return dict(resp.json())


def print_boards(api_url: str, top: int = 5, out: Any = None) -> list[dict[str, Any]]:
    """Print the top of every board the read API has; return the boards."""
    import httpx

    out = out or sys.stdout
    boards = []
    scopes = httpx.get(f"{api_url}/v1/leaderboards").json()["scopes"]
    for scope in sorted(scopes, key=lambda s: (s != "overall", s)):
        for window in ("all", "30d", "365d"):
            board = httpx.get(f"{api_url}/v1/leaderboards/{scope}", params={"window": window, "limit": top}).json()
            boards.append(board)
            out.write(f"\n{scope} / {window}  (as of {board['as_of']})\n")
            print_table(["rank", "user_id", "user_name", "score"],
                        [[e["rank"], e["user_id"], e["user_name"], e["score"]] for e in board["entries"]], out)
    return boards


def cmd_demo(args: argparse.Namespace) -> int:
    from streamboard.runtime.stack import LocalStack
    from streamboard.synthetic import generate

    tmp = None
    if not args.data_dir:
        tmp = tempfile.TemporaryDirectory(prefix="streamboard-demo-")
        args.data_dir = tmp.name
    settings = _settings(args)
    stack = LocalStack(settings)
    thread = threading.Thread(target=stack.run, name="stack", daemon=True)
    thread.start()
    if not stack.ready.wait(30):
        raise CliError("the local stack did not start within 30 s")
    print(f"local stack up: ingest {stack.ingest_url}, read API {stack.api_url}, data in {settings.data_dir}")
    try:
        events = generate(args.events)
        t0 = time.monotonic()
        totals = _post_all(stack.ingest_url, settings.api_key, events)
        post_s = time.monotonic() - t0
        print("refreshing leaderboards (drains the stream, delivery buffers and crawl first) ...", flush=True)
        t1 = time.monotonic()
        summary = _admin_refresh(stack.api_url, settings.admin_key)
        refresh_s = time.monotonic() - t1
        boards = print_boards(stack.api_url, top=args.top)
        files = list(Path(settings.data_dir, "lake").rglob("*.parquet"))
        # The lake is queryable as analysts would query it (Athena's views, here on DuckDB).
        _, counted = stack.backend.query.run(  # type: ignore[attr-defined]
            "SELECT count(*) FROM score_events")
        print("\nreport")
        print_table(["measure", "value"], [
            ["events posted", len(events)],
            ["accepted (202)", totals["accepted"]],
            ["rejected (kept in lake/bad-events)", totals["rejected"]],
            ["requests", totals["requests"]],
            ["ingest rate", f"{len(events) / post_s:,.0f} events/s"],
            ["unique score events in the lake", counted[0][0]],
            ["Parquet files in the lake", len(files)],
            ["boards written", summary.get("boards")],
            ["non-empty boards", sum(1 for b in boards if b["entries"])],
            ["refresh time", f"{refresh_s:.2f} s"],
        ])
        if stack.backend.usage is not None:
            print("\nbillable units (what AWS would bill this run; `streamboard usage` for any data dir)")
            print_table(["unit", "count", "per 1,000 events"], usage_rows(stack.backend.usage.report()))
        if args.keep_running:
            print(f"\nstill running (Ctrl-C to stop)\n  web console: {stack.api_url}/\n"
                  f"  try: curl {stack.api_url}/v1/leaderboards/overall", flush=True)
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        thread.join(60)
        if tmp is not None:
            tmp.cleanup()
    print("stopped cleanly")
    return 0


def usage_rows(report: dict[str, Any]) -> list[list[Any]]:
    """The usage report as table rows: each count, then each unit with its rate per 1,000 accepted events."""
    from streamboard.usage import COUNTS, per_thousand_events

    rates = per_thousand_events(report)
    rows: list[list[Any]] = [[name, f"{report[name]:,}", ""] for name in COUNTS]
    for name, n in report["units"].items():
        rows.append([name, f"{n:,}", f"{rates[name]:,.1f}" if name in rates else ""])
    return rows


def cmd_usage(args: argparse.Namespace) -> int:
    from streamboard.usage import Usage

    data_dir = Path(_settings(args).data_dir)
    if not (data_dir / "catalog.db").exists():
        raise CliError(f"no streamboard data in {data_dir} (give --data-dir)")
    report = Usage(data_dir / "usage.db").report()
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"billable units counted in {data_dir}, each by the AWS rule of the service it stands for")
    print_table(["measure", "count", "per 1,000 events"], usage_rows(report))
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    """Synthetic traffic against a running ingest API, bounded in events and seconds: a closed loop of
    ``--concurrency`` clients, or with ``--rate`` an open loop on a fixed schedule."""
    import statistics
    from urllib.parse import urlparse

    from streamboard.synthetic import generate

    host = urlparse(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        raise CliError(f"{args.url} is not on this machine; pass --allow-remote to load a remote deployment")
    if args.events <= 0 or args.batch <= 0 or args.seconds <= 0:
        raise CliError("--events, --batch and --seconds must be above 0")
    key = load_settings().api_key if args.key is None else args.key
    if args.rate is not None:
        return _open_loop(args, key)
    if args.spike is not None:
        raise CliError("--spike shapes an open loop: give --rate too (e.g. --rate 50 --spike 5@10)")
    events = generate(args.events, invalid_every=10**9, duplicate_every=10**9, seed=args.seed)
    latencies: list[float] = []
    started = time.monotonic()
    totals = _post_all(args.url, key, events, batch=args.batch, workers=args.concurrency or 8, label="load",
                       deadline=started + args.seconds, latencies=latencies)
    elapsed = time.monotonic() - started
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    if args.format == "json":
        print(json.dumps({"mode": "closed", "events_accepted": totals["accepted"], "requests": totals["requests"],
                          "events_per_s": round(totals["accepted"] / elapsed, 1),
                          "latency_ms": {"p50": round(qs[49] * 1000, 2), "p99": round(qs[98] * 1000, 2)},
                          "seconds": round(elapsed, 2)}, indent=2))
        return 0
    print_table(["measure", "value"], [
        ["events accepted", totals["accepted"]], ["requests", totals["requests"]],
        ["events/s", f"{totals['accepted'] / elapsed:,.0f}"],
        ["latency p50", f"{qs[49] * 1000:.1f} ms"], ["latency p99", f"{qs[98] * 1000:.1f} ms"],
        ["seconds", f"{elapsed:.1f}"],
    ])
    return 0


def _open_loop(args: argparse.Namespace, key: str) -> int:
    """``loadtest --rate``: requests on a fixed schedule, latency from each one's scheduled time."""
    import asyncio

    from streamboard.loadgen import parse_spike, phases, run_open_loop, schedule, summarize
    from streamboard.synthetic import generate

    try:
        spike = parse_spike(args.spike) if args.spike is not None else None
        plan = phases(args.rate, args.seconds, spike)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.timeout <= 0:
        raise CliError("--timeout must be above 0")
    planned = schedule(plan)
    max_requests = args.events // args.batch
    if max_requests == 0:
        raise CliError(f"--events {args.events} is fewer than one request of --batch {args.batch}")
    scheduled = planned[:max_requests]
    if len(scheduled) < len(planned):
        print(f"note: --events {args.events} allows {max_requests:,} requests of {args.batch}; the schedule stops "
              f"after {scheduled[-1][0]:.1f} s of its {args.seconds:g} s (raise --events to run all of it)",
              file=sys.stderr)
    events = generate(len(scheduled) * args.batch, invalid_every=10**9, duplicate_every=10**9, seed=args.seed)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    bodies = [encode({"events": events[i:i + args.batch]}).encode() for i in range(0, len(events), args.batch)]
    connections = args.concurrency or 64
    progress = Progress(len(scheduled), "load")
    run = asyncio.run(run_open_loop(f"{args.url.rstrip('/')}/v1/events", key, bodies, plan, scheduled,
                                    connections=connections, timeout=args.timeout,
                                    on_done=lambda: progress.advance(1)))
    rows = summarize(run)
    if run.max_send_lag > 0.05:
        run.notes.append(f"the load generator fell behind its schedule by up to {run.max_send_lag * 1000:,.0f} ms "
                         "(the latencies include that)")
    if run.not_sent:
        run.notes.append(f"{run.not_sent} scheduled requests were not sent: the run reached --seconds + --timeout")
    if args.format == "json":
        print(json.dumps({"mode": "open", "url": args.url, "rate": args.rate,
                          "spike": None if spike is None else {"factor": spike.factor, "seconds": spike.seconds},
                          "batch": args.batch, "connections": connections, "timeout_s": args.timeout,
                          "elapsed_s": round(run.elapsed, 2), "max_send_lag_ms": round(run.max_send_lag * 1000, 2),
                          "phases": rows, "notes": run.notes}, indent=2))
        return 0
    shape = f"{args.rate:g} requests/s for {args.seconds:g} s" + (
        f", {spike.factor:g}x for {spike.seconds:g} s in the middle" if spike else "")
    print(f"open loop: {shape}; {args.batch} events a request, up to {connections} connections; "
          "latency from each request's scheduled time")
    print_table(["phase", "seconds", "req/s offered", "sent", "2xx", "429", "503", "other", "errors",
                 "p50 ms", "p90 ms", "p99 ms", "max ms", "events accepted"],
                [[r["phase"], f"{r['seconds']:g}", f"{r['offered_rate']:g}",
                  r["sent"], r["2xx"], r["429"], r["503"], r["other"], r["errors"],
                  *(f"{r['latency_ms'][q]:,.1f}" for q in ("p50", "p90", "p99", "max")), r["events_accepted"]]
                 for r in rows])
    for note in run.notes:
        print(f"note: {note}")
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from streamboard.capacity import PlanError, Traffic, default_rates, project, rates_from_usage

    rates = default_rates()
    try:
        if args.from_data_dir is not None:
            from streamboard.usage import Usage

            data_dir = Path(args.from_data_dir)
            if not (data_dir / "usage.db").exists():
                raise CliError(f"no usage counters in {data_dir} (run traffic through `streamboard up --data-dir`"
                               " first)")
            if args.events_per_request is not None or args.score_share is not None:
                raise CliError("--from-data-dir takes events per request and the score share from that run: "
                               "drop --events-per-request / --score-share")
            rates = rates_from_usage(Usage(data_dir / "usage.db").report(), str(data_dir))
        traffic = Traffic(args.peak, events_per_request=args.events_per_request or 100,
                          score_share=0.1 if args.score_share is None else args.score_share, users=args.users,
                          month=args.month, average_share_of_peak=args.average_share,
                          players_per_request=args.players_per_request, reads_per_second=args.reads_per_second,
                          cache_hit_ratio=args.cache_hit_ratio)
        result = project(traffic, rates)
    except PlanError as exc:
        raise CliError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    t = result["traffic"]
    print(f"peak {t['peak_events_per_s']:,.0f} events/s, {t['events_per_request']} a request, "
          f"{t['score_share']:.0%} score, {t['users']:,} users, month {t['month']}; "
          f"{result['monthly_events']:,} events a month ({result['monthly_events_source']})")
    print(f"units per event from {result['units_from']}\n")
    rows: list[list[Any]] = []
    for s in result["stages"]:
        rows.append([s["stage"], "", f"{s['monthly_usd']:,.2f}", f"{s['usd_per_billion_events']:,.2f}", ""])
        rows.extend([f"  {line['unit']}", f"{line['per_month']:,.1f}", f"{line['monthly_usd']:,.2f}", "",
                     _short(line["source"])] for line in s["lines"])
    print_table(["stage / unit", "units a month", "USD / month", "USD / 1e9 events", "source (--format json: in full)"],
                rows)
    print("\nat peak:")
    for s in result["stages"]:
        print(f"  {s['stage']}: {s['needs']}")
    print(f"\ntotal about USD {result['total_monthly_usd']:,.2f} a month, USD {result['usd_per_billion_events']:,.2f}"
          f" per billion events ({result['prices']['source']})")
    reads = result.get("read_path")
    if reads:
        by = reads["usd_per_million_reads_by_service"]
        print(f"read path: USD {reads['usd_per_million_reads']:.4f} per million reads "
              f"({', '.join(f'{k} {v:.4f}' for k, v in by.items())}), of which the origin (API Gateway, Lambda, "
              f"DynamoDB, for the {1 - reads['cache_hit_ratio']:.0%} the CDN misses) USD "
              f"{reads['origin_usd_per_million_reads']:.4f} ({reads['origin_share']:.1%}); plus USD "
              f"{reads['fixed_monthly_usd']:,.2f} a month for the web ACL")
    return 0


def _short(source: str, width: int = 72) -> str:
    """A source's first clause, cut to fit a table column."""
    first = source.split(";")[0]
    return first if len(first) <= width else first[:width - 3] + "..."


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc, to the clock tick), or None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def cmd_refresh(args: argparse.Namespace) -> int:
    from streamboard.runtime.stack import DataDirLock, Pipeline

    settings = _settings(args)
    admin_key = settings.admin_key
    api_url = args.api_url
    data_dir = Path(settings.data_dir)
    if api_url is None and DataDirLock.held(data_dir):
        api_url = json.loads((data_dir / "stack.json").read_text())["api_url"]
    if api_url:
        if args.full:
            raise CliError("--full runs without a stack: stop `streamboard up` on this data dir first")
        print(f"refreshing through the running stack at {api_url} ...", file=sys.stderr, flush=True)
        summary = _admin_refresh(api_url, admin_key)
    else:
        if not (data_dir / "catalog.db").exists():
            raise CliError(f"no streamboard data in {data_dir} (give --data-dir, or start `streamboard up`)")
        lock = DataDirLock(data_dir)
        lock.acquire()
        try:
            what = "rebuilding the refresh state of" if args.full else "refreshing"
            print(f"{what} {data_dir} (no stack running) ...", file=sys.stderr, flush=True)
            pipeline = Pipeline(settings)
            age = process_age()
            summary = pipeline.refresh(full=args.full)
            if age is not None:  # the start-up before the refresh's own clock (its seconds) began
                summary["process_age_s"] = round(age, 2)
        finally:
            lock.release()
    print(json.dumps(summary, indent=2))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.backend == "aws":
        columns, rows = _sql_on_aws(settings, args.query)
    else:
        from streamboard.adapters.local.catalog import LocalCatalog
        from streamboard.adapters.local.query import LocalQueryEngine

        data_dir = Path(settings.data_dir)
        if not (data_dir / "catalog.db").exists():
            raise CliError(f"no streamboard lake in {data_dir} (give --data-dir)")
        engine = LocalQueryEngine(data_dir / "lake", LocalCatalog(data_dir / "catalog.db"))
        columns, rows = engine.run(args.query)
    if args.format == "json":
        for r in rows:
            sys.stdout.write(json.dumps(dict(zip(columns, r, strict=True)), default=_json_default) + "\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_json_default(v) if isinstance(v, dt.datetime) else v for v in r])
    else:
        print_table(columns, rows, max_rows=args.max_rows)
        print(f"({len(rows)} rows)")
    return 0


def _sql_on_aws(settings: Settings, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The deployed lake through Athena (workgroup, database and result location from the settings); against
    an AWS-compatible endpoint (moto runs no SQL), DuckDB over the local mirror of the cataloged S3 partitions
    that ``up --backend aws`` keeps, said on stderr."""
    from streamboard.adapters.aws.clients import Clients

    clients = Clients(settings.region, settings.endpoint_url)
    if settings.endpoint_url:
        from streamboard.adapters.aws.catalog import GlueCatalog
        from streamboard.adapters.aws.lake import S3Lake
        from streamboard.runtime.aws_emulation import MirroredQueryEngine

        _emulator_credentials()
        mirror_dir = Path(settings.data_dir) / "lake-mirror"
        print(f"{settings.endpoint_url} runs no SQL: querying the cataloged S3 partitions through a local mirror "
              f"({mirror_dir}) with DuckDB", file=sys.stderr)
        lake = S3Lake(clients, settings.lake_bucket, settings.lake_prefix)
        mirror = MirroredQueryEngine(lake, GlueCatalog(clients, settings.glue_database, lake.location), mirror_dir)
        mirror.sync()
        return mirror.engine.run(query)
    from streamboard.adapters.aws.query import AthenaQueryEngine

    athena = AthenaQueryEngine(clients, settings.athena_workgroup, settings.glue_database, settings.athena_output)
    waited: list[str] = []

    def progress(status: Any) -> None:
        if not waited:
            print(f"Athena query {status.query_id} {status.state.lower()} in workgroup {settings.athena_workgroup}"
                  "...", file=sys.stderr)
        waited.append(status.state)

    return athena.run(query, on_wait=progress)


def cmd_redrive(args: argparse.Namespace) -> int:
    from processors.redrive import redrive
    from streamboard.backend import build_local_backend

    settings = _settings(args)
    if not (Path(settings.data_dir) / "queues.db").exists():
        raise CliError(f"no streamboard data in {settings.data_dir} (give --data-dir)")
    backend = build_local_backend(settings)
    depth = backend.dlq.depth()
    if depth == 0:
        print("the dead-letter queue is empty; nothing to redrive")
        return 0
    progress = Progress(depth, "redriving")
    summary = redrive(backend, progress=progress.advance)
    print(json.dumps(summary, indent=2))
    return 0 if summary["remaining"] == 0 else 1


def cmd_apps_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    registry: Any
    if settings.backend == "aws":
        # The deployed app registry (DynamoDB table $STREAMBOARD_APPS_TABLE), with the caller's credentials.
        from streamboard.adapters.aws.clients import Clients
        from streamboard.adapters.aws.stores import DynamoAppRegistry

        registry = DynamoAppRegistry(Clients(settings.region, settings.endpoint_url), settings.apps_table)
    else:
        from streamboard.adapters.local.stores import LocalAppRegistry

        registry = LocalAppRegistry(Path(settings.data_dir) / "apps.db")
    app, key = registry.create(args.name, role=args.role)
    print(f"created {app.role} app {app.app_id!r}; its API key (shown once, stored only as a hash):")
    print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamboard", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def data_dir(sp: argparse.ArgumentParser, default_note: str = "./data or $STREAMBOARD_DATA_DIR") -> None:
        sp.add_argument("--data-dir", help=f"where the lake, stream and stores live (default {default_note})")

    def ports(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--ingest-port", type=int, help="ingest API port (default 8080)")
        sp.add_argument("--api-port", type=int, help="read API port (default 8081)")
        sp.add_argument("--refresh-seconds", type=float, help="scheduled refresh interval (default 3600)")
        sp.add_argument("--buffer-seconds", type=float, help="delivery buffer interval (default 60)")

    up = sub.add_parser("up", help="run the local stack until SIGINT/SIGTERM")
    data_dir(up)
    ports(up)
    up.add_argument("--backend", choices=("local", "aws"),
                    help="local (embedded, default) or aws (boto3 adapters; with --endpoint-url, an AWS-compatible "
                         "endpoint such as a moto server, where the stack creates the resources it needs)")
    up.add_argument("--endpoint-url", help="AWS-compatible endpoint for --backend aws (e.g. http://127.0.0.1:5000)")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="local stack + synthetic traffic + refresh + printed boards")
    data_dir(demo, "a temporary directory")
    ports(demo)
    demo.add_argument("--events", type=int, default=5000, help="how many events to post (default 5000)")
    demo.add_argument("--top", type=int, default=5, help="rows to print per board (default 5)")
    demo.add_argument("--keep-running", action="store_true", help="keep the stack up after the report")
    demo.set_defaults(func=cmd_demo)

    refresh = sub.add_parser("refresh", help="refresh every leaderboard now")
    data_dir(refresh)
    refresh.add_argument("--api-url", help="read API of a running stack (found from --data-dir by default)")
    refresh.add_argument("--full", action="store_true",
                         help="forget the refresh's state and build it again from the whole lake (recovery; "
                              "boards equal to the incremental ones); offline only")
    refresh.set_defaults(func=cmd_refresh)

    sql = sub.add_parser("sql", help="run Trino SQL on the lake (tables and views of athena_sql/): the local one, "
                                     "or with --backend aws the deployed one through Athena")
    sql.add_argument("query", help='e.g. "SELECT * FROM leaderboards LIMIT 10"')
    data_dir(sql)
    sql.add_argument("--backend", choices=("local", "aws"), default="local",
                     help="local: the data dir's lake (default); aws: Athena, with the workgroup, database and "
                          "result location of the STREAMBOARD_* settings")
    sql.add_argument("--endpoint-url", help="an AWS-compatible endpoint (moto) for --backend aws: runs no SQL, so "
                                            "the query reads a local mirror of its lake under --data-dir")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table (default 100)")
    sql.set_defaults(func=cmd_sql)

    us = sub.add_parser("usage", help="the billable units the local stack counted, by the AWS rules")
    data_dir(us)
    us.add_argument("--format", choices=("table", "json"), default="table")
    us.set_defaults(func=cmd_usage)

    rd = sub.add_parser("redrive", help="replay the ingest dead-letter queue into the stream")
    data_dir(rd)
    rd.set_defaults(func=cmd_redrive)

    lt = sub.add_parser("loadtest", help="synthetic load against a running ingest API (bounded)")
    lt.add_argument("--url", default="http://127.0.0.1:8080", help="ingest API (default http://127.0.0.1:8080)")
    lt.add_argument("--events", type=int, default=20_000, help="events to send at most (default 20000)")
    lt.add_argument("--seconds", type=float, default=60,
                    help="stop sending after this long (default 60); with --rate, the schedule's length")
    lt.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    lt.add_argument("--concurrency", type=int,
                    help="closed loop: concurrent clients (default 8); with --rate: connections at most (default 64)")
    lt.add_argument("--rate", type=float, metavar="R",
                    help="open loop: R requests/s on a fixed schedule whatever the answers, latency counted from "
                         "each request's scheduled time (queueing included)")
    lt.add_argument("--spike", metavar="FACTOR@SECONDS",
                    help="with --rate: FACTOR times the rate for SECONDS in the middle of the run (e.g. 5@10)")
    lt.add_argument("--timeout", type=float, default=10.0,
                    help="with --rate: seconds a request may take, and how long after --seconds the run may "
                         "wait for the last answers (default 10)")
    lt.add_argument("--key", help="API key (default $STREAMBOARD_API_KEY or local-dev-key)")
    lt.add_argument("--seed", type=int, default=11)
    lt.add_argument("--allow-remote", action="store_true", help="allow a URL that is not on this machine")
    lt.add_argument("--format", choices=("table", "json"), default="table")
    lt.set_defaults(func=cmd_loadtest)

    cap = sub.add_parser("capacity", help="throughput and cost projection at every stage for a peak load")
    cap.add_argument("--peak", type=float, required=True, help="peak events per second")
    cap.add_argument("--from-data-dir", help="take the units per event from the usage counted in this data dir "
                     "(default: the documented defaults in streamboard/capacity.py)")
    cap.add_argument("--events-per-request", type=int, help="events per ingest request (default 100)")
    cap.add_argument("--score-share", type=float, help="share of events that are `score` (default 0.1)")
    cap.add_argument("--users", type=int, default=1_000_000, help="distinct users (default 1000000)")
    cap.add_argument("--players-per-request", type=int, default=1,
                     help="players whose events one request carries (default 1: a game client posts its own "
                          "player's; a game server batching many players' events: more)")
    cap.add_argument("--month", type=int, default=1, help="months since launch: the lake and the refresh state "
                     "then (default 1)")
    cap.add_argument("--average-share", type=float, default=0.25,
                     help="average load as a share of the peak (default 0.25)")
    cap.add_argument("--reads-per-second", type=float, default=0.0,
                     help="board reads per second at peak (GET /v1/leaderboards/...), a month at --average-share "
                          "of it; adds the read path: CloudFront, WAF, and the origin for the misses (default 0: "
                          "no read path)")
    cap.add_argument("--cache-hit-ratio", type=float, default=0.9,
                     help="share of reads the CDN answers from its cache (default 0.9)")
    cap.add_argument("--format", choices=("table", "json"), default="table")
    cap.set_defaults(func=cmd_capacity)

    apps = sub.add_parser("apps", help="manage apps and their API keys")
    apps_sub = apps.add_subparsers(dest="apps_command", required=True)
    create = apps_sub.add_parser("create", help="create an app and print its new API key once")
    create.add_argument("name")
    create.add_argument("--role", choices=("app", "admin"), default="app")
    create.add_argument("--backend", choices=("local", "aws"),
                        help="aws: the deployed registry (table $STREAMBOARD_APPS_TABLE, region $AWS_REGION)")
    create.add_argument("--endpoint-url", help="AWS-compatible endpoint for --backend aws")
    data_dir(create)
    create.set_defaults(func=cmd_apps_create)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("STREAMBOARD_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_repeat_filter()  # the same error again and again is one line now and then, not a flood
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, StreamboardError, ConfigError) as exc:
        print(f"streamboard: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        httpx = sys.modules.get("httpx")  # imported by the commands that make HTTP requests
        if httpx is None or not isinstance(exc, httpx.HTTPError):
            raise
        print(f"streamboard: error: HTTP request failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
