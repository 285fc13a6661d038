"""The capacity plan: units per event through the AWS rules, the traffic's shape, prices from one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamboard import capacity
from streamboard.capacity import PRICES, Traffic, default_rates, project, rates_from_usage
from streamboard.cli import main

SOURCES = ("counted", "default", "rule", "bench", "assumed", "score share")


def _stage(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["stages"] if s["stage"].startswith(name))


def _line(result: dict[str, Any], stage: str, unit: str) -> dict[str, Any]:
    return next(x for x in _stage(result, stage)["lines"] if x["unit"] == unit)


def test_shards_follow_the_per_shard_record_limit_and_events_per_request() -> None:
    # one record per request: 3,000 single-event requests/s need 3 shards for the records/s limit ...
    single = project(Traffic(3000, events_per_request=1, users=1000))
    assert _stage(single, "stream")["needs"].startswith("3 shards")
    # ... the same events in requests of 100 fit one shard, and take 100 times fewer PUT payload units
    batched = project(Traffic(3000, events_per_request=100, users=1000))
    assert _stage(batched, "stream")["needs"].startswith("1 shards")
    units = _line(single, "stream", "PUT payload units")["per_month"]
    assert units == pytest.approx(100 * _line(batched, "stream", "PUT payload units")["per_month"])
    # and the router's requests follow the stream's records
    assert _line(single, "router", "requests")["per_month"] == pytest.approx(
        100 * _line(batched, "router", "requests")["per_month"])


def test_profile_writes_follow_the_players_with_scores_in_a_router_batch() -> None:
    per_write = capacity.DEFAULTS["dynamodb_write_units_per_profile_write"].value
    # a game client's requests: 100 events of its own player, 10% scores: one update per request
    client = project(Traffic(10_000, score_share=0.1))
    writes = _line(client, "profiles", "write request units (router)")
    assert writes["per_month"] == pytest.approx(client["monthly_events"] / 100 * per_write, rel=1e-3)
    assert writes["monthly_usd"] == pytest.approx(
        writes["per_month"] / 1e6 * PRICES["dynamodb_write_request_units_per_million"], abs=0.01)
    # a game server's requests: one event each of 100 players: a player with a score is one update
    server = project(Traffic(10_000, score_share=0.1, players_per_request=100))
    assert _line(server, "profiles", "write request units (router)")["per_month"] == pytest.approx(
        server["monthly_events"] * 0.1 * per_write, rel=1e-2)
    # single-event requests from distinct players: an update per score event
    single = project(Traffic(10_000, events_per_request=1, score_share=0.5, users=10_000_000))
    assert _line(single, "profiles", "write request units (router)")["per_month"] == pytest.approx(
        single["monthly_events"] * 0.5 * per_write, rel=1e-2)
    # each hourly refresh reconciles the players who scored in the hour: all of 1,000 players, a share of 10M
    few, many = project(Traffic(10_000, users=1000)), project(Traffic(10_000, users=10_000_000))
    assert _line(few, "profiles", "write request units (reconcile)")["per_month"] == pytest.approx(
        capacity.HOURS_PER_MONTH * 1000 * per_write, rel=1e-3)
    hour_scores = many["monthly_events"] * 0.1 / capacity.HOURS_PER_MONTH
    assert _line(many, "profiles", "write request units (reconcile)")["per_month"] < (
        capacity.HOURS_PER_MONTH * hour_scores * per_write)
    assert _line(many, "leaderboards", "TB scanned")["per_month"] > _line(few, "leaderboards", "TB scanned")[
        "per_month"]
    with pytest.raises(capacity.PlanError, match="players-per-request"):
        Traffic(10_000, events_per_request=10, players_per_request=11)


def test_the_lake_grows_with_months_but_the_refresh_reads_stay_flat() -> None:
    m3, m12 = project(Traffic(10_000, month=3)), project(Traffic(10_000, month=12))
    assert _line(m12, "lake", "GB-months")["per_month"] == pytest.approx(4 * _line(m3, "lake", "GB-months")[
        "per_month"])
    assert _line(m12, "leaderboards", "TB scanned")["per_month"] == pytest.approx(
        _line(m3, "leaderboards", "TB scanned")["per_month"])
    # the first month's refresh holds fewer dedupe ids than the full horizon
    assert _line(project(Traffic(10_000, month=1)), "leaderboards", "TB scanned")["per_month"] < _line(
        m3, "leaderboards", "TB scanned")["per_month"]


def test_the_refresh_reads_the_per_player_state_as_often_as_its_statements_name_it() -> None:
    """More players, more bytes a refresh: each whole read of a per-player table by a batch's statements
    (counted from their SQL as Trino runs it, a named query once per reference) bills the table again. The
    reads are pinned here, so that a statement that reads a table once more changes the plan knowingly."""
    reads = capacity.refresh_reads()
    # the window totals: step 09's MERGE, step 12's prune, the snapshot's cutoffs and candidates, the
    # reconcile and the ranks' users; the names: step 07's MERGE, the snapshot, the reconcile and the ranks;
    # the firsts: step 03's new firsts, step 06's MERGE and the reconcile
    assert {t: reads[t][0] for t in ("state_window_totals", "state_user_names", "state_challenge_firsts")} == {
        "state_window_totals": 6, "state_user_names": 4, "state_challenge_firsts": 3}
    few, many = project(Traffic(10_000, users=100_000)), project(Traffic(10_000, users=10_000_000))
    grown = (_line(many, "leaderboards", "TB scanned")["per_month"]
             - _line(few, "leaderboards", "TB scanned")["per_month"]) * 1e12 / capacity.HOURS_PER_MONTH
    a = capacity.ASSUMED
    per_player = (6 * (a["categories"][0] + 1) * a["window_total_row_bytes"][0] + 4 * a["user_name_row_bytes"][0]
                  + 3 * a["challenges_per_user"][0] * a["challenge_first_row_bytes"][0])
    assert grown == pytest.approx(9_900_000 * per_player, rel=1e-6)
    needs = next(s["needs"] for s in many["stages"] if s["stage"].startswith("leaderboards"))
    assert "state_window_totals (6 whole, 0 narrowed)" in needs


def test_costs_add_up_per_stage_and_per_billion_events_and_every_figure_has_a_source() -> None:
    result = project(Traffic(41_667, users=1_000_000, month=12))
    for s in result["stages"]:
        assert s["monthly_usd"] == pytest.approx(sum(x["monthly_usd"] for x in s["lines"]), abs=0.05)
        assert s["usd_per_billion_events"] == pytest.approx(s["monthly_usd"] / result["monthly_events"] * 1e9,
                                                            abs=0.01)
        for line in s["lines"]:
            assert line["source"].startswith(SOURCES), line
    assert result["total_monthly_usd"] == pytest.approx(sum(s["monthly_usd"] for s in result["stages"]), abs=0.05)
    for unit in result["units_per_event"].values():
        assert unit["source"].startswith(SOURCES)


def test_router_duration_takes_the_benchmarked_cpu_per_event(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bench = tmp_path / "router.json"
    monkeypatch.setattr(capacity, "ROUTER_BENCH", bench)
    missing = project(Traffic(10_000))
    assert _line(missing, "router", "GB-seconds")["source"].startswith("assumed")
    bench.write_text(json.dumps({"results": [{"shape": "batched", "events_per_record": 100,
                                              "per_event_cpu_ms": 5.0}]}))
    slow = project(Traffic(10_000))
    line = _line(slow, "router", "GB-seconds")
    assert line["source"].startswith("bench: router.json")
    # the same sink calls; each event 5 ms of CPU instead of the assumed 0.07, at 1 GB
    extra = slow["monthly_events"] * (5.0 - capacity.ASSUMED["router_cpu_ms_per_event"][0]) / 1000
    assert line["per_month"] - _line(missing, "router", "GB-seconds")["per_month"] == pytest.approx(extra, rel=1e-3)


def test_ingest_tasks_take_our_benchmarked_events_per_s_from_the_file_the_benchmark_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import ingest as bench_ingest

    monkeypatch.setattr(bench_ingest, "RESULTS", tmp_path)
    monkeypatch.setattr(capacity, "INGEST_BENCH", tmp_path / "ingest.json")
    assert capacity.ingest_task_events_per_s().source.startswith("assumed")

    def entry(requests_per_s: float, batch: int) -> dict[str, Any]:
        return {"requests_per_s": requests_per_s, "events_per_s": requests_per_s * batch, "p50_ms": 1.0,
                "p99_ms": 2.0, "server_cpus": 1.0, "load_generator_cpus": 0.3, "rss_mb": 40.0, "peak_rss_mb": 41.0}

    results = {shape: bench_ingest.summarise(shape, {"full": [entry(ours, batch)], "bare_asgi": [entry(5000, batch)],
                                                     "bare_aiohttp": [entry(4000, batch)]})
               for shape, batch, ours in (("batched_100", 100, 3000), ("single_event", 1, 4000))}
    method = {"load_generator": "wrk", "connections": 32, "seconds_per_point": 5.0, "rounds": 1, "pinning": "none"}
    bench_ingest.write(results, method)
    # ours over the best bare endpoint of each shape, against the targets
    assert results["batched_100"]["ceiling"] == "bare_asgi" and results["batched_100"]["ratio_events_per_s"] == 0.6
    assert not results["batched_100"]["meets_target"] and results["single_event"]["meets_target"]
    figure = capacity.ingest_task_events_per_s()
    assert figure.value == pytest.approx(0.7 * 300_000) and figure.source.startswith("bench: ingest.json")
    assert "**0.60**" in (tmp_path / "ingest.md").read_text()


def test_units_from_a_run_replace_the_defaults() -> None:
    report = {"events_accepted": 1000, "score_events": 500, "refreshes": 1, "profile_updates": 400,
              "profile_reconciles": 100,
              "units": {"kinesis_put_units": 40, "firehose_records": 3, "firehose_billed_bytes": 600_000,
                        "dynamodb_write_units": 1500.0, "dynamodb_read_units": 10.0, "athena_bytes_scanned": 0,
                        "athena_bytes_scanned_last_refresh": 20 * 10 * 1024 * 1024, "lambda_invocations": 9}}
    rates = rates_from_usage(report, "run-dir")
    result = project(Traffic(1000, score_share=0.1), rates)
    per_event = result["units_per_event"]
    assert per_event["kinesis_put_units"]["value"] == 0.04 and "run-dir" in per_event["kinesis_put_units"]["source"]
    # the run's 1,500 write units over its 500 profile writes: 3 units a write, for this traffic's updates
    assert rates.values["dynamodb_write_units_per_profile_write"].value == 3.0
    assert "run-dir" in per_event["dynamodb_write_units"]["source"]
    assert per_event["dynamodb_write_units"]["value"] == pytest.approx(3.0 / 100, rel=1e-3)  # a request's player
    assert result["traffic"]["score_share"] == 0.5  # the run's
    assert "20 statements" in _stage(result, "leaderboards")["needs"]
    with pytest.raises(capacity.PlanError, match="no events"):
        rates_from_usage({**report, "events_accepted": 0}, "empty")
    assert default_rates().origin.startswith("documented defaults")


def test_capacity_command_prints_every_stage_and_rejects_bad_input(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--peak", "5000", "--score-share", "0.2", "--month", "3"]) == 0
    out = capsys.readouterr().out
    for stage in ("ingest", "stream", "router", "delivery", "lake", "leaderboards", "profiles", "total about USD",
                  "per billion events", "write request units"):
        assert stage in out
    assert main(["capacity", "--peak", "5000", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]
    assert main(["capacity", "--peak", "5000", "--score-share", "1.5"]) == 1
    assert main(["capacity", "--peak", "5000", "--from-data-dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--score-share" in err[0] and "no usage counters" in err[1]


def test_the_seeds_volume_costs_at_most_3000_usd_a_month_and_every_line_has_a_source() -> None:
    """Issue 11's case: 27B events a month in requests of 100, 10% scores, 1M players, a year in."""
    result = project(Traffic(41_667, events_per_request=100, score_share=0.1, users=1_000_000, month=12))
    assert result["total_monthly_usd"] <= 3000
    profiles = _stage(result, "profiles")
    assert profiles["monthly_usd"] < 0.5 * result["total_monthly_usd"]  # no longer 93% of the bill
    for stage in result["stages"]:
        for line in stage["lines"]:
            assert line["source"].split(":")[0] in ("counted", "default", "rule", "bench", "assumed"), \
                line


def test_the_read_path_prices_every_read_at_the_edge_and_only_the_misses_at_the_origin() -> None:
    result = project(Traffic(41_667, reads_per_second=1000, cache_hit_ratio=0.95))
    reads = result["read_path"]
    assert reads["origin_usd_per_million_reads"] <= 0.10  # issue 12's target
    by = reads["usd_per_million_reads_by_service"]
    # CloudFront: $0.0100 per 10,000 HTTPS requests and 1.5 KB a read at $0.085/GB; WAF $0.60 per million
    assert by["CloudFront"] == pytest.approx(1e6 / 10_000 * PRICES["cloudfront_https_requests_per_10k"]
                                             + 1e6 * 1500 / 1e9 * PRICES["cloudfront_transfer_out_per_gb"], rel=1e-3)
    assert by["WAF"] == pytest.approx(PRICES["waf_requests_per_million"], rel=1e-3)
    # the origin sees 5% of the reads: 50,000 a million, each an API call, a Lambda request and half a read unit
    assert by["API Gateway"] == pytest.approx(0.05 * PRICES["api_gateway_http_requests_per_million"], rel=1e-3)
    assert by["DynamoDB"] == pytest.approx(0.05 * 0.5 * PRICES["dynamodb_read_request_units_per_million"], rel=1e-3)
    assert reads["origin_usd_per_million_reads"] == pytest.approx(
        by["API Gateway"] + by["Lambda"] + by["DynamoDB"], abs=1e-3)
    assert reads["usd_per_million_reads"] == pytest.approx(sum(by.values()), abs=1e-3)
    stage = _stage(result, "read path")
    assert all(line["source"].startswith(SOURCES) for line in stage["lines"])
    assert _line(result, "read path", "CloudFront HTTPS requests")["per_month"] == pytest.approx(
        1000 * 0.25 * capacity.SECONDS_PER_MONTH)  # the peak at the average share, as for events
    assert "50/s at the origin" in stage["needs"]
    # a worse hit ratio doubles the origin's share; the edge's cost per read stays; no reads, no read path
    worse = project(Traffic(41_667, reads_per_second=1000, cache_hit_ratio=0.9))["read_path"]
    assert worse["origin_usd_per_million_reads"] == pytest.approx(2 * reads["origin_usd_per_million_reads"], rel=1e-2)
    assert worse["usd_per_million_reads_by_service"]["CloudFront"] == pytest.approx(by["CloudFront"])
    none = project(Traffic(41_667))
    assert "read_path" not in none and not any(s["stage"].startswith("read path") for s in none["stages"])
    assert result["total_monthly_usd"] == pytest.approx(none["total_monthly_usd"] + stage["monthly_usd"], abs=0.05)
    with pytest.raises(capacity.PlanError, match="cache-hit-ratio"):
        Traffic(1000, reads_per_second=10, cache_hit_ratio=1.5)


def test_board_writes_follow_the_paged_layout() -> None:
    # a board of 40 players fits its head: an item of about 1.7 KB per copy, no pages, read once before the replace
    assert capacity.board_units_per_refresh(40, 36.0, copies=2) == (2 * 2, 1.0)
    # 1,000 players at 36 bytes: a head of 99 (within 4 KB: 4 units a copy), 10 pages written and 10 deleted
    wru, rru = capacity.board_units_per_refresh(1000, 36.0, copies=2)
    assert (wru, rru) == (2 * 4 + 2 * (9 * 4 + 1), 1.0)
    assert _line(project(Traffic(10_000)), "profiles", "board write units")["per_month"] == pytest.approx(
        capacity.HOURS_PER_MONTH * 15 * wru)


def test_capacity_command_prints_the_read_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--peak", "41667", "--reads-per-second", "1000", "--cache-hit-ratio", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "read path (CloudFront, WAF, API Gateway, Lambda, DynamoDB)" in out and "CloudFront GB out" in out
    summary = next(line for line in out.splitlines() if line.startswith("read path: USD"))
    assert "per million reads" in summary and "of which the origin" in summary
    assert main(["capacity", "--peak", "41667", "--reads-per-second", "-1"]) == 1
    assert "--reads-per-second" in capsys.readouterr().err
