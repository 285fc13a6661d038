"""Capacity and cost plan for a peak load, stage by stage, from billable units per event.

The units per event come from a run of the local stack, which counts them by the AWS rules
(``streamboard/usage.py``): either a data dir's counters (``--from-data-dir``) or :data:`DEFAULTS`, a table
measured on such a run (``tests/functional/test_capacity_defaults.py`` replays its traffic mix and holds the
table to within 10% of what the stack counts). The traffic's shape (events per request, share of ``score``
events, users, months since launch) is applied through the same AWS rules; prices are one table of us-east-1
list prices (:data:`PRICES`). Every figure in the result names its source: ``counted`` (the data dir),
``default`` (:data:`DEFAULTS`), ``rule`` (an AWS billing rule or limit), ``bench`` (a file of bench/results/)
or ``assumed`` (a documented constant no run measures).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamboard.adapters.aws.items import HEAD_BYTES, HEAD_MAX_ENTRIES, HEAD_RESERVE, PAGE_BYTES
from streamboard.packing import MAX_BATCH_RECORDS, MAX_RECORD_BYTES
from streamboard.ranks import FILL as RANK_FILL
from streamboard.ranks import NODE_BYTES as RANK_NODE_BYTES
from streamboard.ranks import REBUILD_EVERY as RANK_REBUILD_EVERY
from streamboard.ranks import fold_share as rank_fold_share
from streamboard.settings import Settings
from streamboard.usage import (
    ATHENA_MINIMUM,
    DYNAMODB_READ_UNIT,
    DYNAMODB_WRITE_UNIT,
    FIREHOSE_STEP,
    KINESIS_PUT_UNIT,
    dynamodb_read_units,
)

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
INGEST_BENCH = RESULTS / "ingest.json"
ROUTER_BENCH = RESULTS / "router.json"

GB = 1e9  # AWS prices data per GB of 10^9 bytes
TB = 1e12
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
DAY = 86400

# AWS limits (rule).
KINESIS_SHARD_WRITE_RECORDS = 1000  # records/s per shard
KINESIS_SHARD_WRITE_BYTES = 1024 * 1024  # bytes/s per shard
LAMBDA_ESM_PARALLELIZATION_MAX = 10  # concurrent batches per shard
LAMBDA_MAX_SECONDS = 900

# us-east-1 list prices, USD (checked Dec 2026; verify before budgeting). The one table every cost is priced from.
PRICES: dict[str, float] = {
    "kinesis_shard_hour": 0.015,  # provisioned mode
    "kinesis_put_units_per_million": 0.014,  # 25 KB payload units
    "firehose_ingested_per_gb": 0.029,  # first 500 TB a month; each record rounded up to 5 KB
    "firehose_format_conversion_per_gb": 0.018,  # JSON -> Parquet, same 5 KB steps
    "lambda_requests_per_million": 0.20,
    "lambda_gb_second": 0.0000166667,  # x86
    "dynamodb_write_request_units_per_million": 0.625,  # on demand; 2 per KB in a transaction
    "dynamodb_read_request_units_per_million": 0.125,  # on demand; 1 per 4 KB strongly consistent
    "dynamodb_gb_month": 0.25,  # standard table class, +100 bytes per item
    "athena_per_tb_scanned": 5.0,  # at least 10 MB per query
    "s3_gb_month": 0.023,  # Standard, first 50 TB
    "s3_put_per_thousand": 0.005,
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "alb_hour": 0.0225,
    "alb_lcu_hour": 0.008,  # 1 LCU = 1 GB processed an hour (the dimension that decides for ingest)
    # the read path (aws.amazon.com/cloudfront/pricing, .../api-gateway/pricing, .../waf/pricing; free tiers left
    # out: CloudFront's 1 TB and 10 million requests a month would make a small deployment's edge almost free)
    "cloudfront_https_requests_per_10k": 0.0100,  # North America
    "cloudfront_transfer_out_per_gb": 0.085,  # to the internet, first 10 TB a month, North America and Europe
    "api_gateway_http_requests_per_million": 1.00,  # HTTP API, first 300 million a month
    "waf_requests_per_million": 0.60,  # every request CloudFront receives, cache hits included
    "waf_web_acl_month": 5.0,
    "waf_rule_month": 1.0,  # a managed rule group counts as one rule
}


@dataclass(frozen=True)
class Default:
    value: float
    why: str


# Units per event measured on one run of the local stack (2026-12-01, this branch): 20 requests of 100 events,
# every 10th a `score` event with a user_name and no challenge, the rest `action` events with two properties,
# each request one player's, drawn from 1,000,000 (so a player is in a router batch once):
# synthetic.traffic_mix(20, events_per_request=100, score_share=0.1, users=1_000_000, players_per_request=1).
# `streamboard usage` of that data dir divided by its events; the per-type sizes from runs of the same mix with
# score_share 1.0 and 0.0.
# tests/functional/test_capacity_defaults.py replays that mix and checks these within 10%.
DEFAULTS: dict[str, Default] = {
    "stream_bytes_per_event": Default(196.1, "a stream record's bytes (data + partition key) / its events"),
    "lake_bytes_score": Default(312.3, "firehose_billed_bytes / events, all-score run (the router's JSON line,"
                                       " routed_at included)"),
    "lake_bytes_action": Default(294.4, "firehose_billed_bytes / events, all-action run"),
    "dynamodb_write_units_per_profile_write": Default(
        1.0, "dynamodb_write_units / (profile_updates + profile_reconciles): one UpdateItem of a profile item"
        " under 1 KB (a player's categories, name and live slots; streamboard.profiles), no transaction"),
    "dynamodb_read_units_per_event": Default(
        0.00025, "dynamodb_read_units / events: routing reads nothing; the run's one app-key lookup (0.5 units,"
        " then cached) over its 2,000 events"),
    "refresh_statements": Default(
        38, "athena_bytes_scanned_last_refresh / 10 MB of a small incremental refresh (every statement at the"
        " minimum): 17 steps, each with its refresh-log statement, the board snapshot, the profiles' reconcile,"
        " the ranks' changed users, and the batch's plan and end"),
}

# Documented constants no local run measures (assumed).
ASSUMED = {
    "average_share_of_peak": (0.25, "average load / peak load over a month"),
    "router_memory_gb": (1.0, "router_memory_mb 1024 of infra's production config"),
    "router_batch_records": (500, "event source mapping batch size (settings.router_batch_size); batches fill at"
                                  " peak"),
    "router_cpu_ms_per_event": (0.07, "router CPU per event when bench/results/router.json is missing"),
    "sink_call_ms": (10.0, "latency of one in-region DynamoDB UpdateItem or Firehose PutRecordBatch call the"
                           " router waits for"),
    "profile_calls_per_user": (1, "per user with scores in a batch: one UpdateItem (streamboard.profiles)"),
    "transform_cpu_ms_per_event": (0.03, "Firehose transform Lambda (256 MB) per event; not benchmarked"),
    "transform_memory_gb": (0.25, "transform Lambda memory"),
    "transform_mib_per_invocation": (3.0, "Firehose hands the transform about 3 MiB per call"),
    "parquet_bytes_per_event": (60.0, "compressed Parquet bytes per event in the lake (about 1/4 of the JSON)"),
    "refresh_read_bytes_per_new_score": (40.0, "Parquet bytes of the columns a refresh reads per new score"),
    "dedupe_id_bytes": (16.0, "state_deliveries per id a whole read of its key columns bills: id_key and"
                              " id_key2 (8 random bytes each; received_at and counted, written in order, compress"
                              " to almost nothing); no pruning assumed"),
    "window_total_row_bytes": (48.0, "state_window_totals row: user, scope, three totals"),
    "ledger_row_bytes": (40.0, "state_contributions row: user, category, points, ts"),
    "user_name_row_bytes": (64.0, "state_user_names row: user, event_id, ts, name, batch"),
    "challenge_first_row_bytes": (72.0, "state_challenge_firsts row: user, challenge, event_id, ts, category,"
                                        " points"),
    "stage_row_bytes": (110.0, "stage_status row of a batch's delivery (event_id, user, category, points,"
                               " challenge, name, ts, two flags), with its stage_keys row"),
    "profile_row_bytes": (80.0, "state_profile_rows row: user, event_id, received_at, routed_at, category,"
                                " points, batch"),
    "profile_rows_hours": (1.33, "hours of score events state_profile_rows holds: those routed since the profiles'"
                                 " cut (as_of - 20 minutes: streamboard.profiles.LIVE_LAG), pruned each refresh"),
    "challenges_per_user": (10.0, "challenges a player has completed (a first each in the lake's state)"),
    "categories": (4, "score categories (boards: one per category and overall, three windows each)"),
    "board_entry_bytes": (36.0, "packed (zlib JSON) bytes of one board entry: 34 for uuid ids and numbered names"
                                " (tests/functional/test_usage.py's board)"),
    "rank_boards_per_user": (6.0, "boards a player has a score on: overall and one category, in the three windows"
                                  " (streamboard.ranks keeps an entry for each)"),
    "rank_entry_bytes": (32.4, "packed bytes of a board tree's entry: a uuid user_id, a 15-character name and the"
                               " score (a build of 100,000 such, streamboard.ranks; tests/unit/test_capacity.py)"),
    "rank_index_entry_bytes": (48.5, "packed bytes of the user index's entry: a uuid and two scopes' three scores"),
    "rank_inner_fanout": (20.0, "children of a 1 KB inner node with uuid keys (the same build)"),
    "read_response_bytes": (1500.0, "bytes CloudFront sends for a board read: a limit=10 board's JSON (about 1.1 KB"
                                    " with uuid ids) and the response headers, uncompressed"),
    "read_api_ms": (20.0, "read API Lambda duration a request: one DynamoDB GetItem in the region and the JSON"),
    "read_api_memory_gb": (0.5, "read API Lambda memory (infra read_api.py: 512 MB)"),
    "firehose_buffer_seconds": (300, "Firehose buffer interval (infra's production config): S3 objects"),
    "ingest_task_events_per_s": (50_000.0, "events/s one ingest task takes, when bench/results/ingest.json is"
                                           " missing"),
}
PROFILE_ITEM_BYTES = 300  # a profile item: base categories, name, a few live slots (streamboard.profiles)
HEAD_OVERHEAD_BYTES = 250  # a board head's keys, stamps, version, digest and counts (streamboard.adapters.aws.items)
PAGE_OVERHEAD_BYTES = 60  # a page's keys
BOARD_ENTRIES = 1000  # the top a board keeps
DYNAMODB_ITEM_READ_UNITS_PER_S = 3000  # the most one item serves (rule)
WAF_RULES = 2  # the CDN's web ACL: a per-IP rate limit and the AWS common rule set (infra cdn.py)
DEDUPE_HORIZON_DAYS = 30  # settings default; the refresh keeps the ids of horizon + 14 days (README)
DEDUPE_STATE_DAYS = DEDUPE_HORIZON_DAYS + 14


@functools.cache
def refresh_reads() -> dict[str, tuple[int, int]]:
    """Per table, the reads of an hourly incremental batch (the statements ``IncrementalRefresh.sequence``
    runs: its steps, the board snapshot, the profiles' reconcile, the ranks' users and the pruning), from their
    SQL (:func:`streamboard.sql.reads`): (whole reads, statements that read it narrowed by batch or time)."""
    from streamboard.refresh import hourly_batch
    from streamboard.sql import reads

    batch = hourly_batch()
    out: dict[str, tuple[int, int]] = {}
    for statement in batch:
        for table, (whole, narrowed) in reads(statement.sql).items():
            w, n = out.get(table, (0, 0))
            out[table] = (w + whole, n + narrowed)
    return out


class PlanError(ValueError):
    """Input the planner cannot plan from (a data dir with no usage, a share out of range...)."""


@dataclass(frozen=True)
class Traffic:
    """The traffic's shape."""

    peak_events_per_s: float
    events_per_request: int = 100
    score_share: float = 0.1
    users: int = 1_000_000
    month: int = 1
    players_per_request: int = 1  # whose events one request carries (a game client posts its own player's)
    average_share_of_peak: float = ASSUMED["average_share_of_peak"][0]
    router_batch_records: int = int(ASSUMED["router_batch_records"][0])
    reads_per_second: float = 0.0  # board reads at peak (0: no read path); a month at the average share
    cache_hit_ratio: float = 0.9  # share of reads the CDN answers without the origin

    def __post_init__(self) -> None:
        if self.peak_events_per_s <= 0:
            raise PlanError("--peak must be above 0 events/s")
        if self.events_per_request < 1 or self.events_per_request > 500:
            raise PlanError("--events-per-request must be 1..500 (the ingest API takes at most 500 a request)")
        if not 1 <= self.players_per_request <= self.events_per_request:
            raise PlanError("--players-per-request must be 1..events per request")
        if not 0 <= self.score_share <= 1:
            raise PlanError("--score-share must be between 0 and 1")
        if self.users < 1 or self.month < 1:
            raise PlanError("--users and --month must be at least 1")
        if not 0 < self.average_share_of_peak <= 1:
            raise PlanError("--average-share must be in (0, 1]")
        if self.reads_per_second < 0:
            raise PlanError("--reads-per-second must not be negative")
        if not 0 <= self.cache_hit_ratio <= 1:
            raise PlanError("--cache-hit-ratio must be between 0 and 1")


@dataclass(frozen=True)
class Figure:
    value: float
    source: str


@dataclass
class Rates:
    """Units per event, with where each comes from. ``counted`` holds a data dir's units per event as counted,
    which replace the shape-dependent rules."""

    values: dict[str, Figure]
    origin: str
    counted: dict[str, Figure] = field(default_factory=dict)
    score_share: float | None = None  # the run's, when counted


def default_rates() -> Rates:
    return Rates({k: Figure(d.value, f"default: {d.why}") for k, d in DEFAULTS.items()},
                 "documented defaults (streamboard/capacity.py DEFAULTS)")


def rates_from_usage(report: dict[str, Any], where: str) -> Rates:
    """Units per event from ``streamboard usage --format json`` of a run: its counters / its events."""
    events, scores, units = report["events_accepted"], report["score_events"], report["units"]
    if not events:
        raise PlanError(f"no events counted in {where}: run traffic through it first (streamboard usage shows 0)")
    rates = default_rates()
    src = f"counted in {where} ({events:,} events)"
    counted = {
        "kinesis_put_units": Figure(units["kinesis_put_units"] / events, f"{src}: kinesis_put_units / events"),
        "firehose_billed_bytes": Figure(units["firehose_billed_bytes"] / events,
                                        f"{src}: firehose_billed_bytes / events"),
        "dynamodb_read_units": Figure(units["dynamodb_read_units"] / events, f"{src}: dynamodb_read_units / events"),
    }
    values = dict(rates.values)
    profile_writes = report.get("profile_updates", 0) + report.get("profile_reconciles", 0)
    if profile_writes:
        values["dynamodb_write_units_per_profile_write"] = Figure(
            units["dynamodb_write_units"] / profile_writes, f"{src}: dynamodb_write_units / (profile_updates +"
                                                            " profile_reconciles) (board and app writes included)")
    if report["refreshes"] and units["athena_bytes_scanned_last_refresh"]:
        values["refresh_statements"] = Figure(
            max(1, round(units["athena_bytes_scanned_last_refresh"] / ATHENA_MINIMUM)),
            f"{src}: athena_bytes_scanned_last_refresh / 10 MB (statements at the minimum)")
    return Rates(values, src, counted, scores / events)


def _assumed(name: str) -> Figure:
    value, why = ASSUMED[name]
    return Figure(float(value), f"assumed: {why}")


def router_cpu_ms() -> Figure:
    """The router's measured CPU per event (batched traffic) from bench/results/router.json, else assumed."""
    try:
        results = json.loads(ROUTER_BENCH.read_text())["results"]
        batched = next(r for r in results if r["shape"] == "batched")
        return Figure(float(batched["per_event_cpu_ms"]), f"bench: {ROUTER_BENCH.name} per_event_cpu_ms (batched,"
                                                          f" {batched['events_per_record']} events a record)")
    except (OSError, KeyError, ValueError, StopIteration, TypeError):
        return _assumed("router_cpu_ms_per_event")


def ingest_task_events_per_s() -> Figure:
    """Events/s one ingest task (1 vCPU) sustains, from the last ingest benchmark, with 30% headroom."""
    try:
        measured = json.loads(INGEST_BENCH.read_text())["results"]["batched_100"]["full"]["events_per_s"]
        return Figure(float(measured) * 0.7, f"bench: {INGEST_BENCH.name} (70% of the measured peak)")
    except (OSError, KeyError, ValueError, TypeError):
        return _assumed("ingest_task_events_per_s")


def firehose_billed(events: float, event_bytes: float) -> float:
    """Billed bytes of ``events`` packed into records of at most 1,000 KiB, each rounded up to 5 KB (rule)."""
    total = events * event_bytes
    full, rest = divmod(total, MAX_RECORD_BYTES - MAX_RECORD_BYTES % FIREHOSE_STEP)
    return full * MAX_RECORD_BYTES + (math.ceil(rest / FIREHOSE_STEP) * FIREHOSE_STEP if rest else 0)


def distinct(users: int, draws: float) -> float:
    """Expected distinct users among ``draws`` events each from one of ``users`` at random."""
    return users * -math.expm1(draws * math.log1p(-1 / users)) if users > 1 else min(1.0, draws)


def profile_users_per_batch(traffic: Traffic) -> float:
    """Players with a score in a full router batch: one profile update each (rule: one UpdateItem per user per
    batch). A request carries ``players_per_request`` players' events; a player has a score in it unless all
    of its events there are other types."""
    per_player = traffic.events_per_request / traffic.players_per_request
    with_score = -math.expm1(per_player * math.log1p(-traffic.score_share)) if traffic.score_share < 1 else 1.0
    return distinct(traffic.users, traffic.router_batch_records * traffic.players_per_request * with_score)


def units_per_event(traffic: Traffic, rates: Rates) -> dict[str, Figure]:
    """The billable units of one event of this traffic: counted ones as counted, the rest by the AWS rules
    from the run's sizes."""
    v = {k: f.value for k, f in rates.values.items()}
    share = traffic.score_share
    epr = traffic.events_per_request
    record_bytes = epr * v["stream_bytes_per_event"]
    batch_events = traffic.router_batch_records * epr
    billed = (firehose_billed(batch_events * share, v["lake_bytes_score"])
              + firehose_billed(batch_events * (1 - share), v["lake_bytes_action"])) / batch_events
    out = {
        "kinesis_put_units": Figure(math.ceil(record_bytes / KINESIS_PUT_UNIT) / epr,
                                    f"rule: a record per request of {record_bytes:,.0f} bytes, in 25 KB units"),
        "firehose_billed_bytes": Figure(billed, "rule: a router batch's events of each type packed into 1,000 KiB"
                                                " records, each rounded up to 5 KB"),
        "dynamodb_write_units": Figure(
            profile_users_per_batch(traffic) * v["dynamodb_write_units_per_profile_write"] / batch_events,
            f"rule: one profile update per player with scores in a router batch of {batch_events:,} events, "
            f"{traffic.players_per_request} player(s) a request; "
            f"{rates.values['dynamodb_write_units_per_profile_write'].source}"),
        "dynamodb_read_units": rates.values["dynamodb_read_units_per_event"],
    }
    out.update(rates.counted)
    return out


def _head_bytes(entries: int, entry_bytes: float) -> tuple[int, float]:
    top = min(HEAD_MAX_ENTRIES, entries, int((HEAD_BYTES - HEAD_RESERVE) / entry_bytes))
    return top, top * entry_bytes + HEAD_OVERHEAD_BYTES


def board_heads_query_units(boards: float, entries: int, entry_bytes: float) -> float:
    """Read units of a refresh's two strongly consistent Queries of every board's head (``streamboard.boards``:
    which pages are stored before, which no board names after; a Query bills its items' bytes together, by
    4 KB)."""
    return 2.0 * math.ceil(boards * _head_bytes(entries, entry_bytes)[1] / DYNAMODB_READ_UNIT)


def board_units_per_refresh(entries: int, entry_bytes: float, copies: int) -> tuple[float, float]:
    """Write and read units of replacing one board of ``entries`` (``streamboard.boards``, rule): a strongly
    consistent GetItem of its head, its pages, a PutItem of each head copy, and the deletes of the pages of
    the version before (each item in whole KB). Priced as if no board shared its pages (a scope's windows
    share them while their entries are the same: the 30 days in a lake's first month, the 365 days in its
    first year): an upper bound then. The Queries of the heads are :func:`board_heads_query_units`."""
    top, head = _head_bytes(entries, entry_bytes)
    per_page = max(1, int(PAGE_BYTES / entry_bytes))
    rest = entries - top
    pages = [min(per_page, rest - i) * entry_bytes + PAGE_OVERHEAD_BYTES for i in range(0, rest, per_page)]
    page_wru = sum(math.ceil(b / DYNAMODB_WRITE_UNIT) for b in pages)
    return (copies * math.ceil(head / DYNAMODB_WRITE_UNIT) + 2 * page_wru,
            float(math.ceil(head / DYNAMODB_READ_UNIT)))


RANK_ITEM_OVERHEAD = 130  # a node item's keys (about 30 bytes) and DynamoDB's 100 bytes an item of storage


def rank_tree_levels(entries: float, entry_bytes: float, fanout: float) -> list[float]:
    """Nodes per level (leaves first) of a count tree of ``entries`` built as ``streamboard.ranks`` builds one:
    nodes of 960 packed bytes cut 85% full."""
    levels = [max(1.0, entries * entry_bytes / (RANK_NODE_BYTES * RANK_FILL))]
    while levels[-1] > 1:
        levels.append(max(1.0, levels[-1] / fanout))
    return levels


def rank_nodes_touched(levels: list[float], ops: float) -> float:
    """Nodes a write of ``ops`` keys at random places rewrites: at each level, the nodes at least one op falls in
    (n nodes take n(1 - e^(-ops/n)) of ops random falls)."""
    return sum(-n * math.expm1(-ops / n) for n in levels)


def rank_tree_writes(entries: float, entry_bytes: float, fanout: float, ops: float) -> tuple[float, float]:
    """Nodes a refresh writes, on average over a fold's cycle, into one tree of ``entries`` (a base and a delta,
    ``streamboard.ranks``) given ``ops`` keys changed each refresh, and the delta's average nodes: each refresh
    writes the delta's nodes its ops fall in (the delta grown by its ops: an upper bound, a key changed again
    replaces its row), and once the delta holds its ``fold_share`` of the base's entries a refresh folds it,
    writing the base's nodes its rows fall in."""
    if ops <= 0 or entries <= 0:
        return 0.0, 0.0
    # refreshes from an empty delta to its fold
    cycle = max(1, math.ceil(rank_fold_share(ops / entries) * entries / ops))
    deltas = [rank_tree_levels(i * ops, entry_bytes, fanout) for i in range(1, cycle + 1)]
    # the last refresh of a cycle folds instead (its ops with the delta's rows into the base)
    written = sum(rank_nodes_touched(d, ops) for d in deltas[:-1])
    written += rank_nodes_touched(rank_tree_levels(entries, entry_bytes, fanout), cycle * ops)
    return written / cycle, sum(sum(d) for d in deltas[:-1]) / cycle


def rank_units(users: int, scorers: float, expiring: float) -> dict[str, Any]:
    """The ranks' nodes (``streamboard.ranks``) for ``users`` players: every base node, and those a refresh
    writes (on average over a fold's cycle: :func:`rank_tree_writes`) when ``scorers`` players scored since the
    last one (their overall and category scores change in every window) and ``expiring`` players' points left a
    window. The boards' trees are priced as one pool of players x boards entries (ops spread over the boards in
    proportion to their sizes)."""
    per_user = ASSUMED["rank_boards_per_user"][0]
    fanout = ASSUMED["rank_inner_fanout"][0]
    entry, index_entry = ASSUMED["rank_entry_bytes"][0], ASSUMED["rank_index_entry_bytes"][0]
    boards = rank_tree_levels(users * per_user, entry, fanout)
    index = rank_tree_levels(users, index_entry, fanout)
    board_ops = 2 * (scorers * per_user + expiring * 2)  # a delete and an insert per (player, board) changed
    # a player who scored and whose older points left a window is one changed player
    changed = users * (1 - (1 - min(1.0, scorers / users)) * (1 - min(1.0, expiring / users)))
    every = sum(boards) + sum(index)
    if changed * RANK_REBUILD_EVERY >= users:  # a busy refresh builds the trees again: every node, no delta
        return {"nodes": every, "written": every, "changed": changed, "rebuilt": True,
                "bytes": 2 * every * (RANK_NODE_BYTES * RANK_FILL + RANK_ITEM_OVERHEAD)}
    board_written, board_delta = rank_tree_writes(users * per_user, entry, fanout, board_ops)
    index_written, index_delta = rank_tree_writes(users, index_entry, fanout, changed)
    written = board_written + index_written
    return {"nodes": every, "written": written, "changed": changed, "rebuilt": False,
            "bytes": (every + board_delta + index_delta + written) * (RANK_NODE_BYTES * RANK_FILL
                                                                       + RANK_ITEM_OVERHEAD)}


def _line(unit: str, quantity: float, source: str, usd: float = 0.0) -> dict[str, Any]:
    return {"unit": unit, "per_month": quantity, "source": source, "monthly_usd": usd}


def project(traffic: Traffic, rates: Rates | None = None) -> dict[str, Any]:
    """Per stage: what the peak needs, the units a month with their sources, and what they cost."""
    rates = rates or default_rates()
    if rates.score_share is not None and abs(rates.score_share - traffic.score_share) > 1e-9:
        traffic = Traffic(**{**asdict(traffic), "score_share": rates.score_share})
    v = {k: f.value for k, f in rates.values.items()}
    per_event = units_per_event(traffic, rates)
    p = PRICES
    peak, share, epr = traffic.peak_events_per_s, traffic.score_share, traffic.events_per_request
    avg = peak * traffic.average_share_of_peak
    events = avg * SECONDS_PER_MONTH
    scores = events * share
    requests = events / epr
    avg_src = f"assumed: average load {traffic.average_share_of_peak:.0%} of peak"
    stages: list[dict[str, Any]] = []

    # ingest: Fargate tasks behind an ALB
    task = ingest_task_events_per_s()
    tasks = max(2, math.ceil(peak / task.value))  # two for availability
    ingest_gb = events * v["stream_bytes_per_event"] / GB
    lcu = max(1.0, ingest_gb / HOURS_PER_MONTH)
    stages.append({"stage": "ingest (Fargate 1 vCPU / 2 GB, ALB)",
                   "needs": f"{tasks} tasks at peak ({task.value:,.0f} events/s each); {peak / epr:,.0f} requests/s",
                   "lines": [
                       _line("fargate task-hours", tasks * HOURS_PER_MONTH, f"{task.source}; at least 2 tasks",
                             tasks * HOURS_PER_MONTH * (p["fargate_vcpu_hour"] + 2 * p["fargate_gb_hour"])),
                       _line("ALB hours", HOURS_PER_MONTH, "rule: one load balancer", HOURS_PER_MONTH * p["alb_hour"]),
                       _line("ALB LCU-hours", lcu * HOURS_PER_MONTH, "rule: 1 LCU per GB processed an hour, at the"
                             " stream's bytes per event", lcu * HOURS_PER_MONTH * p["alb_lcu_hour"])]})

    # router: Lambda on the stream
    cpu = router_cpu_ms()
    call_ms = _assumed("sink_call_ms")
    batch_events = traffic.router_batch_records * epr
    batch_users = profile_users_per_batch(traffic)
    delivery_calls = sum(math.ceil(max(1.0, firehose_billed(batch_events * s, v[k]) / MAX_RECORD_BYTES)
                                   / MAX_BATCH_RECORDS) for s, k in ((share, "lake_bytes_score"),
                                                                     (1 - share, "lake_bytes_action")) if s > 0)
    calls = delivery_calls + batch_users * ASSUMED["profile_calls_per_user"][0]
    seconds = (batch_events * cpu.value + calls * call_ms.value) / 1000
    invocations = requests / traffic.router_batch_records
    memory = _assumed("router_memory_gb")
    concurrency = peak / batch_events * seconds

    # stream: Kinesis, provisioned
    kin_units = events * per_event["kinesis_put_units"].value
    write_shards = max(1, math.ceil(max(peak / epr / KINESIS_SHARD_WRITE_RECORDS,
                                        peak * v["stream_bytes_per_event"] / KINESIS_SHARD_WRITE_BYTES)))
    shards = max(write_shards, math.ceil(concurrency / LAMBDA_ESM_PARALLELIZATION_MAX))
    stages.append({"stage": "stream (Kinesis, provisioned)",
                   "needs": f"{shards} shards ({write_shards} for 1,000 records/s and 1 MiB/s each"
                            + (f"; more for the router's {concurrency:,.0f} concurrent batches at 10 a shard)"
                               if shards > write_shards else ")"),
                   "lines": [
                       _line("shard-hours", shards * HOURS_PER_MONTH, "rule: shards for the peak's records, bytes"
                             " and router concurrency", shards * HOURS_PER_MONTH * p["kinesis_shard_hour"]),
                       _line("PUT payload units", kin_units, per_event["kinesis_put_units"].source,
                             kin_units / 1e6 * p["kinesis_put_units_per_million"])]})
    gb_s = invocations * seconds * memory.value
    stages.append({"stage": f"router (Lambda, {memory.value:g} GB)",
                   "needs": f"{batch_events:,} events a batch ({batch_users:,.0f} users with scores): "
                            f"{seconds:,.1f} s each = {cpu.value:g} ms CPU an event ({cpu.source.split(':')[0]}) + "
                            f"{calls:,.0f} sink calls x {call_ms.value:g} ms (assumed); about {concurrency:,.0f} "
                            "concurrent at peak"
                            + ("; OVER Lambda's 900 s: smaller batches needed" if seconds > LAMBDA_MAX_SECONDS else ""),
                   "lines": [
                       _line("requests", invocations, "rule: one per full batch of the event source mapping",
                             invocations / 1e6 * p["lambda_requests_per_million"]),
                       _line("GB-seconds", gb_s, f"{cpu.source}; sink calls: {call_ms.source}; "
                             f"{ASSUMED['profile_calls_per_user'][1]}", gb_s * p["lambda_gb_second"])]})

    # delivery: Firehose with the transform Lambda and Parquet conversion
    fh_gb = events * per_event["firehose_billed_bytes"].value / GB
    t_cpu, t_mem = _assumed("transform_cpu_ms_per_event"), _assumed("transform_memory_gb")
    t_inv = fh_gb * GB / (ASSUMED["transform_mib_per_invocation"][0] * 1024 * 1024)
    t_gbs = events * t_cpu.value / 1000 * t_mem.value
    stages.append({"stage": "delivery (Firehose, transform, JSON to Parquet)",
                   "needs": f"{fh_gb * 1000 / SECONDS_PER_MONTH:,.2f} MB/s billed on average",
                   "lines": [
                       _line("GB ingested", fh_gb, per_event["firehose_billed_bytes"].source,
                             fh_gb * p["firehose_ingested_per_gb"]),
                       _line("GB format conversion", fh_gb, "rule: the same 5 KB steps",
                             fh_gb * p["firehose_format_conversion_per_gb"]),
                       _line("transform requests", t_inv, _assumed("transform_mib_per_invocation").source,
                             t_inv / 1e6 * p["lambda_requests_per_million"]),
                       _line("transform GB-seconds", t_gbs, f"{t_cpu.source}; {t_mem.source}",
                             t_gbs * p["lambda_gb_second"])]})

    # lake: S3 grows month by month
    pq = _assumed("parquet_bytes_per_event")
    lake_gb = events * traffic.month * pq.value / GB
    objects = 2 * SECONDS_PER_MONTH / ASSUMED["firehose_buffer_seconds"][0] + fh_gb / 0.128
    stages.append({"stage": "lake (S3)", "needs": f"{lake_gb:,.0f} GB of Parquet after month {traffic.month}",
                   "lines": [
                       _line("GB-months", lake_gb, f"{pq.source}; every month's events kept ({traffic.month} months)",
                             lake_gb * p["s3_gb_month"]),
                       _line("PUTs", objects, "rule: two delivery streams flushing every 300 s or 128 MiB",
                             objects / 1000 * p["s3_put_per_thousand"])]})

    # leaderboards: the hourly incremental refresh on Athena: every read of every table by every statement of
    # a batch (refresh_reads: from the SQL, each reference to a named query counted, as Trino runs it), each
    # whole read of a table billed its size, each statement's narrowed read (by batch or time) its edge
    statements = rates.values["refresh_statements"]
    hour_scores = scores / HOURS_PER_MONTH
    days = min(traffic.month * 30, DEDUPE_STATE_DAYS)
    ids = scores / 30 * days
    ledger_edges = hour_scores * (1 if traffic.month <= 1 else 2 if traffic.month <= 12 else 3)
    cats = ASSUMED["categories"][0]
    a = {k: v[0] for k, v in ASSUMED.items()}
    sizes = {  # table: (bytes of a whole read, bytes of a narrowed read), what it holds
        "score": (hour_scores * a["refresh_read_bytes_per_new_score"],) * 2,  # the new partitions only
        "state_deliveries": (ids * a["dedupe_id_bytes"], hour_scores * a["dedupe_id_bytes"]),
        "state_window_totals": (traffic.users * (cats + 1) * a["window_total_row_bytes"],) * 2,
        "state_user_names": (traffic.users * a["user_name_row_bytes"],) * 2,
        "state_challenge_firsts": (traffic.users * a["challenges_per_user"] * a["challenge_first_row_bytes"],) * 2,
        "state_contributions": (scores * 12 * a["ledger_row_bytes"], ledger_edges * a["ledger_row_bytes"]),
        "state_profile_rows": (hour_scores * a["profile_rows_hours"] * a["profile_row_bytes"],) * 2,
        "stage_status": (hour_scores * a["stage_row_bytes"],) * 2,
        "stage_keys": (hour_scores * a["stage_row_bytes"],) * 2,
        "state_scopes": (0.0, 0.0),  # a row per category: within the 10 MB minimum
        "state_refreshes": (0.0, 0.0),  # the refresh log, a few dozen rows: within the minimum
    }
    read_counts = refresh_reads()
    parts = {}
    for table, (whole, narrowed) in sorted(read_counts.items()):
        if sizes[table] != (0.0, 0.0):  # a table the statements read that has no size here is an error
            parts[f"{table} ({whole} whole, {narrowed} narrowed)"] = (
                whole * sizes[table][0] + narrowed * sizes[table][1])
    per_refresh = sum(parts.values()) + statements.value * ATHENA_MINIMUM
    athena_tb = per_refresh * HOURS_PER_MONTH / TB
    detail = ", ".join(f"{k} {b / GB:,.2f} GB" for k, b in parts.items())
    stages.append({"stage": "leaderboards (Athena, hourly refresh)",
                   "needs": f"{per_refresh / GB:,.2f} GB a refresh, by table read (reads of the statements' SQL,"
                            f" streamboard.sql.reads): {detail}, + {statements.value:.0f} statements"
                            f" x 10 MB minimum; dedupe ids of {days} days",
                   "lines": [_line("TB scanned", athena_tb, f"rule: 10 MB minimum per statement ({statements.source});"
                                   " the state grows with users x categories and the dedupe horizon's ids (assumed"
                                   " row sizes), not with the lake", athena_tb * p["athena_per_tb_scanned"])]})

    # profiles and boards: DynamoDB on demand
    wru = events * per_event["dynamodb_write_units"].value
    rru = events * per_event["dynamodb_read_units"].value
    boards = (cats + 1) * 3
    copies = Settings().board_copies
    entry_bytes = _assumed("board_entry_bytes")
    per_board_wru, per_board_rru = board_units_per_refresh(min(traffic.users, BOARD_ENTRIES), entry_bytes.value,
                                                           copies)
    board_wru = HOURS_PER_MONTH * boards * per_board_wru
    board_rru = HOURS_PER_MONTH * (boards * per_board_rru + board_heads_query_units(
        boards, min(traffic.users, BOARD_ENTRIES), entry_bytes.value))
    profile_bytes = PROFILE_ITEM_BYTES + 100
    ddb_gb = traffic.users * profile_bytes / GB
    # the reconcile of each hourly refresh: a GetItem (eventually consistent) and an UpdateItem per player who
    # scored since the last one
    touched = distinct(traffic.users, hour_scores)
    wpw = rates.values["dynamodb_write_units_per_profile_write"]
    reconcile_wru = HOURS_PER_MONTH * touched * wpw.value
    reconcile_rru = HOURS_PER_MONTH * touched * 0.5
    # every player's rank (streamboard.ranks): the nodes each refresh rewrites (the paths of the players it
    # changed: those who scored, and those whose points left the 30d or 365d window, as many as scored that
    # hour 30 or 365 days before), each under 1 KB, deleted again a refresh later; the old nodes on those paths
    # read eventually consistent (a node never changes)
    expiring = min(float(traffic.users), touched * ((traffic.month > 1) + (traffic.month > 12)))
    rk = rank_units(traffic.users, touched, expiring)
    rank_how = "a build from every player: a quarter or more changed" if rk["rebuilt"] else "deltas and folds"
    rank_wru = HOURS_PER_MONTH * (2 * rk["written"] + copies)
    rank_rru = HOURS_PER_MONTH * rk["written"] * 0.5
    rank_gb = rk["bytes"] / GB
    rank_assumed = "; ".join(_assumed(k).source for k in ("rank_boards_per_user", "rank_entry_bytes",
                                                          "rank_index_entry_bytes", "rank_inner_fanout"))
    stages.append({"stage": "profiles (DynamoDB on demand)",
                   "needs": f"{peak * per_event['dynamodb_write_units'].value:,.0f} write units/s at peak "
                            f"({per_event['dynamodb_write_units'].value:.4f} an event); a reconcile of "
                            f"{touched:,.0f} profiles an hour; ranks of {traffic.users:,} players in"
                            f" {rk['nodes']:,.0f} nodes (a first build writes each once: {rk['nodes']:,.0f} write"
                            f" units, spread over the table's partitions by random node keys), {rk['written']:,.0f}"
                            f" written an hour ({rank_how}) for {rk['changed']:,.0f} changed players",
                   "lines": [
                       _line("write request units (router)", wru, per_event["dynamodb_write_units"].source,
                             wru / 1e6 * p["dynamodb_write_request_units_per_million"]),
                       _line("write request units (reconcile)", reconcile_wru, "rule: an UpdateItem per player who"
                             f" scored in the hour ({touched:,.0f} of {traffic.users:,}), hourly; {wpw.source}",
                             reconcile_wru / 1e6 * p["dynamodb_write_request_units_per_million"]),
                       _line("read request units (reconcile)", reconcile_rru, "rule: an eventually consistent "
                             "GetItem (0.5 unit, items under 4 KB) per player reconciled, hourly",
                             reconcile_rru / 1e6 * p["dynamodb_read_request_units_per_million"]),
                       _line("read request units", rru, per_event["dynamodb_read_units"].source,
                             rru / 1e6 * p["dynamodb_read_request_units_per_million"]),
                       _line("board write units", board_wru, f"rule: {boards} boards a refresh, each its pages, "
                             f"{copies} head copies and the deletes of the pages of the version before, 1 unit per "
                             f"KB of each item; {entry_bytes.source}", board_wru / 1e6
                             * p["dynamodb_write_request_units_per_million"]),
                       _line("board read units (refresh)", board_rru, "rule: a strongly consistent GetItem of each "
                             "board's head before its replace, and two strongly consistent Queries of every head "
                             "(4 KB a unit)", board_rru / 1e6
                             * p["dynamodb_read_request_units_per_million"]),
                       _line("GB-months", ddb_gb, f"rule: a profile item per user (assumed {PROFILE_ITEM_BYTES} "
                             "bytes, +100 bytes an item); no item per event",
                             ddb_gb * p["dynamodb_gb_month"]),
                       _line("rank write units", rank_wru, f"rule: rank nodes written an hour = the nodes of the trees'"
                             f" deltas the {rk['changed']:,.0f} changed players' old and new places fall in, on"
                             " every level, and a fold of each delta into its base once it holds its share of the"
                             " base's entries (1/8 to 1/2; averaged over the refreshes between)"
                             f" ({rk['written']:,.0f} of {rk['nodes']:,.0f}), 1 unit each (under 1 KB), and as many"
                             f" deletes a refresh later, plus {copies} head copies; {rank_assumed}",
                             rank_wru / 1e6 * p["dynamodb_write_request_units_per_million"]),
                       _line("rank read units (refresh)", rank_rru, "rule: an eventually consistent read (0.5"
                             " unit, under 4 KB) of each node those paths replace",
                             rank_rru / 1e6 * p["dynamodb_read_request_units_per_million"]),
                       _line("rank GB-months", rank_gb, f"rule: every rank node, and the version before's nodes a"
                             f" refresh replaced, {RANK_NODE_BYTES * RANK_FILL:.0f} bytes of entries and"
                             f" {RANK_ITEM_OVERHEAD} of keys and item overhead each",
                             rank_gb * p["dynamodb_gb_month"])]})

    read_path = None
    if traffic.reads_per_second > 0:
        stage, read_path = _read_path(traffic, copies)
        stages.append(stage)

    for s in stages:
        s["monthly_usd"] = round(sum(line["monthly_usd"] for line in s["lines"]), 2)
        s["usd_per_billion_events"] = round(s["monthly_usd"] / events * 1e9, 2)
        for line in s["lines"]:
            line["monthly_usd"] = round(line["monthly_usd"], 2)
    total = round(sum(s["monthly_usd"] for s in stages), 2)
    return {"traffic": asdict(traffic), "monthly_events": round(events), "monthly_events_source": avg_src,
            **({"read_path": read_path} if read_path is not None else {}),
            "units_from": rates.origin,
            "units_per_event": {k: {"value": f.value, "source": f.source} for k, f in per_event.items()},
            "stages": stages, "total_monthly_usd": total, "usd_per_billion_events": round(total / events * 1e9, 2),
            "prices": {"source": "us-east-1 list prices, streamboard/capacity.py PRICES; verify before budgeting",
                       **PRICES}}


ORIGIN = ("API Gateway", "Lambda", "DynamoDB")


def _read_path(traffic: Traffic, copies: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The read path's stage (CloudFront and WAF for every read, the origin for the CDN's misses only) and its
    cost per million reads, the origin's share apart."""
    p = PRICES
    peak, hit = traffic.reads_per_second, traffic.cache_hit_ratio
    reads = peak * traffic.average_share_of_peak * SECONDS_PER_MONTH
    misses = reads * (1 - hit)
    response, ms, memory = (_assumed(k) for k in ("read_response_bytes", "read_api_ms", "read_api_memory_gb"))
    out_gb = reads * response.value / GB
    gb_s = misses * ms.value / 1000 * memory.value
    rru_per_read = dynamodb_read_units(HEAD_BYTES, consistent=False)
    rru = misses * rru_per_read
    share = f"assumed: average reads {traffic.average_share_of_peak:.0%} of the peak"
    miss = f"rule: the CDN's misses, {1 - hit:.1%} of the reads (--cache-hit-ratio {hit:g})"
    lines = {
        "CloudFront": [
            _line("CloudFront HTTPS requests", reads, f"rule: every read; {share}",
                  reads / 10_000 * p["cloudfront_https_requests_per_10k"]),
            _line("CloudFront GB out", out_gb, f"{response.source}; {share}",
                  out_gb * p["cloudfront_transfer_out_per_gb"])],
        "WAF": [
            _line("WAF requests", reads, "rule: WAF inspects every request CloudFront receives, cache hits too",
                  reads / 1e6 * p["waf_requests_per_million"]),
            _line("WAF web ACL and rules", 1, f"rule: one web ACL with {WAF_RULES} rules (per-IP rate limit, AWS"
                  " common rule set; infra cdn.py), monthly",
                  p["waf_web_acl_month"] + WAF_RULES * p["waf_rule_month"])],
        "API Gateway": [
            _line("API Gateway HTTP API requests", misses, miss,
                  misses / 1e6 * p["api_gateway_http_requests_per_million"])],
        "Lambda": [
            _line("read API Lambda requests", misses, miss, misses / 1e6 * p["lambda_requests_per_million"]),
            _line("read API Lambda GB-seconds", gb_s, f"{ms.source}; {memory.source}", gb_s * p["lambda_gb_second"])],
        "DynamoDB": [
            _line("board read units", rru, f"rule: an eventually consistent GetItem of a head within 4 KB"
                  f" ({rru_per_read:g} unit) a miss: limit <= 100 reads nothing else; a longer read's pages come from"
                  " the container's cache after its first", rru / 1e6 * p["dynamodb_read_request_units_per_million"])],
    }
    per_million = {service: sum(line["monthly_usd"] for line in ls if line["unit"] != "WAF web ACL and rules")
                   / reads * 1e6 for service, ls in lines.items()}
    origin = sum(per_million[s] for s in ORIGIN)
    origin_peak = peak * (1 - hit)
    concurrency = origin_peak * ms.value / 1000
    hot_item = origin_peak * rru_per_read / copies
    stage = {"stage": "read path (CloudFront, WAF, API Gateway, Lambda, DynamoDB)",
             "needs": f"{peak:,.0f} board reads/s at peak, {origin_peak:,.0f}/s at the origin: about"
                      f" {concurrency:,.0f} concurrent read API Lambdas at {ms.value:g} ms; were they all one board's,"
                      f" {hot_item:,.0f} read units/s on each of its {copies} head copies (an item serves"
                      f" {DYNAMODB_ITEM_READ_UNITS_PER_S:,}; each container also keeps a head 1 s)"
                      + ("; MORE COPIES NEEDED (board_copies)" if hot_item > DYNAMODB_ITEM_READ_UNITS_PER_S else ""),
             "lines": [line for ls in lines.values() for line in ls]}
    summary = {"reads_per_month": round(reads), "cache_hit_ratio": hit,
               "usd_per_million_reads": round(sum(per_million.values()), 6),
               "origin_usd_per_million_reads": round(origin, 6),
               "origin_share": round(origin / sum(per_million.values()), 4) if sum(per_million.values()) else 0.0,
               "usd_per_million_reads_by_service": {k: round(v, 6) for k, v in per_million.items()},
               "fixed_monthly_usd": p["waf_web_acl_month"] + WAF_RULES * p["waf_rule_month"],
               "source": "per million reads: the lines that grow with reads (the web ACL's monthly fee apart); origin"
                         " = " + ", ".join(ORIGIN) + ", for the CDN's misses only"}
    return stage, summary
