"""Near-real-time profiles without an item per event (issue 11; ``streamboard.profiles``): the router's live
points, the reconcile of each refresh, and a read that combines them, on both profile stores and through the
local pipeline against a plain-Python oracle."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from processors import leaderboards
from streamboard.adapters.local.stores import LocalProfileStore
from streamboard.backend import build_aws_backend
from streamboard.errors import SinkError
from streamboard.ports import ProfileStore
from streamboard.profiles import LIVE_LAG, Base, slot_of
from streamboard.registry import REGISTRY, format_ts
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings
from streamboard.usage import Usage
from tests.conftest import stream_record

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["local", "aws"])
def store(request: pytest.FixtureRequest, tmp_path: Path, fake_aws_credentials: None) -> Iterator[ProfileStore]:
    """The profile store of each backend (aws: DynamoDB on moto)."""
    if request.param == "local":
        yield LocalProfileStore(tmp_path / "profiles.db")
        return
    with mock_aws():
        from streamboard.adapters.aws.provision import provision

        settings = Settings(data_dir=tmp_path / "data")
        yield build_aws_backend(settings, REGISTRY, provision(settings, REGISTRY)).profiles


def at(minutes: float) -> str:
    return format_ts(T0 + dt.timedelta(minutes=minutes))


def score(event_id: str, points: int, *, user: str = "ada", category: str = "chess", challenge: str | None = None,
          ts: float = 0, received: float = 0, name: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "score", "user_id": user, "ts": at(ts), "category": category,
            "points": points, "challenge_id": challenge, "user_name": name, "received_at": at(received)}


def route(store: ProfileStore, events: list[dict[str, Any]], minute: float) -> None:
    """The router's batch at ``minute``: it stamps routed_at, then updates the profiles."""
    store.apply([{**ev, "routed_at": at(minute)} for ev in events], at(minute))


def lake_base(categories: dict[str, int], rows: dict[float, dict[str, int]] | None = None, **extra: Any) -> Base:
    """What a refresh finds in the lake: the counted points per category and the points of its rows by routing
    minute (what ``state_profile_rows`` sums per slot)."""
    in_lake: dict[tuple[int, str], int] = defaultdict(int)
    for minute, per_category in (rows or {}).items():
        for category, points in per_category.items():
            in_lake[(slot_of(at(minute)), category)] += points
    base = Base(categories=defaultdict(int, categories), in_lake=dict(in_lake), **extra)
    return base


def reconcile(store: ProfileStore, base: Base, *, batch: int, as_of: float, user: str = "ada") -> None:
    store.reconcile({user: base}, batch=batch, cut=slot_of(T0 + dt.timedelta(minutes=as_of) - LIVE_LAG),
                    now=at(as_of))


def points(store: ProfileStore, user: str = "ada") -> dict[str, int]:
    profile = store.get(user)
    assert profile is None or profile.total == sum(profile.categories.values())
    return {} if profile is None else profile.categories


def test_live_points_count_as_routed_and_a_reconcile_sets_the_lake_totals(store: ProfileStore) -> None:
    route(store, [score("e1", 10), score("e2", 5, category="go")], 0)
    assert points(store) == {"chess": 10, "go": 5}
    route(store, [score("e3", 7)], 6)  # the next slot
    assert points(store) == {"chess": 17, "go": 5}

    # The refresh at minute 8 finds e1 and e2 in the lake (e3 is still in Firehose's buffer): exact, and e3 on top.
    reconcile(store, lake_base({"chess": 10, "go": 5}, {0: {"chess": 10, "go": 5}}), batch=1, as_of=8)
    assert points(store) == {"chess": 17, "go": 5}
    route(store, [score("e4", 1)], 9)  # routed after the refresh read the lake
    assert points(store) == {"chess": 18, "go": 5}

    # Later: everything is in the lake; the slots behind the cut are dropped, those after it cancel.
    reconcile(store, lake_base({"chess": 18, "go": 5}, {6: {"chess": 7}, 9: {"chess": 1}}), batch=2, as_of=27)
    assert points(store) == {"chess": 18, "go": 5}
    reconcile(store, lake_base({"chess": 18, "go": 5}), batch=3, as_of=120)
    assert points(store) == {"chess": 18, "go": 5}
    profile = store.get("ada")
    assert profile is not None and profile.total == 23 and profile.updated_at == at(9)
    assert store.get("nobody") is None


def test_a_duplicate_delivery_counts_twice_only_until_the_lake_has_it(store: ProfileStore) -> None:
    first = score("e1", 10, received=0)
    resent = score("e1", 10, received=1)  # the client sent it again: a second delivery of one event_id
    route(store, [first, first], 0)  # the same delivery twice in one batch is one
    assert points(store) == {"chess": 10}
    route(store, [resent], 1)
    assert points(store) == {"chess": 20}  # near real time, a duplicate may count twice
    route(store, [first], 2)  # a retried stream record: the same delivery routed again
    assert points(store) == {"chess": 30}
    # The lake counts the event once, and holds the three routings (the rows the router added).
    reconcile(store, lake_base({"chess": 10}, {0: {"chess": 10}, 1: {"chess": 10}, 2: {"chess": 10}}),
              batch=1, as_of=5)
    assert points(store) == {"chess": 10}


def test_an_event_routed_but_not_delivered_counts_until_its_slot_is_behind_the_cut(store: ProfileStore) -> None:
    route(store, [score("e1", 10)], 0)  # Firehose refused the record: the router reports it, Kinesis retries
    route(store, [score("e1", 10)], 1)  # delivered this time
    assert points(store) == {"chess": 20}
    reconcile(store, lake_base({"chess": 10}, {1: {"chess": 10}}), batch=1, as_of=5)
    assert points(store) == {"chess": 20}  # never less than routed; the failed routing may count
    reconcile(store, lake_base({"chess": 10}, {1: {"chess": 10}}), batch=2, as_of=30)
    assert points(store) == {"chess": 10}  # its slot is behind the cut: the lake is the truth


def test_a_refresh_racing_with_live_updates_loses_nothing(store: ProfileStore) -> None:
    route(store, [score("e1", 10)], 0)
    # The refresh reads the lake (e1 there), then the router updates the profile, then the reconcile writes.
    base = lake_base({"chess": 10}, {0: {"chess": 10}})
    route(store, [score("e2", 3), score("e3", 4, category="go")], 0.5)
    reconcile(store, base, batch=1, as_of=1)
    assert points(store) == {"chess": 13, "go": 4}
    # And a router batch the lake holds before its update lands counts once it does.
    route(store, [score("e4", 2)], 7)
    reconcile(store, lake_base({"chess": 15, "go": 4}, {0: {"chess": 13, "go": 4}, 7: {"chess": 2}}),
              batch=2, as_of=8)
    assert points(store) == {"chess": 15, "go": 4}


def test_a_live_update_between_the_local_reconciles_read_and_its_write_is_kept(tmp_path: Path) -> None:
    """The local reconcile computes its updates without the write lock (as two parts of a batch do side by
    side): a router batch landing after it read the items and before it writes them is not overwritten, its
    user reconciled again from the item as it is then; the users it did not touch are written as computed."""
    store = LocalProfileStore(tmp_path / "profiles.db")
    route(store, [score("e1", 10), score("b1", 6, user="bob")], 0)
    real = store._profile_texts
    reads: list[int] = []

    def racing(conn: Any, users: Any) -> dict[str, bytes]:
        texts = real(conn, users)
        if not reads:  # the reconcile's first read: the router lands right after it, in a slot after the cut
            route(store, [score("e2", 3, ts=29, received=29), score("e3", 4, category="go", ts=29, received=29)],
                  29)
        reads.append(len(users))
        return texts

    store._profile_texts = racing  # type: ignore[method-assign]
    # at minute 30 the lake holds e1 and b1 (and a name for each, which the items do not have yet: the reconcile
    # writes both), and their slot is behind the cut
    store.reconcile({"ada": lake_base({"chess": 10}, name=(at(0), "e1", "Ada")),
                     "bob": lake_base({"chess": 6}, name=(at(0), "b1", "Bob"))},
                    batch=1, cut=slot_of(T0 + dt.timedelta(minutes=30) - LIVE_LAG), now=at(30))
    assert reads == [2, 2]  # read before the lock, then again under it
    assert points(store) == {"chess": 13, "go": 4}  # e2 and e3 kept
    assert points(store, "bob") == {"chess": 6}
    for user in ("ada", "bob"):
        item = store._load(store.db.conn(), user, "profile")
        assert item is not None and item["rb"] == 1 and not any(k.startswith("p0") or k.startswith(f"p{slot_of(T0)}")
                                                              for k in item)


def test_a_reconcile_never_overwrites_a_later_batch(store: ProfileStore) -> None:
    route(store, [score("e1", 10), score("e2", 20)], 0)
    reconcile(store, lake_base({"chess": 30}, {0: {"chess": 30}}), batch=5, as_of=2)
    reconcile(store, lake_base({"chess": 10}, {0: {"chess": 10}}), batch=4, as_of=1)  # resumed late
    assert points(store) == {"chess": 30}


def test_a_late_batch_never_overwrites_a_later_batchs_challenge_first(store: ProfileStore) -> None:
    route(store, [score("e-live", 40, challenge="daily", ts=3)], 3)
    reconcile(store, lake_base({"go": 30}, firsts={"daily": (at(1), "e-1", "go", 30)}), batch=5, as_of=4)
    assert points(store) == {"go": 30}  # the live completion is not the first
    # batch 4, resumed late, saw an older lake: had its first replaced batch 5's, e-live would count
    reconcile(store, lake_base({"go": 1}, firsts={"daily": (at(5), "e-5", "go", 1)}), batch=4, as_of=2)
    assert points(store) == {"go": 30}


def test_a_challenge_counts_its_first_completion_live_and_after_a_reconcile(store: ProfileStore) -> None:
    later = score("e-later", 50, challenge="daily", ts=5)
    route(store, [later, score("e-plain", 7)], 0)
    assert points(store) == {"chess": 57}
    earlier = score("e-earlier", 30, category="go", challenge="daily", ts=1, received=2)
    route(store, [earlier], 2)  # arrives late, but completed first: it counts instead
    assert points(store) == {"chess": 7, "go": 30}
    route(store, [later, score("e-third", 99, challenge="daily", ts=9)], 3)  # redelivery, a later completion
    assert points(store) == {"chess": 7, "go": 30}

    # The lake holds the first two: its first completion is e-earlier. Their live copies stay until their slot
    # is behind the cut, and count once: the lake's first is one of them.
    base = lake_base({"chess": 7, "go": 30}, {0: {"chess": 7}}, firsts={"daily": (at(1), "e-earlier", "go", 30)})
    reconcile(store, base, batch=1, as_of=4)
    assert points(store) == {"chess": 7, "go": 30}
    # An even earlier completion arrives after the reconcile: it beats the lake's first.
    route(store, [score("e-first", 4, category="chess", challenge="daily", ts=0.5, received=5)], 5)
    assert points(store) == {"chess": 11}
    # Once the lake holds it and its slot is behind the cut, the lake's totals alone say the same.
    later_base = lake_base({"chess": 11}, firsts={"daily": (at(0.5), "e-first", "chess", 4)})
    reconcile(store, later_base, batch=2, as_of=40)
    assert points(store) == {"chess": 11}
    # and a completion of the same challenge routed after that reconcile does not count: it is not the first
    route(store, [score("e-fourth", 60, challenge="daily", ts=41, received=41)], 41)
    assert points(store) == {"chess": 11}


def test_challenge_ties_on_ts_go_to_the_smallest_event_id(store: ProfileStore) -> None:
    route(store, [score("b-event", 20, challenge="c")], 0)
    route(store, [score("a-event", 5, challenge="c")], 1)
    assert points(store) == {"chess": 5}


def test_the_latest_name_wins_in_a_batch_and_after_a_reconcile(store: ProfileStore) -> None:
    route(store, [score("e2", 1, name="Ada L.", ts=3), score("e1", 1, name="Ada", ts=1)], 3)
    profile = store.get("ada")
    assert profile is not None and profile.user_name == "Ada L."  # the latest ts of the batch, not the last one
    route(store, [score("e0", 1, name="Ada Old", ts=0)], 4)
    profile = store.get("ada")  # one update per batch cannot compare names: until a refresh, the last batch's
    assert profile is not None and profile.user_name == "Ada Old"
    reconcile(store, lake_base({"chess": 3}, {3: {"chess": 2}, 4: {"chess": 1}}, name=(at(3), "e2", "Ada L.")),
              batch=1, as_of=5)
    route(store, [score("e-1", 1, name="Ada Older", ts=-1)], 6)  # an older event's name no longer wins
    profile = store.get("ada")
    assert profile is not None and profile.user_name == "Ada L." and profile.total == 4


def test_a_reconcile_that_changes_no_read_writes_nothing(tmp_path: Path) -> None:
    usage = Usage(tmp_path / "usage.db")
    store = LocalProfileStore(tmp_path / "profiles.db", usage)
    route(store, [score("e1", 10, name="Ada")], 0)
    written = usage.report()["units"]["dynamodb_write_units"]
    # the lake holds the one routing: the profile reads the same with or without the write
    reconcile(store, lake_base({"chess": 10}, {0: {"chess": 10}}, name=(at(0), "e1", "Ada")), batch=1, as_of=1)
    assert usage.report()["units"]["dynamodb_write_units"] == written
    assert usage.report()["units"]["dynamodb_read_units"] == 0.5  # its eventually consistent GetItem
    route(store, [score("e2", 5)], 2)
    assert points(store) == {"chess": 15}
    # a duplicate to take back: written
    route(store, [score("e2", 5)], 3)
    reconcile(store, lake_base({"chess": 15}, {0: {"chess": 10}, 2: {"chess": 5}}), batch=2, as_of=60)
    assert usage.report()["units"]["dynamodb_write_units"] > written + 2
    assert points(store) == {"chess": 15}


def test_the_router_pays_one_write_per_user_per_batch(tmp_path: Path) -> None:
    usage = Usage(tmp_path / "usage.db")
    store = LocalProfileStore(tmp_path / "profiles.db", usage)
    events = [score(str(uuid.uuid4()), 1, user=f"u{i % 3}", category=("chess", "go")[i % 2]) for i in range(300)]
    route(store, events, 0)
    assert usage.report()["units"]["dynamodb_write_units"] == 3  # three small items, one update each


# --- through the local pipeline, against the oracle ---------------------------------------------------------------


def oracle(deliveries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counted points per user and category: an event_id once (its first delivery), a challenge's first
    completion only (earliest ts, then smallest event_id)."""
    first_delivery: dict[str, dict[str, Any]] = {}
    for ev in deliveries:
        first_delivery.setdefault(ev["event_id"], ev)
    firsts: dict[tuple[str, str], dict[str, Any]] = {}
    for ev in first_delivery.values():
        if ev.get("challenge_id"):
            key = (ev["user_id"], ev["challenge_id"])
            if key not in firsts or (ev["ts"], ev["event_id"]) < (firsts[key]["ts"], firsts[key]["event_id"]):
                firsts[key] = ev
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ev in first_delivery.values():
        if not ev.get("challenge_id") or firsts[(ev["user_id"], ev["challenge_id"])] is ev:
            out[ev["user_id"]][ev["category"]] += ev["points"]
    return {u: dict(c) for u, c in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize(("parts", "worker"), [(1, False), (3, False), (3, True)])
def test_profiles_are_exact_after_each_refresh_and_never_below_the_routed_events(tmp_path: Path, parts: int,
                                                                                 worker: bool) -> None:
    """Random traffic with resent events, repeated stream records and challenges, in rounds: after each
    round's routing every profile counts at least the distinct events routed so far; after each refresh every
    profile equals the oracle, and so do the racing router batches' events once the next refresh has them.
    With ``parts`` > 1 each reconcile (the first build's too) runs as that many statements, a share of the
    players each; with ``worker``, every part is written on the reconcile's worker process while the refresh
    goes on with the ranks."""
    rng = random.Random(5)
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data", shards=2, profile_reconcile_parts=parts,
                                 profile_reconcile_parts_full=parts,
                                 profile_reconcile_worker_rows=0 if worker else 10**9))
    now = dt.datetime.now(dt.UTC)
    users = [f"p{i}" for i in range(12)]
    sent: list[dict[str, Any]] = []  # every accepted client event, in order (resends included)
    for round_ in range(4):
        records = []
        for _ in range(25):
            body = []
            for _ in range(rng.randint(1, 6)):
                if sent and rng.random() < 0.15:
                    body.append(dict(rng.choice(sent)))  # the client sends an event again
                    continue
                event = {"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": rng.choice(users),
                         "ts": format_ts(now - dt.timedelta(minutes=rng.uniform(0, 600))),
                         "category": rng.choice(("chess", "go")), "points": rng.randint(1, 100)}
                if rng.random() < 0.3:
                    event["challenge_id"] = f"c{rng.randint(1, 3)}"
                body.append(event)
            records.append(stream_record(body, received_at=now + dt.timedelta(seconds=len(sent))))
            sent.extend(body)
        records += rng.sample(records, 5)  # stream records delivered twice
        pipeline.backend.stream.put_records(records)
        pipeline.esm.poll_all()  # routed, not yet in the lake
        routed = oracle(sent)
        for user in users:
            got = points(pipeline.backend.profiles, user)
            for category, expected in routed.get(user, {}).items():
                assert got.get(category, 0) >= expected, (round_, user, got, routed[user])

        if round_ == 2:  # a router batch lands between the reconcile's query and its write
            racing = [{"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": "p0", "ts": format_ts(now),
                       "category": "chess", "points": 1000}]
            real = leaderboards.reconcile_profiles

            calls: list[int] = []

            def racing_reconcile(backend: Any, plan: Any, rows: list[dict[str, Any]],
                                 racing: list[dict[str, Any]] = racing, real: Any = real,
                                 calls: list[int] = calls) -> int:
                if not calls:  # before the first part's write
                    backend.stream.put_records([stream_record(racing, received_at=now)])
                    pipeline.esm.poll_all()
                calls.append(len(rows))
                return real(backend, plan, rows)

            real_worker = leaderboards.reconcile_worker

            def racing_worker(backend: Any, processes: int = 1, real_worker: Any = real_worker,
                              calls: list[int] = calls, racing: list[dict[str, Any]] = racing) -> Any:
                made = real_worker(backend, processes)
                submit = made.submit

                def racing_submit(rows: list[dict[str, Any]], batch: int, cut: int,
                                  racing: list[dict[str, Any]] = racing) -> Any:
                    if not calls:  # before the worker gets the first part
                        backend.stream.put_records([stream_record(racing, received_at=now)])
                        pipeline.esm.poll_all()
                    calls.append(len(rows))
                    return submit(rows, batch, cut)

                made.submit = racing_submit
                return made

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(leaderboards, "reconcile_profiles", racing_reconcile)
                mp.setattr(leaderboards, "reconcile_worker", racing_worker)
                summary = pipeline.refresh()
            assert summary["profiles"]["parts"] == parts
            assert ("worker_peak_rss_mb" in summary["profiles"]) is worker
            assert len(calls) == parts and [k for k in summary["steps"] if k.startswith("profile_reconcile")] == (
                ["profile_reconcile"] if parts == 1 else [f"profile_reconcile_{i}of{parts}" for i in (1, 2, 3)])
            sent.extend(racing)
            assert points(pipeline.backend.profiles, "p0") == oracle(sent)["p0"]  # the racing batch counts
        else:
            pipeline.refresh()
        expected = oracle(sent)
        for user in users:
            assert points(pipeline.backend.profiles, user) == expected.get(user, {}), (round_, user)


def test_a_part_failing_in_the_reconcile_worker_fails_the_refresh_and_the_rerun_writes_it(tmp_path: Path) -> None:
    """The worker's error reaches the refresh with its reason (the batch is not recorded done), the next refresh
    resumes the batch and writes the profiles; and a worker goes on taking parts after a part's error."""
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data", profile_reconcile_worker_rows=0))
    now = dt.datetime.now(dt.UTC)
    sent = [{"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"p{i % 5}", "ts": format_ts(now),
             "category": ("chess", "go")[i % 2], "points": i + 1} for i in range(30)]
    pipeline.backend.stream.put_records([stream_record(sent, received_at=now)])
    real_worker = leaderboards.reconcile_worker

    def unreadable_first_part(backend: Any, processes: int = 1) -> Any:
        made = real_worker(backend, processes)
        submit = made.submit
        made.submit = lambda rows, batch, cut: submit([*rows, {"kind": "bogus", "user_id": "p0"}], batch, cut)
        return made

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(leaderboards, "reconcile_worker", unreadable_first_part)
        with pytest.raises(SinkError, match="unknown reconcile row kind 'bogus'"):
            pipeline.refresh()
    summary = pipeline.refresh()
    assert summary["resumed"] and summary["profiles"]["players"] == 5
    expected = oracle(sent)
    assert {f"p{i}": points(pipeline.backend.profiles, f"p{i}") for i in range(5)} == expected

    from streamboard.runtime.reconcile_worker import ReconcileWorker

    worker = ReconcileWorker(tmp_path / "other.db", None)
    try:
        with pytest.raises(SinkError, match="unknown reconcile row kind"):
            worker.submit([{"kind": "bogus", "user_id": "x"}], 1, 0).result(timeout=60)
        rows = [{"kind": "user", "user_id": "x", "totals": "chess:7", "slots": None, "name": None, "ts": None,
                 "event_id": None, "item_key": None, "points": None}]
        assert worker.submit(rows, 1, 0).result(timeout=60)[0] == 1
    finally:
        worker.close()
    assert points(LocalProfileStore(tmp_path / "other.db"), "x") == {"chess": 7}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_reconcile_worker_dies_with_the_refresh_process(tmp_path: Path) -> None:
    """A refresh killed (kill -9) while its worker writes leaves no writer behind it: the worker, busy with a
    part of 300,000 players (seconds of work), is gone at once, not at the end of its part."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from streamboard.runtime.reconcile_worker import ReconcileWorker
            worker = ReconcileWorker(Path({str(tmp_path / "profiles.db")!r}), None)
            rows = [{{"kind": "user", "user_id": f"u{{i:06d}}", "totals": "chess:5", "slots": None, "name": None,
                     "ts": None, "event_id": None, "item_key": None, "points": None}} for i in range(300_000)]
            worker.submit(rows, 1, 0)
            time.sleep(1.0)  # the part sent: the worker reconciles it
            print(worker.pids()[0], flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 1.5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), "the worker outlived the refresh"
        assert LocalProfileStore(tmp_path / "profiles.db").get("u000000") is None  # its part not committed
    finally:
        parent.kill()
        parent.wait()


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's exit is reaped by init, whenever it does)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_full_rebuild_reconciles_every_profile_and_goes_on_numbering_batches(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(data_dir=tmp_path / "data"))
    now = dt.datetime.now(dt.UTC)
    events = [{"event_id": str(uuid.uuid4()), "event_type": "score", "user_id": f"u{i % 4}", "ts": format_ts(now),
               "category": "chess", "points": i + 1} for i in range(20)]
    pipeline.backend.stream.put_records([stream_record(events[:10], received_at=now)])
    assert pipeline.refresh()["batch"] == 1
    pipeline.backend.stream.put_records([stream_record(events[10:], received_at=now),
                                         stream_record(events[:3], received_at=now)])  # a record twice
    summary = pipeline.refresh(full=True)
    assert summary["mode"] == "full" and summary["batch"] == 2  # a reconcile of batch 1 cannot undo it
    assert {u: points(pipeline.backend.profiles, u) for u in ("u0", "u1", "u2", "u3")} == oracle(events)
    profile = pipeline.backend.profiles.get("u0")
    assert profile is not None and profile.total == sum(e["points"] for e in events if e["user_id"] == "u0")


@pytest.mark.parametrize(("shape", "requests", "ceiling", "rank_ceiling"), [
    ("requests of 100 score events of one player", {"requests": 30, "events_per_request": 100}, 0.05, 0.01),
    ("single-event requests from distinct players", {"requests": 3000, "events_per_request": 1}, 1.1, 0.06),
])
def test_write_units_per_score_event_after_a_run_with_a_refresh(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                shape: str, requests: dict[str, int],
                                                                ceiling: float, rank_ceiling: float) -> None:
    """Issue 11's targets, from ``streamboard usage`` after the traffic, its refresh and its boards: every write
    unit counted, the ranks of every player (issue 14) among them; the report also says which were the ranks'
    (``dynamodb_write_units_ranks``, what the rank store's write reported), held to their own ceiling."""
    import json

    from streamboard.cli import main
    from streamboard.synthetic import traffic_mix
    from tests.functional.test_capacity_defaults import post

    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    pipeline = Pipeline(settings)
    before = Usage(data / "usage.db").report()["units"]["dynamodb_write_units"]  # the local keys' app items
    post(pipeline, settings, traffic_mix(requests["requests"], events_per_request=requests["events_per_request"],
                                         score_share=1.0, users=100_000_000))
    ranks = pipeline.refresh()["ranks"]
    assert main(["usage", "--data-dir", str(data), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["score_events"] == requests["requests"] * requests["events_per_request"]
    assert report["profile_reconciles"] == requests["requests"]  # every player reconciled
    # the report says which of its write units were the ranks' (what the rank store's write reported)
    assert report["units"]["dynamodb_write_units_ranks"] == ranks["write_units"] > 0
    ratio = (report["units"]["dynamodb_write_units"] - before) / report["score_events"]
    assert ratio <= ceiling, (shape, ratio, report["units"])
    # every player's entries on their 6 boards and in the user index, packed some 20 to 70 a 1 KB node; the
    # players' points are all recent, so each scope's 30- and 365-day boards share its all-time tree
    assert ranks["users"] == requests["requests"]
    assert ranks["write_units"] / report["score_events"] <= rank_ceiling, (shape, ranks)


def test_item_sizes_are_dynamodbs_rule_without_building_the_item() -> None:
    """item_bytes is DynamoDB's rule; the bound the local store bills most writes from is never below it."""
    import msgspec

    from streamboard.profiles import dynamo_item, item_bytes, item_bytes_at_most
    from streamboard.usage import item_size

    rng = random.Random(3)
    for _ in range(200):
        item: dict[str, Any] = {f"p{rng.randint(0, 10**7)}_{rng.choice(('chess', 'go-ü'))}": rng.randint(-10**9, 10**9)
                                for _ in range(rng.randint(0, 5))}
        item["bc"] = {rng.choice(("a", "bé", "c")): rng.randint(0, 10**12) for _ in range(3)}
        item["nm"] = [format_ts(T0), str(uuid.uuid4()), "N" * rng.randint(0, 40)]
        item["updated_at"] = at(rng.random())
        item["rb"] = 0
        for i in range(rng.randint(0, 3)):  # one-digit numbers and short lists: DynamoDB's size nearest 2x
            item[f"c_{i}"] = ["d", "", rng.choice("ab"), rng.randint(0, 9), rng.randint(0, 9)]
        if rng.random() < 0.2:
            item["e"], item["f"] = [], {}
        exact = item_bytes("ü-player", "profile", item)
        assert exact == item_size(dynamo_item("ü-player", "profile", item))
        assert exact <= item_bytes_at_most("ü-player", "profile", len(msgspec.json.encode(item)))


def test_a_reconcile_skips_a_write_exactly_when_the_profile_reads_the_same_and_is_small() -> None:
    """needs_write against its definition, on random items and lake totals (live points in and out of the
    cut, lake slots, categories that change or come to zero): write unless the profile reads the same with the
    update as without it and the item is small. Its shortcut for items without live points must agree."""
    from streamboard import profiles

    def by_definition(existing: dict[str, Any], upd: profiles.Update) -> bool:
        if "bn" in upd.sets and upd.sets["bn"] != existing.get("bn") and upd.sets["bn"] != existing.get("nm"):
            return True
        after = upd.apply(existing)
        if after is None or profiles.resolve("u", existing, {}) != profiles.resolve("u", after, {}):
            return True
        return profiles.item_bytes("u", profiles.PROFILE_SK, existing) > profiles.SKIP_BELOW_BYTES

    rng = random.Random(5)
    cats = ["chess", "go", "quiz"]
    writes = 0
    for _ in range(5000):
        existing: dict[str, Any] = {"bc": {c: rng.choice([0, 1, 5]) for c in rng.sample(cats, rng.randrange(3))},
                                    "bcut": 10, "rb": rng.choice([1, 2, 3]), "updated_at": "2026-12-01T00:00:00.000Z"}
        if rng.random() < 0.3:
            existing[f"p{rng.choice([9, 10, 11])}_{rng.choice(cats)}"] = rng.randrange(1, 5)
        if rng.random() < 0.2:
            existing[f"l{rng.choice([9, 10, 11])}_{rng.choice(cats)}"] = rng.randrange(1, 5)
        base = Base()
        for c in rng.sample(cats, rng.randrange(3)):
            base.categories[c] = rng.choice([0, 1, 5, 6])
        if rng.random() < 0.3:
            base.in_lake[(rng.choice([9, 10, 11]), rng.choice(cats))] = rng.randrange(1, 5)
        upd = profiles.reconcile_update(base, existing, batch=2, cut=rng.choice([9, 10, 11]),
                                        now="2026-12-02T00:00:00.000Z")
        want = by_definition(existing, upd)
        assert profiles.needs_write("u", existing, upd) == want, (existing, upd)
        writes += want
    assert 0 < writes < 5000  # both answers occur
