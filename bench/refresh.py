"""Leaderboard refresh benchmark (issue 10): full and incremental refresh against a ceiling in the same run.

For each lake size (rows, duplicate deliveries included) it builds a synthetic score lake in the local
stack's layout (``bench.synthetic_lake``; not measured), then, each in a subprocess whose wall time and
peak RSS are measured (``os.wait4``):

1. the full build: ``streamboard refresh --full --data-dir D`` (plain ``refresh`` while ``--full`` does not
   exist; the results say which ran);
2. the ceiling: one bare DuckDB query over the same Parquet files (memory_limit 3GB, 2 threads, a temp
   directory) computing what a full build computes at the same as_of: deliveries deduplicated by event_id
   (the first by received_at; a later delivery counts again only when it arrived more than 30 days after the
   previous one), a challenge counted at its first completion (earliest ts, then smallest event_id), points
   per user for overall and each category over all / 30d / 365d, ranked, the top 1000 of each board with
   the latest user_name. Its boards are compared with those the full build wrote;
3. 1% more data in a new arrival hour (``append_new_data``), then the incremental refresh:
   ``streamboard refresh --data-dir D``.
4. 40,000 more events (the same at every size), then another incremental refresh: how the refresh grows
   with history alone (the 1% append grows with the lake as well). Not one of the issue's targets.

Ratios (the issue's targets): incremental / full at 20M (<= 0.1); incremental at 20M / at 4M (<= 1.5);
bare query / full build, both wall seconds, at each size (>= 0.5); the largest peak RSS of a refresh
(<= 4096 MB). Results go to bench/results/refresh.json and bench/results/refresh.md; temporary lakes are
deleted at the end unless --keep.

Usage: python -m bench.refresh [--sizes 4000000,20000000,50000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = (4_000_000, 20_000_000, 50_000_000)
APPEND_SHARE = 0.01
# A second append of the same size at every lake size: the incremental refresh's growth with history alone
# (the 1% append grows with the lake too).
FIXED_APPEND = 40_000
TOP = 1000
DEDUPE_HORIZON_DAYS = 30
BARE_MEMORY_LIMIT = "3GB"
BARE_THREADS = 2
RSS_TARGET_MB = 4096
# The targets, named by the sizes they compare.
SMALL, LARGE = 4_000_000, 20_000_000

# --- the ceiling: one bare DuckDB query -------------------------------------------------------------------

BARE_SQL = """
WITH deliveries AS (
    SELECT event_id, user_id, category, points, challenge_id, user_name, ts, received_at,
           lag(received_at) OVER (PARTITION BY event_id ORDER BY received_at) AS previous_delivery
    FROM read_parquet({files}, hive_partitioning = false)
),
counted_deliveries AS (
    SELECT event_id, user_id, category, points, challenge_id, user_name, ts
    FROM deliveries
    WHERE previous_delivery IS NULL OR received_at > previous_delivery + INTERVAL {horizon} DAY
),
counted AS (
    SELECT user_id, category, points, ts FROM counted_deliveries WHERE challenge_id IS NULL
    UNION ALL
    SELECT user_id, category, points, ts FROM counted_deliveries
    WHERE challenge_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY user_id, challenge_id ORDER BY ts, event_id) = 1
),
per_category AS (
    SELECT user_id, category,
           sum(points) AS s_all,
           sum(points) FILTER (WHERE ts > {as_of} - INTERVAL 30 DAY) AS s_30d,
           sum(points) FILTER (WHERE ts > {as_of} - INTERVAL 365 DAY) AS s_365d
    FROM counted
    WHERE ts <= {as_of}
    GROUP BY user_id, category
),
scoped AS (
    SELECT category AS scope, user_id, s_all, s_30d, s_365d FROM per_category
    UNION ALL
    SELECT 'overall', user_id, sum(s_all), sum(s_30d), sum(s_365d) FROM per_category GROUP BY user_id
),
scores AS (
    UNPIVOT scoped ON s_all AS 'all', s_30d AS '30d', s_365d AS '365d' INTO NAME time_window VALUE score
),
ranked AS MATERIALIZED (
    SELECT scope, time_window, user_id, CAST(score AS BIGINT) AS score,
           rank() OVER (PARTITION BY scope, time_window ORDER BY score DESC) AS board_rank
    FROM scores
    QUALIFY board_rank <= {top}
),
names AS (
    SELECT user_id, arg_max(user_name, (ts, event_id)) AS user_name
    FROM counted_deliveries
    WHERE user_name IS NOT NULL AND user_id IN (SELECT user_id FROM ranked)
    GROUP BY user_id
)
SELECT r.scope, r.time_window, r.board_rank, r.user_id, n.user_name, r.score
FROM ranked AS r LEFT JOIN names AS n ON n.user_id = r.user_id
ORDER BY r.scope, r.time_window, r.board_rank, r.user_id
"""


def bare_query(data_dir: Path, as_of: str, temp_dir: Path) -> dict[str, Any]:
    """Run the ceiling query (in the subprocess ``--bare-query``); returns its seconds and its boards."""
    import duckdb

    files = sorted(str(p) for p in (data_dir / "lake" / "score").glob("year=*/month=*/day=*/hour=*/*.parquet"))
    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute(f"SET memory_limit='{BARE_MEMORY_LIMIT}'")
        con.execute(f"SET threads={BARE_THREADS}")
        con.execute(f"SET temp_directory='{temp_dir}'")
        as_of_sql = f"TIMESTAMP '{as_of.removesuffix('Z').replace('T', ' ')}'"
        sql = BARE_SQL.format(files="[" + ", ".join(f"'{f}'" for f in files) + "]", horizon=DEDUPE_HORIZON_DAYS,
                              as_of=as_of_sql, top=TOP)
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    boards: dict[str, list[list[Any]]] = {}
    for scope, window, rank, user_id, user_name, score in rows:
        boards.setdefault(f"{scope}/{window}", []).append([int(rank), user_id, user_name, int(score)])
    return {"seconds": round(time.perf_counter() - started, 3), "files": len(files), "rows": len(rows),
            "as_of": as_of, "boards": boards}


# --- measured subprocesses --------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The caller's environment without STREAMBOARD_* settings (a backend, a data dir or a log level from
    the shell would change what is measured)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMBOARD_")}


def measured(argv: list[str], timeout: float, log_dir: Path, name: str, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``argv`` to the end (killed, with its process group, after ``timeout`` s or on any error here);
    returns wall seconds, peak RSS (``ru_maxrss`` from ``wait4``: the child's, or its largest descendant's)
    and stdout. Raises when it fails or times out. The files written before it (a lake just built, the state
    of the refresh before) are flushed to disk first: on the 20M lake, a step run while the kernel wrote
    back 4 GB written just before took 1.2-1.5 s instead of 0.6-0.7 s (step 01 of the incremental refresh,
    DuckDB's profile: the same CPU time, the rest waiting), a cost of the step before, not of the one
    measured."""
    os.sync()
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    timed_out = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def on_timeout() -> None:
        timed_out.set()
        kill()

    timer = threading.Timer(timeout, on_timeout)
    timer.start()
    tree = TreeMemory(proc.pid)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
        tree.stop()
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
    stdout = out_path.read_text(errors="replace")
    if timed_out.is_set() or proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        why = f"timed out after {timeout:.0f} s" if timed_out.is_set() else f"exited {proc.returncode}"
        raise RuntimeError(f"{' '.join(argv)} {why}:\n{tail}")
    # the refresh may write its profiles on a worker process meanwhile: its memory is the tree's, sampled, and
    # never less than the peak of its largest process (VmHWM, exact per process). Not wait4's ru_maxrss: Linux
    # carries it over fork and exec, so a child of a large process starts at that process's RSS (kept apart,
    # as wait4_maxrss_mb; without /proc it is the figure)
    largest = tree.largest_hwm_kb or usage.ru_maxrss
    return {"command": " ".join(argv), "wall_seconds": round(elapsed, 3),
            "peak_rss_mb": round(max(largest, tree.peak_kb) / 1024, 1),
            "largest_process_peak_rss_mb": round(largest / 1024, 1),
            "tree_peak_rss_mb": round(tree.peak_kb / 1024, 1), "tree_processes": tree.most,
            "wait4_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "stdout": stdout}


class TreeMemory:
    """The summed RSS of a process and its descendants (its session: ``start_new_session``), sampled every
    ``interval`` s from /proc until :meth:`stop`: the peak of the sums (KB), the most processes seen, and the
    largest peak of any one of them (``VmHWM``, which the kernel keeps per process: a spike between samples
    is in it)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kb, self.most, self.largest_hwm_kb = 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> tuple[int, int]:
        total, count, hwm = 0, 0, 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) != self.pid:  # its session id (the 4th field after the name: pgrp, session)
                    continue
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    fields = dict(line.split(b":", 1) for line in f if line.startswith((b"VmRSS:", b"VmHWM:")))
                rss = int(fields.get(b"VmRSS", b"0 kB").split()[0])
                hwm = max(hwm, int(fields.get(b"VmHWM", b"0 kB").split()[0]))
            except (OSError, IndexError, ValueError):
                continue
            total, count = total + rss, count + 1
        self.largest_hwm_kb = max(self.largest_hwm_kb, hwm)
        return total, count

    def _run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        while not self._stop.is_set():
            total, count = self._sample()
            self.peak_kb, self.most = max(self.peak_kb, total), max(self.most, count)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def parse_summary(stdout: str) -> dict[str, Any]:
    """The JSON object ``streamboard refresh`` prints (the first one on stdout); {} when there is none."""
    start = stdout.find("{")
    if start < 0:
        return {}
    try:
        obj, _ = json.JSONDecoder().raw_decode(stdout[start:])
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def has_full_flag(checkout: Path) -> bool:
    done = subprocess.run([sys.executable, "-m", "streamboard.cli", "refresh", "--help"], cwd=checkout, env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    return "--full" in done.stdout


def refresh(data_dir: Path, checkout: Path, full: bool, timeout: float, log_dir: Path, name: str) -> dict[str, Any]:
    """``streamboard refresh`` as the checkout's code runs it (``-m`` from its root imports its own package)."""
    argv = [sys.executable, "-m", "streamboard.cli", "refresh", *(["--full"] if full else []),
            "--data-dir", str(data_dir)]
    run = measured(argv, timeout, log_dir, name, cwd=checkout)
    summary = parse_summary(run.pop("stdout"))
    return {**run, "summary": summary, "seconds_reported": summary.get("seconds"),
            "boards_served_seconds": boards_served(run, summary),
            "bytes_read": summary.get("bytes_read"), "billed_bytes": last_refresh_billed(data_dir),
            "input_partitions": summary.get("input_partitions"),
            "boards": summary.get("boards"), "per_player": per_player(summary)}


def last_refresh_billed(data_dir: Path) -> int | None:
    """What Athena would bill for the data dir's last refresh, its statements together (the usage counter
    ``athena_bytes_scanned_last_refresh``: each statement's reads as Trino runs it, at least 10 MB each)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'usage.db'}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT n FROM counters WHERE name = 'athena_bytes_scanned_last_refresh'").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])


def per_player(summary: dict[str, Any]) -> dict[str, Any]:
    """What a refresh spent on its per-player writes (the profiles' reconcile, every player's rank): their
    queries' steps and their writes, in seconds, and the players each covered. The rest of the refresh is the
    boards' path: the state steps, the snapshot, the pruning."""
    steps = summary.get("steps", {})
    profiles, ranks = summary.get("profiles", {}), summary.get("ranks", {})
    queries = sum(v for k, v in steps.items() if k.startswith("profile_reconcile") or k == "rank_scores")
    # the profiles may be written on a worker process while the ranks are: the wall time of the two together,
    # when the refresh reports it (the sum of their parts before it did)
    wall = summary.get("per_player_s")
    if wall is None:
        wall = queries + profiles.get("seconds", 0) + ranks.get("seconds", 0)
    return {"seconds": round(wall, 3),
            "queries_seconds": round(queries, 3), "profiles_seconds": profiles.get("seconds"),
            "ranks_seconds": ranks.get("seconds"), "profile_players": profiles.get("players"),
            "rank_players": ranks.get("users"), "rank_nodes": ranks.get("nodes")}


def boards_served(run: dict[str, Any], summary: dict[str, Any]) -> float | None:
    """When the refresh's boards were served, in seconds from its process's start: the refresh publishes them
    once their snapshot ran, before its per-player writes (``boards_published_s``, from the refresh's own
    start), and its process says how old it was then (``process_age_s``: the start-up). A summary without that
    (a checkout before it) counts the start-up as the wall time less the summary's ``seconds``, which also
    counts the process's exit (measured after incremental refreshes: 0.18-0.24 s at 4M, 0.27-0.33 s at 20M)."""
    published = summary.get("boards_published_s")
    if published is None:
        return None
    if summary.get("process_age_s") is not None:
        return round(float(summary["process_age_s"]) + float(published), 3)
    if "wall_seconds" not in run or summary.get("seconds") is None:
        return None
    return round(float(run["wall_seconds"]) - float(summary["seconds"]) + float(published), 3)


def boards_path_seconds(r: dict[str, Any]) -> float | None:
    """A refresh's wall time less its per-player writes."""
    if "wall_seconds" not in r:
        return None
    return round(float(r["wall_seconds"]) - float((r.get("per_player") or {}).get("seconds", 0)), 3)


def written_boards(data_dir: Path) -> tuple[str | None, dict[str, list[list[Any]]]]:
    """The boards the last refresh wrote (through the board store port), with their as_of."""
    from streamboard.adapters.local.stores import LocalBoardStore

    store = LocalBoardStore(data_dir / "boards.db")
    boards: dict[str, list[list[Any]]] = {}
    as_of = None
    for scope in store.scopes():
        for window in ("all", "30d", "365d"):
            board = store.get_board(scope, window, 1_000_000)
            if board is None:
                continue
            as_of = as_of or board.as_of
            if board.entries:
                boards[f"{scope}/{window}"] = [[e.rank, e.user_id, e.user_name, e.score] for e in board.entries]
    return as_of, boards


def compare(ours: dict[str, list[list[Any]]], bare: dict[str, list[list[Any]]]) -> dict[str, Any]:
    """Whether a refresh's boards equal the bare query's, entry by entry (rank, user, name, score)."""
    keys = sorted(set(ours) | set(bare))
    differ = [k for k in keys if sorted(map(tuple, ours.get(k, []))) != sorted(map(tuple, bare.get(k, [])))]
    return {"boards": len(keys), "entries": sum(len(v) for v in bare.values()), "boards_differing": differ,
            "same": not differ}


# --- one size ---------------------------------------------------------------------------------------------


def _attempt(step: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A measured step, or ``{"error": ...}`` when it failed: the other steps still run and are reported."""
    try:
        return fn()
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        print(f"{step} failed: {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)[-3000:]}


def ceiling(data_dir: Path, as_of: str | None, root: Path, logs: Path, name: str, timeout: float
            ) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
    """The bare query in a subprocess, measured like a refresh; returns its figures and its boards."""
    temp = root / f"duckdb-temp-{name}"
    temp.mkdir(parents=True, exist_ok=True)
    as_of = as_of or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        run = measured([sys.executable, "-m", "bench.refresh", "--bare-query", str(data_dir), "--as-of", as_of,
                        "--temp-dir", str(temp)], timeout, logs, name)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    out = json.loads(run.pop("stdout"))
    return ({**run, "seconds_in_query": out["seconds"], "files": out["files"], "rows": out["rows"],
             "as_of": out["as_of"], "memory_limit": BARE_MEMORY_LIMIT, "threads": BARE_THREADS}, out["boards"])


def checked(data_dir: Path, root: Path, logs: Path, name: str, timeout: float) -> dict[str, Any]:
    """The ceiling at the as_of of the boards the last refresh wrote, and whether those boards equal its own."""
    try:
        as_of, ours = written_boards(data_dir)
    except Exception as exc:  # noqa: BLE001 - the board store is being rewritten too: report, do not stop
        as_of, ours = None, {}
        why = f"could not read the boards: {exc}"
    else:
        why = "no board written"
    bare, theirs = ceiling(data_dir, as_of, root, logs, name, timeout)
    bare["boards_check"] = compare(ours, theirs) if as_of else {"same": None, "why": why}
    return bare


def measure_size(events: int, root: Path, checkout: Path, full_flag: bool, timeout: float, seed: int
                 ) -> dict[str, Any]:
    from bench.synthetic_lake import append_new_data, build_lake, lake_bytes

    data_dir, logs = root / f"lake-{events}", root / f"logs-{events}"
    logs.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def figures(r: dict[str, Any]) -> str:
        return "failed" if "error" in r else f"{r['wall_seconds']} s, {r['peak_rss_mb']} MB"

    say(f"--- {events:,} events: building the lake in {data_dir}")
    other = None if checkout == ROOT else checkout  # that checkout's code registers the partitions too
    built = build_lake(data_dir, events, seed=seed, checkout=other)
    say(f"built in {built['seconds']} s ({built['parquet_bytes'] / 1e6:,.0f} MB of Parquet); full refresh ...")
    full = _attempt("full refresh", lambda: refresh(data_dir, checkout, full_flag, timeout, logs, "full"))
    say(f"full: {figures(full)}; bare query ...")
    bare = _attempt("bare query", lambda: checked(data_dir, root, logs, "bare", timeout))
    say(f"bare: {figures(bare)}, boards equal the full build's: {bare.get('boards_check', {}).get('same')}; "
        f"appending {APPEND_SHARE:.0%} ...")
    appended = append_new_data(data_dir, max(1, round(events * APPEND_SHARE)), checkout=other)
    incremental = _attempt("incremental refresh",
                           lambda: refresh(data_dir, checkout, False, timeout, logs, "incremental"))
    say(f"incremental: {figures(incremental)}; bare query after the append (a check, not a figure) ...")
    after = _attempt("bare query after the append", lambda: checked(data_dir, root, logs, "bare-after", timeout))
    say(f"boards after the append equal the bare query's: {after.get('boards_check', {}).get('same')}; "
        f"appending {FIXED_APPEND:,} more ...")
    append_new_data(data_dir, FIXED_APPEND, checkout=other)
    fixed = _attempt("incremental refresh after a fixed append",
                     lambda: refresh(data_dir, checkout, False, timeout, logs, "incremental-fixed"))
    say(f"incremental after {FIXED_APPEND:,} new events: {figures(fixed)}")
    files, size = lake_bytes(data_dir)
    return {
        "events": built["events"], "unique_events": built["unique_events"], "partitions": built["partitions"],
        "parquet_files": built["files"], "parquet_bytes": built["parquet_bytes"],
        "build_seconds": built["seconds"], "build": built,
        "full": full, "bare": bare, "appended": appended, "incremental": incremental,
        "incremental_fixed": fixed,
        "check_after_append": after, "after_append": {"parquet_files": files, "parquet_bytes": size},
        "ratios": {"incremental_vs_full": _ratio(incremental.get("wall_seconds"), full.get("wall_seconds")),
                   "bare_vs_full": _ratio(bare.get("wall_seconds"), full.get("wall_seconds")),
                   # without the per-player writes (profiles, ranks), which scale with the players a batch
                   # touched: the boards' path alone
                   "boards_path_incremental_vs_full": _ratio(boards_path_seconds(incremental),
                                                             boards_path_seconds(full)),
                   "bare_vs_boards_path_full": _ratio(bare.get("wall_seconds"), boards_path_seconds(full)),
                   # when the boards were served (published before the per-player writes)
                   "boards_served_incremental_vs_full": _ratio(incremental.get("boards_served_seconds"),
                                                               full.get("boards_served_seconds")),
                   "bare_vs_boards_served_full": _ratio(bare.get("wall_seconds"), full.get("boards_served_seconds"))},
    }


def _secs(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} s"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _growth(large: dict[str, Any], small: dict[str, Any], key: str = "incremental") -> float | None:
    return _ratio(large.get(key, {}).get("wall_seconds"), small.get(key, {}).get("wall_seconds"))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's ratios, from the sizes it names when they were run (else from the smallest and largest)."""
    by_size = {r["events"]: r for r in runs}
    small, large = (by_size[SMALL], by_size[LARGE]) if SMALL in by_size and LARGE in by_size else (runs[0], runs[-1])
    refresh_rss = [r[k]["peak_rss_mb"] for r in runs for k in ("full", "incremental", "incremental_fixed")
                   if "peak_rss_mb" in r.get(k, {})]
    bare_rss = [r["bare"]["peak_rss_mb"] for r in runs if "peak_rss_mb" in r["bare"]]
    checks = [r[k].get("boards_check", {}).get("same") for r in runs for k in ("bare", "check_after_append")]
    failed = [f"{r['events']}: {k}" for r in runs for k in ("full", "bare", "incremental", "check_after_append")
              if "error" in r[k]]
    return {
        "sizes_compared": [small["events"], large["events"]],
        "incremental_vs_full": {"value": large["ratios"]["incremental_vs_full"], "at": large["events"],
                                "target": "<= 0.1"},
        "incremental_growth": {"value": _growth(large, small), "of": [large["events"], small["events"]],
                               "target": "<= 1.5"},
        "incremental_fixed_growth": {"value": _growth(large, small, "incremental_fixed"),
                                     "of": [large["events"], small["events"]], "new_events": FIXED_APPEND},
        "bare_vs_full": {"values": {str(r["events"]): r["ratios"]["bare_vs_full"] for r in runs}, "target": ">= 0.5"},
        # the same targets until the boards were served (before the per-player writes, which follow the players
        # a batch touched: 1% new data touches more of them as the lake grows)
        "served": {
            "incremental_vs_full": large["ratios"].get("boards_served_incremental_vs_full"),
            "incremental_growth": _ratio(large["incremental"].get("boards_served_seconds"),
                                         small["incremental"].get("boards_served_seconds")),
            "incremental_fixed_growth": _ratio(large.get("incremental_fixed", {}).get("boards_served_seconds"),
                                               small.get("incremental_fixed", {}).get("boards_served_seconds")),
            "bare_vs_full": {str(r["events"]): r["ratios"].get("bare_vs_boards_served_full") for r in runs},
        },
        "max_refresh_peak_rss_mb": {"value": max(refresh_rss, default=None), "target": f"<= {RSS_TARGET_MB}"},
        "max_bare_peak_rss_mb": max(bare_rss, default=None),
        "boards_match_ceiling": None if None in checks else all(checks),
        "failed_steps": failed,
    }


# --- results ----------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n:,.0f} MB"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _run(r: dict[str, Any], bytes_read: bool = False) -> str:
    if "error" in r:
        return "failed"
    text = f"{r['wall_seconds']:.1f} s, {_mb(r['peak_rss_mb'])}"
    if bytes_read:
        read = r.get("bytes_read")
        text += f", {read / 1e6:,.1f} MB read" if isinstance(read, int | float) else ", bytes read n/a"
        billed = r.get("billed_bytes")
        if isinstance(billed, int | float):
            text += f", {billed / 1e6:,.1f} MB billed"
    return text


def _same(r: dict[str, Any]) -> str:
    return {True: "yes", False: "NO"}.get(r.get("boards_check", {}).get("same"), "n/a")


def write(doc: dict[str, Any]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refresh.json").write_text(json.dumps(doc, indent=2) + "\n")
    runs, s, m = doc["results"], doc["summary"], doc["method"]
    mode = "`refresh --full`" if m["full_flag"] else "`refresh` (no `--full` yet: the full build is a plain refresh)"
    lines = [f"Measured {doc['measured_at']} on {doc['machine']['nproc']} CPUs, {doc['machine']['memory_gb']} GB, "
             f"Python {doc['machine']['python']}. Full build = {mode}; incremental = `refresh` after appending "
             f"{APPEND_SHARE:.0%} more events in a new arrival hour; ceiling = one bare DuckDB query over the same "
             f"Parquet files ({BARE_MEMORY_LIMIT}, {BARE_THREADS} threads), same run. Seconds are wall time of each "
             "subprocess (start-up included), memory its peak RSS; read: the bytes it read from files (lake, "
             "state, spill); billed: what Athena would bill for its statements (each one's reads as Trino runs it, "
             "at least 10 MB each: `athena_bytes_scanned_last_refresh`); the lake's build is not measured. "
             "Boards = ceiling's: the boards each refresh wrote against the bare query's at the same as_of "
             "(after the full build; after the incremental one).", "",
             "| events | Parquet | full build | incremental | bare query | incremental / full | bare / full "
             f"| boards = ceiling's | incremental after {FIXED_APPEND // 1000}k more |",
             "|---|---|---|---|---|---|---|---|---|"]
    split = ["", "Of which per-player writes (the profiles' reconcile and every player's rank: their queries and "
             "writes; they scale with the players a batch touched, not with the lake), and the boards' path (the "
             "rest):", "",
             "| events | refresh | per-player writes | profiles: players, write s | ranks: players, nodes, write s "
             "| boards' path | boards' path incremental / full | bare / boards' path full "
             "| boards served after | served: incremental / full | bare / served full |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for kind in ("full", "incremental"):
            run, pp = r[kind], r[kind].get("per_player") or {}
            if "error" in run:
                continue
            first = kind == "full"
            split.append(
                f"| {_size(r['events'])} | {kind}: {run['wall_seconds']:.1f} s | {pp.get('seconds', 0):.1f} s "
                f"| {pp.get('profile_players') or 0:,}, {pp.get('profiles_seconds') or 0:.1f} s "
                f"| {pp.get('rank_players') or 0:,}, {pp.get('rank_nodes') or 0:,}, "
                f"{pp.get('ranks_seconds') or 0:.1f} s "
                f"| {boards_path_seconds(run):.1f} s "
                f"| {_x(r['ratios'].get('boards_path_incremental_vs_full')) if not first else ''} "
                f"| {_x(r['ratios'].get('bare_vs_boards_path_full')) if first else ''} "
                f"| {_secs(run.get('boards_served_seconds'))} "
                f"| {_x(r['ratios'].get('boards_served_incremental_vs_full')) if not first else ''} "
                f"| {_x(r['ratios'].get('bare_vs_boards_served_full')) if first else ''} |")
    for r in runs:
        lines.append(f"| {_size(r['events'])} | {r['parquet_bytes'] / 1e6:,.0f} MB | {_run(r['full'], True)} "
                     f"| {_run(r['incremental'], True)} | {_run(r['bare'])} "
                     f"| {_x(r['ratios']['incremental_vs_full'])} | {_x(r['ratios']['bare_vs_full'])} "
                     f"| {_same(r['bare'])}; {_same(r['check_after_append'])} "
                     f"| {_run(r['incremental_fixed'], True) if 'incremental_fixed' in r else 'n/a'} |")
    small, large = (_size(n) for n in s["sizes_compared"])
    bare_ratios = ", ".join(f"{_x(v)} at {_size(int(k))}" for k, v in s["bare_vs_full"]["values"].items())
    served = s.get("served") or {}
    served_bare = ", ".join(f"{_x(v)} at {_size(int(k))}" for k, v in (served.get("bare_vs_full") or {}).items())
    lines += ["", "| issue 10 target | measured: the whole refresh | until the boards were served |", "|---|---|---|",
              f"| incremental / full at {large} <= 0.1 | {_x(s['incremental_vs_full']['value'])} "
              f"| {_x(served.get('incremental_vs_full'))} |",
              f"| incremental at {large} / at {small} <= 1.5 | {_x(s['incremental_growth']['value'])} "
              f"| {_x(served.get('incremental_growth'))} |",
              f"| bare query / full build >= 0.5 | {bare_ratios} | {served_bare or 'n/a'} |",
              f"| peak RSS of a refresh <= {RSS_TARGET_MB} MB | {_mb(s['max_refresh_peak_rss_mb']['value'])} max "
              f"(bare query: {_mb(s['max_bare_peak_rss_mb'])}) | (the same processes) |",
              "", f"Not a target: the incremental refresh after {FIXED_APPEND:,} more events (the same new data at "
              f"every size), {large} / {small}: {_x(s['incremental_fixed_growth']['value'])} (until the boards were "
              f"served: {_x(served.get('incremental_fixed_growth'))})."]
    lines += split
    if s["sizes_compared"] != [SMALL, LARGE]:
        lines.append(f"\nThe issue's targets name 4M and 20M; this run compares {small} and {large}.")
    if s["failed_steps"]:
        lines.append(f"\nFailed (see refresh.json): {', '.join(s['failed_steps'])}.")
    table = "\n".join(lines) + "\n"
    (RESULTS / "refresh.md").write_text("# Leaderboard refresh benchmark\n\n" + table)
    return table


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def run(sizes: list[int], keep: Path | None, seed: int, timeout: float | None, checkout: Path = ROOT
        ) -> dict[str, Any]:
    full_flag = has_full_flag(checkout)
    if not full_flag:
        print("streamboard refresh has no --full yet: the full build is a plain refresh", file=sys.stderr)
    root = keep or Path(tempfile.mkdtemp(prefix="streamboard-bench-refresh-"))
    root.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for events in sizes:
            limit = timeout or max(900.0, 120.0 * events / 1e6)
            runs.append(measure_size(events, root, checkout, full_flag, limit, seed))
            if keep is None:
                shutil.rmtree(root / f"lake-{events}", ignore_errors=True)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "memory_gb": _memory_gb(), "python": platform.python_version(), "platform": platform.platform()},
        "method": {"sizes": sizes, "seed": seed, "full_flag": full_flag,
                   "full": "streamboard refresh --full --data-dir D" if full_flag
                           else "streamboard refresh --data-dir D (no --full yet)",
                   "incremental": f"streamboard refresh --data-dir D after appending {APPEND_SHARE:.0%} of the "
                                  "events in a new arrival hour",
                   "ceiling": f"one DuckDB query in a subprocess, memory_limit {BARE_MEMORY_LIMIT}, "
                              f"{BARE_THREADS} threads, TimeZone UTC, a temp directory, at the full build's as_of",
                   "timing": "wall seconds of each subprocess, start-up included; peak RSS from wait4 ru_maxrss",
                   "order": "build (not measured), full, bare query, append, incremental, bare query again (a "
                            "check of the incremental boards, not a figure); page cache warm for all",
                   "checkout": str(checkout),
                   "lakes": str(keep) if keep else "temporary, deleted"},
        "results": runs,
        "summary": summarize(runs),
    }


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill subprocesses and clean up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated lake sizes in events (default 4000000,20000000,50000000)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="build the lakes under DIR and keep them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, help="seconds per subprocess (default max(900, 120 per million))")
    p.add_argument("--checkout", type=Path, default=ROOT,
                   help="the streamboard checkout whose refresh runs (default this one; say, a `git worktree` of "
                        "the last commit to compare)")
    p.add_argument("--bare-query", type=Path, metavar="DATA_DIR", help=argparse.SUPPRESS)
    p.add_argument("--as-of", help=argparse.SUPPRESS)
    p.add_argument("--temp-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_query is not None:
        print(json.dumps(bare_query(args.bare_query, args.as_of, args.temp_dir or Path(tempfile.gettempdir()))))
        return
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    doc = run(sizes, args.keep, args.seed, args.timeout, args.checkout.resolve())
    print(write(doc))
    if doc["summary"]["failed_steps"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
