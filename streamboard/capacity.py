"""Capacity and cost projection for a peak load, stage by stage.

Limits are AWS's documented per-resource quotas; prices are assumed us-east-1 list prices (editable below,
verify before budgeting). Throughput per ingest task comes from bench/results/ingest.json when present.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamboard.registry import MAX_RECORD_BYTES

BENCH_RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "ingest.json"

# AWS limits used below.
KINESIS_SHARD_WRITE_RECORDS = 1000  # records/s per shard
KINESIS_SHARD_WRITE_BYTES = 1024 * 1024  # bytes/s per shard
FIREHOSE_DIRECT_PUT_RECORDS = 100_000  # records/s per delivery stream (default quota, larger regions)
FIREHOSE_DIRECT_PUT_BYTES = 5 * 1024 * 1024
DDB_ITEM_WRITE_BYTES = 1024  # one write unit
LAMBDA_ESM_PARALLELIZATION_MAX = 10  # concurrent batches per shard

# Assumed router costs: its time goes mostly to waiting on profile transactions (shared by a user's events in
# a batch) and Firehose puts; a batch averages this many records (requests).
ROUTER_SECONDS_PER_EVENT = 0.004
ROUTER_MEMORY_GB = 0.5  # infra/ router_memory_mb (dev)
ROUTER_RECORDS_PER_INVOCATION = 100

# Assumed list prices, USD (us-east-1).
PRICES = {
    "kinesis_shard_hour": 0.015,
    "kinesis_put_unit_per_million": 0.014,  # 25 KB payload units
    "firehose_per_gb": 0.029,
    "firehose_format_conversion_per_gb": 0.018,
    "lambda_gb_second": 0.0000166667,
    "lambda_per_million_requests": 0.20,
    "s3_put_per_thousand": 0.005,
    "s3_gb_month": 0.023,
    "athena_per_tb_scanned": 5.0,
    "dynamodb_per_million_writes": 0.625,
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "alb_hour": 0.0225,
    "alb_lcu_hour": 0.008,
}
HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class Load:
    peak_events_per_s: float
    event_bytes: int = 300
    events_per_request: int = 100
    average_share_of_peak: float = 0.25
    parquet_ratio: float = 0.15  # Parquet size / JSON size
    users: int = 1_000_000


def _task_events_per_s(default: float = 50_000.0) -> tuple[float, str]:
    """Events/s one ingest task (1 vCPU) sustains, from the last benchmark run, with 30% headroom."""
    try:
        results = json.loads(BENCH_RESULTS.read_text())["results"]["batched_100"]["full"]["events_per_s"]
        return float(results) * 0.7, f"{BENCH_RESULTS.name} (70% of the measured peak)"
    except (OSError, KeyError, ValueError):
        return default, "default (no benchmark results found)"


def project(load: Load) -> dict[str, Any]:
    """Per stage: what the peak needs and what a month costs."""
    peak, size = load.peak_events_per_s, load.event_bytes
    avg = peak * load.average_share_of_peak
    monthly_events = avg * 3600 * 24 * 30
    gb_month = monthly_events * size / 1e9
    per_task, per_task_source = _task_events_per_s()
    tasks = max(2, math.ceil(peak / per_task))  # two for availability
    requests_per_s = peak / load.events_per_request
    # One stream record per request (its events aggregated): the records/s limit counts requests.
    record_bytes = load.events_per_request * size
    records_per_s = requests_per_s * math.ceil(record_bytes / MAX_RECORD_BYTES)
    stream_shards = max(1, math.ceil(max(records_per_s / KINESIS_SHARD_WRITE_RECORDS,
                                         peak * size / KINESIS_SHARD_WRITE_BYTES)))
    # The router runs at most 10 batches per shard at once: its concurrency can ask for more shards.
    router_concurrency = peak * ROUTER_SECONDS_PER_EVENT
    shards = max(stream_shards, math.ceil(router_concurrency / LAMBDA_ESM_PARALLELIZATION_MAX))
    router_parallelization = min(LAMBDA_ESM_PARALLELIZATION_MAX, max(1, math.ceil(router_concurrency / shards)))
    firehose_streams_needed = math.ceil(peak / FIREHOSE_DIRECT_PUT_RECORDS)
    parquet_gb_month = gb_month * load.parquet_ratio
    s3_objects_month = 2 * 60 * 24 * 30  # each type's stream flushes about once a minute
    athena_tb_month = parquet_gb_month / 1000 * 24 * 30 / 2  # hourly refresh reads about half the lake on average
    ddb_writes_month = monthly_events  # one profile transaction write per event (plus dedupe item)

    stages: list[dict[str, Any]] = [
        {"stage": "ingest (Fargate, 1 vCPU / 2 GB tasks)", "needs": f"{tasks} tasks at peak ({per_task:,.0f} events/s "
         f"each, {per_task_source}); {requests_per_s:,.0f} requests/s",
         "monthly_usd": tasks * HOURS_PER_MONTH * (PRICES["fargate_vcpu_hour"] + 2 * PRICES["fargate_gb_hour"])
         + HOURS_PER_MONTH * (PRICES["alb_hour"] + 2 * PRICES["alb_lcu_hour"])},
        {"stage": "stream (Kinesis, provisioned)", "needs": f"{shards} shards (1,000 records/s and 1 MiB/s each; "
         f"{records_per_s:,.0f} records/s, one per request"
         + (f"; {stream_shards} for the writes, more for the router's concurrency)" if shards > stream_shards
            else ")"),
         "monthly_usd": shards * HOURS_PER_MONTH * PRICES["kinesis_shard_hour"]
         + monthly_events / load.events_per_request * math.ceil(record_bytes / 25_000) / 1e6
         * PRICES["kinesis_put_unit_per_million"]},
        {"stage": "router (Lambda, 512 MB)", "needs": f"about {router_concurrency:,.0f} concurrent executions at "
         f"peak ({ROUTER_SECONDS_PER_EVENT * 1000:g} ms an event, assumed): parallelization factor "
         f"{router_parallelization} on {shards} shards",
         "monthly_usd": monthly_events / load.events_per_request / ROUTER_RECORDS_PER_INVOCATION
         * PRICES["lambda_per_million_requests"] / 1e6
         + monthly_events * ROUTER_SECONDS_PER_EVENT * ROUTER_MEMORY_GB * PRICES["lambda_gb_second"]},
        {"stage": "delivery (Firehose, JSON to Parquet)", "needs": f"{firehose_streams_needed} stream(s) per type "
         f"within the default {FIREHOSE_DIRECT_PUT_RECORDS:,} records/s quota",
         "monthly_usd": gb_month * (PRICES["firehose_per_gb"] + PRICES["firehose_format_conversion_per_gb"])},
        {"stage": "lake (S3)",
         "needs": f"{parquet_gb_month:,.1f} GB of Parquet a month, {s3_objects_month:,} objects",
         "monthly_usd": parquet_gb_month * PRICES["s3_gb_month"]
         + s3_objects_month / 1000 * PRICES["s3_put_per_thousand"]},
        {"stage": "leaderboards (Athena, hourly)", "needs": f"about {athena_tb_month:,.2f} TB scanned a month",
         "monthly_usd": athena_tb_month * PRICES["athena_per_tb_scanned"]},
        {"stage": "profiles (DynamoDB on demand)",
         "needs": f"at most {peak * 3:,.0f} writes/s at peak (a dedupe marker per event; the total and category "
                  "items shared by a user's events in one batch)",
         "monthly_usd": ddb_writes_month * 3 / 1e6 * PRICES["dynamodb_per_million_writes"]},
    ]
    for s in stages:
        s["monthly_usd"] = round(s["monthly_usd"], 2)
    return {"load": load.__dict__, "monthly_events": round(monthly_events), "stages": stages,
            "total_monthly_usd": round(sum(s["monthly_usd"] for s in stages), 2),
            "prices": "assumed us-east-1 list prices in streamboard/capacity.py; verify before budgeting"}
