"""The capacity projection follows the documented per-resource limits and scales with the load."""

from __future__ import annotations

from streamboard.capacity import KINESIS_SHARD_WRITE_RECORDS, Load, project
from streamboard.cli import main


def _stage(result: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in result["stages"] if s["stage"].startswith(name))


def test_shards_follow_the_per_shard_record_and_byte_limits() -> None:
    # One record per request: 3,000 single-event requests/s need 3 shards for the records/s limit ...
    single = project(Load(peak_events_per_s=KINESIS_SHARD_WRITE_RECORDS * 3, event_bytes=200, events_per_request=1))
    assert _stage(single, "stream")["needs"].startswith("3 shards")
    # ... while the same events in requests of 100 are 30 records/s: 600 KB/s fits one shard for the writes,
    # but the router's 12 concurrent executions (4 ms an event) need two shards at 10 batches each.
    batched = project(Load(peak_events_per_s=KINESIS_SHARD_WRITE_RECORDS * 3, event_bytes=200))
    needs = _stage(batched, "stream")["needs"]
    assert needs.startswith("2 shards") and "1 for the writes" in needs
    assert "parallelization factor 6 on 2 shards" in _stage(batched, "router")["needs"]
    big_events = project(Load(peak_events_per_s=1000, event_bytes=5000))  # 5 MB/s: bytes decide
    assert _stage(big_events, "stream")["needs"].startswith("5 shards")


def test_costs_grow_with_the_load_and_add_up() -> None:
    low, high = project(Load(peak_events_per_s=1000)), project(Load(peak_events_per_s=100_000))
    assert high["total_monthly_usd"] > 10 * low["total_monthly_usd"]
    assert abs(high["total_monthly_usd"] - sum(s["monthly_usd"] for s in high["stages"])) < 0.05
    assert int(_stage(high, "ingest")["needs"].split()[0]) >= 2  # never fewer than two tasks


def test_capacity_command_prints_every_stage(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["capacity", "--peak", "5000"]) == 0
    out = capsys.readouterr().out
    for stage in ("ingest", "stream", "router", "delivery", "lake", "leaderboards", "profiles", "total about USD"):
        assert stage in out
    assert main(["capacity", "--peak", "5000", "--format", "json"]) == 0
