"""End-to-end: ``streamboard up`` as a subprocess, driven over HTTP on 127.0.0.1, checked against an oracle.

The oracle below is the contract of DESIGN.md section 5 written in plain Python: an event_id counts once
(the first accepted copy), a challenge counts only its first completion by (ts, event_id), windows are
trailing by event time from the board's ``as_of``, competition ranking with ties listed by user_id, and the
user_name is the latest one sent by (ts, event_id).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import (
    ADMIN_KEY,
    API_KEY,
    StackProcess,
    cli,
    http_client,
    no_server_error,
    two_free_ports,
)

pytestmark = pytest.mark.slow

WINDOWS = ("all", "30d", "365d")
WINDOW_DAYS = {"all": None, "30d": 30, "365d": 365}
CATEGORIES = ("arcade", "puzzle", "strategy")
DAY_MS = 86_400_000

# --- the stack as a subprocess -----------------------------------------------------------------------


StartStack = Callable[..., StackProcess]


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StartStack]:
    """Start ``streamboard up`` on free ports and wait for it; every process is stopped at teardown."""
    started: list[StackProcess] = []

    def start(data_dir: Path, *extra: str) -> StackProcess:
        stack = StackProcess(data_dir, tmp_path / f"stack-{len(started)}.log", tuple(extra))
        started.append(stack)
        return stack.start().wait_ready()

    yield start
    for stack in started:
        stack.stop()


# --- events ------------------------------------------------------------------------------------------


def ts_text(t: dt.datetime, offset_minutes: int = 0) -> str:
    """RFC 3339 with whole milliseconds, in UTC ("Z") or at the given offset."""
    if offset_minutes == 0:
        t = t.astimezone(dt.UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    local = t.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))
    return local.isoformat(timespec="milliseconds")


def now_ms() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def score(rng: random.Random, user: str, ts: dt.datetime, category: str, points: int, *,
          offset: int = 0, **extra: Any) -> dict[str, Any]:
    return {"event_id": new_id(rng), "event_type": "score", "user_id": user, "ts": ts_text(ts, offset),
            "category": category, "points": points, **extra}


def action(rng: random.Random, user: str, ts: dt.datetime, name: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": new_id(rng), "event_type": "action", "user_id": user, "ts": ts_text(ts), "name": name,
            **extra}


def random_ts(rng: random.Random, now: dt.datetime) -> dt.datetime:
    """Within 30 days, between 30 and 365 days, or more than 365 days before now (whole milliseconds)."""
    low, high = rng.choice(((0.001, 29.99), (30.01, 364.99), (365.01, 720.0)))
    return now - dt.timedelta(milliseconds=round(rng.uniform(low, high) * DAY_MS))


def random_scores(rng: random.Random, now: dt.datetime, users: int, prefix: str = "player") -> list[dict[str, Any]]:
    """A few score events per user across categories and windows, with name changes (some users never send
    one), repeated challenge completions and some non-UTC offsets."""
    events = []
    for i in range(users):
        user = f"{prefix}-{i:02d}"
        for _ in range(rng.randint(2, 6)):
            extra: dict[str, Any] = {}
            if i % 6 != 0 and rng.random() < 0.6:
                extra["user_name"] = f"{prefix.title()} {i} v{rng.randint(1, 3)}"
            if rng.random() < 0.25:
                extra["challenge_id"] = f"daily-{rng.randint(1, 3)}"
            offset = rng.choice((0, 0, 0, 330, -480))
            events.append(score(rng, user, random_ts(rng, now), rng.choice(CATEGORIES), rng.randint(1, 400),
                                offset=offset, **extra))
    return events


def invalid_events(rng: random.Random, now: dt.datetime) -> list[Any]:
    """Events the ingest API must reject, each for one reason."""

    def base(**changes: Any) -> dict[str, Any]:
        ev = score(rng, "player-01", now - dt.timedelta(hours=1), "arcade", 10)
        ev.update(changes)
        return {k: v for k, v in ev.items() if v is not ...}

    return [
        base(points=0), base(points=1_000_001), base(points="12"), base(points=2.5), base(points=True),
        base(points=...), base(category="Arcade"), base(category="has space"), base(category="x" * 65),
        base(category="overall"),
        base(event_type="purchase"), base(event_type=...),
        base(ts=ts_text(now + dt.timedelta(minutes=20))), base(ts="2026-01-01T00:00:00"), base(ts="yesterday"),
        base(level=3), base(user_id=""), base(user_id="u" * 129), base(user_id=...),
        base(event_id="not-a-uuid"), base(event_id=...), base(app_id="some-other-app"),
        base(received_at=ts_text(now)), base(user_name=""), base(challenge_id="c" * 129),
        action(rng, "player-02", now, "login", level="3"),  # unknown field on action (not under properties)
        action(rng, "player-02", now, "login", properties={"level": 3}),  # properties are string to string
        action(rng, "player-02", now, ""),
        42, "an event", None, [],
    ]


class Traffic:
    """Requests to post, each event marked valid or invalid, in posting order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.requests: list[dict[str, Any]] = []

    def add(self, valid: list[Any], invalid: Sequence[Any] = (), *, gzip_body: bool = False,
            single: bool = False) -> None:
        items = [(e, True) for e in valid] + [(e, False) for e in invalid]
        self.rng.shuffle(items)
        assert not single or len(items) == 1
        self.requests.append({"items": items, "gzip": gzip_body, "single": single})

    def post(self, client: httpx.Client, ingest_url: str, requests: range) -> None:
        """Post the given requests in order; each 202 body says exactly which events were rejected."""
        for i in requests:
            req = self.requests[i]
            events = [e for e, _ in req["items"]]
            doc = events[0] if req["single"] else {"events": events}
            body = json.dumps(doc).encode()
            headers = {"x-api-key": API_KEY, "content-type": "application/json"}
            if req["gzip"]:
                body = gzip.compress(body)
                headers["content-encoding"] = "gzip"
            resp = client.post(f"{ingest_url}/v1/events", content=body, headers=headers)
            assert resp.status_code == 202, (i, resp.status_code, resp.text)
            got = resp.json()
            expected_rejected = [j for j, (_, ok) in enumerate(req["items"]) if not ok]
            assert got["accepted"] == len(req["items"]) - len(expected_rejected), (i, got)
            assert [r["index"] for r in got["rejected"]] == expected_rejected, (i, got, req["items"])
            assert all(isinstance(r["error"], str) and r["error"] for r in got["rejected"]), got

    def accepted(self) -> list[dict[str, Any]]:
        return [e for req in self.requests for e, ok in req["items"] if ok]


# --- the oracle --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    event_id: str
    user_id: str
    ts: dt.datetime
    category: str
    points: int
    challenge_id: str | None
    user_name: str | None


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def unique_scores(accepted: list[dict[str, Any]]) -> list[Score]:
    """Score events once per event_id, the first accepted copy kept."""
    seen: dict[str, Score | None] = {}
    for ev in accepted:
        eid = str(uuid.UUID(ev["event_id"]))
        if eid in seen:
            continue
        seen[eid] = None if ev["event_type"] != "score" else Score(
            eid, ev["user_id"], parse_time(ev["ts"]), ev["category"], ev["points"], ev.get("challenge_id"),
            ev.get("user_name"))
    return [s for s in seen.values() if s is not None]


class Oracle:
    def __init__(self, accepted: list[dict[str, Any]]) -> None:
        self.events = unique_scores(accepted)
        first: dict[tuple[str, str], Score] = {}
        for s in self.events:
            if s.challenge_id is not None:
                key = (s.user_id, s.challenge_id)
                if key not in first or (s.ts, s.event_id) < (first[key].ts, first[key].event_id):
                    first[key] = s
        self.counted = [s for s in self.events
                        if s.challenge_id is None or first[(s.user_id, s.challenge_id)] is s]
        self.names: dict[str, str] = {}
        latest: dict[str, tuple[dt.datetime, str]] = {}
        for s in self.events:
            if s.user_name is not None and (s.user_id not in latest or (s.ts, s.event_id) > latest[s.user_id]):
                latest[s.user_id] = (s.ts, s.event_id)
                self.names[s.user_id] = s.user_name

    def scopes(self) -> list[str]:
        return sorted({"overall"} | {s.category for s in self.counted})

    def entries(self, scope: str, window: str, as_of: dt.datetime) -> list[dict[str, Any]]:
        days = WINDOW_DAYS[window]
        totals: dict[str, int] = defaultdict(int)
        for s in self.counted:
            if scope not in ("overall", s.category) or s.ts > as_of:
                continue
            if days is not None and s.ts <= as_of - dt.timedelta(days=days):
                continue
            totals[s.user_id] += s.points
        ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"rank": 1 + sum(1 for v in totals.values() if v > points), "user_id": user,
                 "user_name": self.names.get(user), "score": points} for user, points in ordered[:1000]]

    def profile(self, user: str) -> dict[str, Any]:
        cats: dict[str, int] = defaultdict(int)
        for s in self.counted:
            if s.user_id == user:
                cats[s.category] += s.points
        return {"total": sum(cats.values()), "categories": dict(sorted(cats.items())),
                "user_name": self.names.get(user)}

    def users(self) -> list[str]:
        return sorted({s.user_id for s in self.events})


def fetch_boards(client: httpx.Client, api_url: str, scopes: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    boards = {}
    for scope in scopes:
        for window in WINDOWS:
            resp = client.get(f"{api_url}/v1/leaderboards/{scope}", params={"window": window, "limit": 1000})
            assert resp.status_code == 200, (scope, window, resp.text)
            board = resp.json()
            assert (board["scope"], board["window"]) == (scope, window)
            boards[(scope, window)] = board
    return boards


def assert_boards_match(client: httpx.Client, api_url: str, oracle: Oracle) -> dict[tuple[str, str], Any]:
    """Every board (overall and each category, every window) equals the oracle at the board's as_of."""
    listed = client.get(f"{api_url}/v1/leaderboards").json()
    assert sorted(listed["scopes"]) == oracle.scopes()
    boards = fetch_boards(client, api_url, oracle.scopes())
    as_ofs = {b["as_of"] for b in boards.values()}
    assert len(as_ofs) == 1, f"one refresh, one as_of: {as_ofs}"
    for (scope, window), board in boards.items():
        as_of = parse_time(board["as_of"])
        assert as_of.microsecond == 0, board["as_of"]
        assert board["refreshed_at"], board
        expected = oracle.entries(scope, window, as_of)
        assert board["entries"] == expected, f"{scope}/{window} differs from the oracle"
    return boards


def wait_for_profile(client: httpx.Client, api_url: str, user: str, categories: dict[str, int],
                     timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    got: Any = None
    for _ in range(int(timeout / 0.1) + 1):
        resp = client.get(f"{api_url}/v1/users/{user}")
        got = resp.json()
        if resp.status_code == 200 and got["categories"] == categories:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"profile of {user} did not become {categories} within {timeout} s: {got}")


def refresh(client: httpx.Client, api_url: str) -> dict[str, Any]:
    resp = client.post(f"{api_url}/v1/admin/refresh", headers={"x-api-key": ADMIN_KEY})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# --- 1. boards and profiles against the oracle --------------------------------------------------------


def build_traffic(now: dt.datetime) -> tuple[Traffic, dict[str, Any]]:
    """The posted traffic, and the crafted events the test looks at by name."""
    rng = random.Random(20261123)
    t = Traffic(rng)
    randoms = random_scores(rng, now, 30)
    rng.shuffle(randoms)
    chunks = [randoms[i::3] for i in range(3)]
    bad = invalid_events(rng, now)
    day = dt.timedelta(days=1)

    # A challenge completed twice: the later-posted completion has the earlier ts, so it replaces the first.
    champ_late = score(rng, "champ", now - 3 * day, "puzzle", 300, challenge_id="boss-1", user_name="Champ Late")
    champ_early = score(rng, "champ", now - 40 * day, "arcade", 50, challenge_id="boss-1", user_name="Champ Early")
    champ_plain = score(rng, "champ", now - 100 * day, "strategy", 70)
    champ_again = score(rng, "champ", now - 2 * day, "puzzle", 999, challenge_id="boss-1")  # a third, never counts
    rival = score(rng, "rival", now - 3 * day, "puzzle", 300, challenge_id="boss-1", user_name="Rival")
    # Two completions at the same ts: the smaller event_id counts (posted second).
    same_ts = now - 5 * day
    twin_a = score(rng, "twin", same_ts, "arcade", 10, challenge_id="boss-2")
    twin_b = score(rng, "twin", same_ts, "arcade", 20, challenge_id="boss-2")
    twin_small, twin_large = sorted((twin_a, twin_b), key=lambda e: e["event_id"])
    # Names sent at the same ts: the larger event_id is the latest.
    namer = [score(rng, "namer", now - 7 * day, "strategy", 5, user_name=n) for n in ("Alpha", "Omega")]
    namer_latest = max(namer, key=lambda e: e["event_id"])["user_name"]
    namer.append(score(rng, "namer", now - 9 * day, "strategy", 5, user_name="Older"))
    # Ties: competition ranking 1, 1, 1, 4 on the speed-run board; user_ids in code point order.
    ties = [score(rng, u, now - 2 * day, "speed-run", 777) for u in ("tie-b", "Tie-C", "tie-a")]
    ties.append(score(rng, "tie-d", now - 2 * day, "speed-run", 500, user_name="Dee"))
    # A category with only old events: its 30d and 365d boards exist and are empty.
    retro = [score(rng, "oldtimer", now - d * day, "retro", 40, user_name="Old Timer") for d in (400, 500)]
    # Valid, 5 minutes in the future: counts in the profile, not on boards (ts > as_of); its name is the latest.
    future = [score(rng, "future-kid", now + dt.timedelta(minutes=5), "arcade", 1000, user_name="Future Name"),
              score(rng, "future-kid", now - day, "arcade", 10, user_name="Past Name")]
    # Deliveries of one event_id: twice in one request, again later (also with an upper-case id), and a
    # later copy with other points (the first accepted copy counts).
    dup = score(rng, "dupe", now - 2 * day, "puzzle", 123, user_name="Dupe")
    dup2 = score(rng, "dupe", now - 50 * day, "arcade", 11)
    dup2_upper = {**dup2, "event_id": dup2["event_id"].upper()}
    dup3 = score(rng, "dupe", now - 60 * day, "strategy", 13)
    dup3_changed = {**dup3, "points": 999_999}
    # An event first sent invalid (rejected) and then valid with the same event_id: the valid one counts.
    fixed = score(rng, "fixer", now - 10 * day, "arcade", 77)
    fixed_bad = {**fixed, "points": 0}
    actions = [action(rng, "champ", now - day, "login", properties={"platform": "web"}),
               action(rng, "action-only", now - day, "share", properties={}),
               action(rng, "player-03", now - 400 * day, "purchase")]

    t.add(chunks[0] + [champ_late, twin_large, dup, dup, dup2, dup3] + ties[:2] + namer[:1],
          bad[:12] + [fixed_bad])
    t.add(chunks[1] + [twin_small, dup, dup2_upper, fixed, champ_again, rival] + ties[2:] + namer[1:],
          bad[12:24], gzip_body=True)
    t.add([champ_early], single=True)
    t.add(chunks[2] + retro + future + actions + [champ_plain, dup3_changed, dup2], bad[24:])
    t.add([], [bad[0]], single=True)
    named = {"champ": champ_early, "twin": twin_small, "namer_latest": namer_latest}
    return t, named


def post_traffic_and_refresh(client: httpx.Client, stack: StackProcess, traffic: Traffic) -> Oracle:
    """Post the crafted traffic (checking the near-real-time profile on the way), refresh, return the oracle."""
    traffic.post(client, stack.ingest_url, range(2))
    # Near-real-time profiles: the first completion of boss-1 counts until an earlier one arrives.
    wait_for_profile(client, stack.api_url, "champ", {"puzzle": 300})
    traffic.post(client, stack.ingest_url, range(2, len(traffic.requests)))
    summary = refresh(client, stack.api_url)
    assert summary.get("boards", 0) > 0, summary
    return Oracle(traffic.accepted())


def test_boards_and_profiles_match_oracle(start_stack: StartStack, tmp_path: Path) -> None:
    now = now_ms()
    traffic, named = build_traffic(now)
    stack = start_stack(tmp_path / "data")
    with http_client() as client:
        oracle = post_traffic_and_refresh(client, stack, traffic)
        # The crafted cases are what the oracle says they are (guards the test itself).
        assert {"champ", "twin", "namer", "tie-a", "oldtimer", "future-kid", "dupe", "fixer"} <= set(oracle.users())
        assert oracle.profile("champ")["categories"] == {"arcade": 50, "strategy": 70}
        assert oracle.profile("twin")["total"] == named["twin"]["points"]
        assert oracle.names["champ"] == "Champ Late" and oracle.names["namer"] == named["namer_latest"]
        assert oracle.profile("dupe")["total"] == 123 + 11 + 13
        assert "retro" in oracle.scopes() and "speed-run" in oracle.scopes()

        boards = assert_boards_match(client, stack.api_url, oracle)
        assert boards[("retro", "30d")]["entries"] == [] and boards[("retro", "365d")]["entries"] == []
        assert [e["rank"] for e in boards[("speed-run", "all")]["entries"]] == [1, 1, 1, 4]
        assert [e["user_id"] for e in boards[("speed-run", "all")]["entries"]] == ["Tie-C", "tie-a", "tie-b", "tie-d"]
        future_entry = [e for e in boards[("arcade", "all")]["entries"] if e["user_id"] == "future-kid"]
        assert future_entry == [{"rank": future_entry[0]["rank"], "user_id": "future-kid",
                                 "user_name": "Future Name", "score": 10}]

        # Profiles: all-time counted points per category, the latest name, and the user's board ranks.
        for user in oracle.users():
            resp = client.get(f"{stack.api_url}/v1/users/{user}")
            assert resp.status_code == 200, (user, resp.text)
            got = resp.json()
            expected = oracle.profile(user)
            assert got["user_id"] == user
            assert (got["total"], got["categories"]) == (expected["total"], expected["categories"]), user
            assert got["user_name"] == expected["user_name"], user
            assert got["updated_at"], got
            # every board the user has a score on (these boards are whole: under 1,000 entries), with its size and
            # the share of it ranked strictly below the user
            ranks = sorted(
                ({"scope": s, "window": w, "rank": e["rank"], "score": e["score"], "of": len(b["entries"]),
                  "percentile": sum(x["score"] < e["score"] for x in b["entries"]) / len(b["entries"])}
                 for (s, w), b in boards.items() for e in b["entries"] if e["user_id"] == user),
                key=lambda r: (r["scope"], r["window"]))
            assert sorted(got["ranks"], key=lambda r: (r["scope"], r["window"])) == ranks, user
        assert client.get(f"{stack.api_url}/v1/users/future-kid").json()["total"] == 1010
        for user in ("action-only", "nobody-at-all"):
            resp = client.get(f"{stack.api_url}/v1/users/{user}")
            assert resp.status_code == 404, resp.text
            no_server_error(resp)

        check_errors(client, stack, now)
    assert "Traceback" not in stack.output(), stack.output()


def check_errors(client: httpx.Client, stack: StackProcess, now: dt.datetime) -> None:
    """The read and ingest APIs answer bad requests with a 4xx JSON error, never a 5xx or a trace."""
    api, ingest = stack.api_url, stack.ingest_url
    cases: list[tuple[int, httpx.Response]] = [
        (404, client.get(f"{api}/v1/leaderboards/nonexistent-category")),
        (400, client.get(f"{api}/v1/leaderboards/overall", params={"window": "7d"})),
        (400, client.get(f"{api}/v1/leaderboards/overall", params={"limit": "0"})),
        (400, client.get(f"{api}/v1/leaderboards/overall", params={"limit": "1001"})),
        (400, client.get(f"{api}/v1/leaderboards/overall", params={"limit": "ten"})),
        (401, client.post(f"{api}/v1/admin/refresh")),
        (401, client.post(f"{api}/v1/admin/refresh", headers={"x-api-key": "wrong"})),
        (401, client.post(f"{api}/v1/admin/refresh", headers={"x-api-key": API_KEY})),  # an app key, not admin
    ]
    rng = random.Random(5)
    one = [score(rng, "player-01", now, "arcade", 1)]
    post = f"{ingest}/v1/events"
    cases += [
        (401, client.post(post, json={"events": one}, headers={"x-api-key": "not-a-key"})),
        (401, client.post(post, json={"events": one})),
        (400, client.post(post, content=b'{"events": [', headers={"x-api-key": API_KEY})),
        (400, client.post(post, content=b"", headers={"x-api-key": API_KEY})),
        (400, client.post(post, json={"events": []}, headers={"x-api-key": API_KEY})),
        (400, client.post(post, json=[1, 2], headers={"x-api-key": API_KEY})),
        (400, client.post(post, content=b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
                          headers={"x-api-key": API_KEY})),  # valid JSON, but nested too deeply
        (400, client.post(post, content=b"\xff\xfe{}", headers={"x-api-key": API_KEY})),
        (400, client.post(post, content=b"not gzip", headers={"x-api-key": API_KEY, "content-encoding": "gzip"})),
        (413, client.post(post, content=b'{"events": [' + b" " * (1 << 20) + b"]}", headers={"x-api-key": API_KEY})),
        (413, client.post(post, content=iter([b'{"events": ['] + [b" " * 65536] * 17 + [b"]}"]),
                          headers={"x-api-key": API_KEY})),  # chunked: no content-length to go by
        (413, client.post(post, content=gzip.compress(b'{"events": [' + b" " * (2 << 20) + b"]}"),
                          headers={"x-api-key": API_KEY, "content-encoding": "gzip"})),
        (413, client.post(post, json={"events": [score(rng, "player-01", now, "arcade", 1) for _ in range(501)]},
                          headers={"x-api-key": API_KEY})),
    ]
    for i, (status, resp) in enumerate(cases):
        assert resp.status_code == status, (i, status, resp.status_code, resp.text)
        no_server_error(resp)
    assert client.get(f"{api}/healthz").status_code == 200
    assert client.get(f"{ingest}/healthz").status_code == 200


# --- 2. streamboard refresh and sql ------------------------------------------------------------------


def test_sql_and_refresh_cli(start_stack: StartStack, tmp_path: Path) -> None:
    now = now_ms()
    rng = random.Random(42)
    events = random_scores(rng, now, 12, prefix="sql")
    events += [events[0], events[5], action(rng, "sql-00", now, "login")]
    bad = invalid_events(rng, now)[:5]
    data_dir = tmp_path / "data"
    stack = start_stack(data_dir)
    with http_client() as client:
        resp = client.post(f"{stack.ingest_url}/v1/events", json={"events": events + bad},
                           headers={"x-api-key": API_KEY})
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == len(events)
        assert [r["index"] for r in resp.json()["rejected"]] == list(range(len(events), len(events) + len(bad)))

        done = cli("refresh", "--data-dir", str(data_dir))
        assert done.returncode == 0, done.stderr
        assert "running stack" in done.stderr, done.stderr
        assert json.loads(done.stdout)["boards"] > 0, done.stdout
        oracle = Oracle(events)
        assert_boards_match(client, stack.api_url, oracle)

    unique = oracle.events
    out = cli("sql", "SELECT count(*) AS n FROM score_events", "--data-dir", str(data_dir), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [{"n": len(unique)}]

    out = cli("sql", "SELECT event_id, user_id, points FROM score_events ORDER BY event_id",
              "--data-dir", str(data_dir), "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["event_id", "user_id", "points"]
    assert rows[1:] == sorted([s.event_id, s.user_id, str(s.points)] for s in unique)
    assert len(rows) - 1 == len(unique) > 30

    out = cli("sql", "SELECT nonsense FROM nowhere", "--data-dir", str(data_dir))
    assert out.returncode != 0 and out.stderr.startswith("streamboard: error:"), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


# --- 3. restart: lake, boards and acknowledged events survive ------------------------------------------


def test_restart_keeps_lake_boards_and_pending_events(start_stack: StartStack, tmp_path: Path) -> None:
    now = now_ms()
    rng = random.Random(7)
    batch_a = random_scores(rng, now, 15, prefix="a")
    batch_b = random_scores(rng, now, 15, prefix="b") + random_scores(rng, now, 5, prefix="a")
    batch_b += [batch_a[0], batch_a[3]]  # re-deliveries
    data_dir = tmp_path / "data"
    stack = start_stack(data_dir, "--buffer-seconds", "3600")
    with http_client() as client:
        resp = client.post(f"{stack.ingest_url}/v1/events", json={"events": batch_a}, headers={"x-api-key": API_KEY})
        assert resp.status_code == 202 and resp.json()["accepted"] == len(batch_a), resp.text
        refresh(client, stack.api_url)
        oracle_a = Oracle(batch_a)
        before = assert_boards_match(client, stack.api_url, oracle_a)
        for half in (batch_b[: len(batch_b) // 2], batch_b[len(batch_b) // 2:]):
            resp = client.post(f"{stack.ingest_url}/v1/events", json={"events": half},
                               headers={"x-api-key": API_KEY})
            assert resp.status_code == 202 and resp.json()["accepted"] == len(half), resp.text
    assert stack.kill9() == -9

    again = start_stack(data_dir, "--buffer-seconds", "3600")
    with http_client() as client:
        assert fetch_boards(client, again.api_url, oracle_a.scopes()) == before, "the old snapshot is served"
        refresh(client, again.api_url)
        oracle = Oracle(batch_a + batch_b)
        assert_boards_match(client, again.api_url, oracle)
        for user in oracle.users()[::4]:
            got = client.get(f"{again.api_url}/v1/users/{user}").json()
            expected = oracle.profile(user)
            assert (got["total"], got["categories"]) == (expected["total"], expected["categories"]), user

    assert again.stop() == 0, again.output()
    assert "stopped cleanly" in again.output()


# --- 4. the demo -------------------------------------------------------------------------------------


def test_demo_prints_boards(tmp_path: Path) -> None:
    ingest_port, api_port = two_free_ports()
    done = cli("demo", "--events", "400", "--ingest-port", str(ingest_port), "--api-port", str(api_port),
               timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("overall / all"))
    assert lines[header + 1].split() == ["rank", "user_id", "user_name", "score"]
    assert set(lines[header + 2].replace(" ", "")) == {"-"}
    first_row = lines[header + 3].split()
    assert first_row and first_row[0] == "1" and first_row[-1].isdigit(), lines[header:header + 4]
    report = lines[next(i for i, line in enumerate(lines) if line == "report"):]
    values = {m: line[len(m):].strip() for line in report for m in
              ("events posted", "accepted (202)", "rejected (kept in lake/bad-events)", "refresh time",
               "boards written", "non-empty boards") if line.startswith(m)}
    assert values["events posted"] == "400", report
    assert int(values["accepted (202)"]) + int(values["rejected (kept in lake/bad-events)"]) == 400, report
    assert int(values["rejected (kept in lake/bad-events)"]) > 0, report
    assert int(values["boards written"]) > 0 and int(values["non-empty boards"]) > 0, report
    assert values["refresh time"].endswith(" s"), report
    assert "stopped cleanly" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_loadtest_is_bounded_and_reports(start_stack: StartStack, tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "data")
    out = cli("loadtest", "--url", stack.ingest_url, "--events", "2000", "--seconds", "30", "--concurrency", "4")
    assert out.returncode == 0, out.stderr
    assert "events accepted" in out.stdout and "2000" in out.stdout and "latency p99" in out.stdout
    refused = cli("loadtest", "--url", "http://192.0.2.1:8080", "--events", "10")
    assert refused.returncode == 1 and "--allow-remote" in refused.stderr  # nothing was sent anywhere
    refused = cli("loadtest", "--url", "http://192.0.2.1:8080", "--rate", "10")
    assert refused.returncode == 1 and "--allow-remote" in refused.stderr
    # open loop: 20 requests/s for 2 s with 3x in the middle second: 10 + 60 + 10 requests of 10 events
    out = cli("loadtest", "--url", stack.ingest_url, "--rate", "20", "--seconds", "2", "--spike", "3@1",
              "--batch", "10")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[3:]}
    assert rows.keys() >= {"before", "spike", "after", "all"}, out.stdout
    sent, by_status = int(rows["all"][3]), [int(n) for n in rows["all"][4:9]]  # 2xx 429 503 other errors
    assert sent == 80 and int(rows["spike"][3]) == 60 and sum(by_status) == sent and by_status[0] > 0, out.stdout
