"""The web console in a real browser: Debian's Chromium driven by Playwright, against ``streamboard up`` on 127.0.0.1.

One stack and one browser serve the module; each test opens its own browser context and fails on any console
error, uncaught page error, dialog (a hostile name that ran script would open one) or request to another origin.

Chromium is required: ``make test`` installs the Debian package ``chromium`` when it is missing (``make
browser``), and a missing browser FAILS these tests. A developer without it may set
``STREAMBOARD_SKIP_BROWSER_TESTS=1`` to skip them; under CI (``CI`` set) that variable is ignored.
``STREAMBOARD_CONSOLE_SCREENSHOTS=DIR`` saves the three pages' screenshots there (``make screenshots``: docs/).
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.support import ADMIN_KEY, API_KEY, StackProcess, http_client
from tests.e2e.test_local_stack import invalid_events, new_id, now_ms, random_scores, refresh, score, ts_text

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("STREAMBOARD_CHROMIUM", "/usr/bin/chromium"))
SKIP_VARIABLE = "STREAMBOARD_SKIP_BROWSER_TESTS"
SCREENSHOTS = os.environ.get("STREAMBOARD_CONSOLE_SCREENSHOTS")
TIMEOUT_MS = 15_000  # any one wait in the browser
REFRESH_TIMEOUT_MS = 90_000  # an admin refresh drains the pipeline first
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_ID = 'x"><svg onload=alert(2)>'  # no name: the id is what the board shows
PAGE_SIZE = 25  # the console's default


def _require_browser() -> None:
    """Fail (not skip) without Playwright or Chromium, unless a developer asked to skip outside CI."""
    if os.environ.get(SKIP_VARIABLE) == "1" and not os.environ.get("CI"):
        pytest.skip(f"{SKIP_VARIABLE}=1: the console's browser tests are skipped on this machine")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("Playwright is not installed: run `make install` (it is pinned in the dev extra)", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: `make test` installs Debian's `chromium` package (`make "
                    f"browser`); no browser download is used. A developer may set {SKIP_VARIABLE}=1 to skip these "
                    "tests (ignored when CI is set).", pytrace=False)


# --- the stack and its data --------------------------------------------------------------------------------------


@dataclass
class Stack:
    process: StackProcess
    client: httpx.Client
    rejected: int = 0

    @property
    def url(self) -> str:
        return self.process.api_url

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(f"{self.url}{path}", params=params)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def post(self, events: list[Any]) -> dict[str, Any]:
        resp = self.client.post(f"{self.process.ingest_url}/v1/events", json={"events": events},
                                headers={"x-api-key": API_KEY})
        assert resp.status_code == 202, resp.text
        body: dict[str, Any] = resp.json()
        self.rejected += len(body["rejected"])
        return body


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with 60 players over three categories and windows, a hostile name and a hostile id at the top of
    the boards, and a few rejected events; refreshed once."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("console")
    process = StackProcess(tmp / "data", tmp / "stack.log")
    try:
        process.start().wait_ready()
        with http_client() as client:
            s = Stack(process, client)
            rng, now = random.Random(14), now_ms()
            events = random_scores(rng, now, 60)
            events.append(score(rng, "mallory", now - dt.timedelta(hours=1), "arcade", 1_000_000,
                                user_name=HOSTILE_NAME))
            events.append(score(rng, HOSTILE_ID, now - dt.timedelta(hours=2), "arcade", 900_000))
            s.post(events + invalid_events(rng, now)[:3])
            assert s.rejected == 3
            refresh(client, process.api_url)
            yield s
    finally:
        process.stop()


# --- the browser -------------------------------------------------------------------------------------------------


@dataclass
class Console:
    """A page of the console in its own browser context, and everything it reported."""

    page: Any
    context: Any
    origin: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def open(self, fragment: str = "", wait_for: str | None = None) -> None:
        self.page.goto(f"{self.origin}/{fragment}")
        if wait_for:
            self.page.wait_for_selector(wait_for)

    def rows(self, table: str) -> list[list[str]]:
        """The text of each body row's cells (what a reader sees, not HTML)."""
        return self.page.eval_on_selector_all(  # type: ignore[no-any-return]
            f"{table} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()  # type: ignore[no-any-return]

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.dialogs == [], f"dialogs opened (script ran): {self.dialogs}"
        assert self.foreign == [], f"requests to other origins: {self.foreign}"


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Chromium's sandbox needs user namespaces, which a root process in a container does not get.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, timeout=TIMEOUT_MS)
        try:
            yield browser
        finally:
            browser.close()


def _console(browser: Any, origin: str, viewport: dict[str, int]) -> Console:
    context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    c = Console(page, context, origin)
    page.on("console", lambda m: c.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: c.errors.append(f"uncaught: {e}"))

    def dialog(d: Any) -> None:
        c.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.on("request", lambda r: None if r.url.startswith((origin + "/", "data:")) else c.foreign.append(r.url))
    return c


@pytest.fixture
def console(browser: Any, stack: Stack) -> Iterator[Console]:
    c = _console(browser, stack.url, DESKTOP)
    try:
        yield c
    finally:
        c.context.close()


@pytest.fixture
def phone(browser: Any, stack: Stack) -> Iterator[Console]:
    c = _console(browser, stack.url, PHONE)
    try:
        yield c
    finally:
        c.context.close()


def as_shown(entries: list[dict[str, Any]]) -> list[list[str]]:
    """Board entries as the console's table shows them: rank, name (the id without one), id, score."""
    return [[str(e["rank"]), e["user_name"] or e["user_id"], e["user_id"], f"{e['score']:,}"] for e in entries]


# --- the tests -------------------------------------------------------------------------------------------------


def test_the_board_shown_is_the_apis_and_pages_through_it(console: Console, stack: Stack) -> None:
    console.open("", "#board-table tbody tr")
    board = stack.get("/v1/leaderboards/overall", window="all", limit=1000)["entries"]
    assert len(board) > 2 * PAGE_SIZE  # three pages at the default size
    assert console.rows("#board-table") == as_shown(board[:PAGE_SIZE])
    assert console.text("#page-info") == f"Page 1 of {-(-len(board) // PAGE_SIZE)}"
    console.screenshot("board")

    console.page.click("#page-next")
    console.page.wait_for_selector("#page-info:has-text('Page 2')")
    assert console.rows("#board-table") == as_shown(board[PAGE_SIZE:2 * PAGE_SIZE])
    assert "page=2" in console.page.url  # the page can be bookmarked

    console.page.select_option("#board-size", "10")  # rows 26-35 are on page 3 of ten
    console.page.wait_for_selector("#page-info:has-text('Page 3')")
    assert console.rows("#board-table") == as_shown(board[20:30])
    console.page.focus("#page-prev")
    console.page.keyboard.press("Enter")  # keyboard alone pages too
    console.page.wait_for_selector("#page-info:has-text('Page 2')")
    assert console.rows("#board-table") == as_shown(board[10:20])

    for scope, window, label in (("arcade", "30d", "Last 30 days"), ("puzzle", "365d", "Last 365 days")):
        console.page.select_option("#board-scope", scope)
        console.page.select_option("#board-window", window)  # before the first board arrives: the last one wins
        expected = stack.get(f"/v1/leaderboards/{scope}", window=window, limit=1000)["entries"]
        caption = f"{scope}, {label}: rows 1 to {min(10, len(expected))} of {len(expected)}"
        console.page.wait_for_function("c => document.querySelector('#board-caption').textContent === c", arg=caption)
        assert console.rows("#board-table") == as_shown(expected[:10])

    console.page.reload()  # the address keeps the board, window, size and page
    console.page.wait_for_selector("#board-table tbody tr")
    assert console.page.input_value("#board-scope") == "puzzle" and console.page.input_value("#board-size") == "10"
    console.assert_clean()


def test_a_hostile_name_and_id_show_as_text_and_run_nothing(console: Console, stack: Stack) -> None:
    console.open("#/boards?scope=arcade&window=all", "#board-table tbody tr")
    top = console.rows("#board-table")[:2]
    assert top == [["1", HOSTILE_NAME, "mallory", "1,000,000"], ["2", HOSTILE_ID, HOSTILE_ID, "900,000"]]
    assert console.page.locator("#main img, #main svg, #main script").count() == 0
    console.page.get_by_role("link", name=HOSTILE_ID).click()  # the id travels in the address, encoded
    console.page.wait_for_selector("#player-profile")
    assert console.text("#profile-user-id") == HOSTILE_ID and console.text("#player-name") == HOSTILE_ID
    assert "%3Csvg" in console.page.url
    console.open(f"#/player?id={quote('mallory')}", "#player-profile")
    assert console.text("#player-name") == HOSTILE_NAME
    assert console.page.locator("#main img, #main svg").count() == 0
    assert console.page.title().startswith("mallory")
    console.assert_clean()


def test_the_player_page_shows_the_profile_ranks_and_neighbours(console: Console, stack: Stack) -> None:
    board = stack.get("/v1/leaderboards/overall", window="all", limit=1000)["entries"]
    for entry in (board[30], board[2]):  # beyond the top eleven, then within it
        user = entry["user_id"]
        profile = stack.get(f"/v1/users/{quote(user, safe='')}")
        console.open(f"#/player?id={quote(user, safe='')}", "#player-ranks")
        assert console.text("#profile-user-id") == user
        assert console.text("#profile-total") == f"{profile['total']:,}"
        assert console.text("#profile-user-name") == (profile["user_name"] or "—")
        assert sorted(console.rows("#player-categories")) == sorted(
            [c, f"{n:,}"] for c, n in profile["categories"].items())
        shown = console.rows("#player-ranks")
        assert len(shown) == len(profile["ranks"])
        assert sorted((r[2], r[3]) for r in shown) == sorted((f"{r['rank']:,}", f"{r['score']:,}")
                                                             for r in profile["ranks"])
        if not any("of" in r for r in profile["ranks"]):  # the API gives no board sizes yet: the page says so
            assert "not available" in console.text("#ranks-note")
        # The neighbours: a table centred on the player when the API supports `around`, else a clear message.
        first = shown[0]
        assert first[0] == "Overall" and first[1] == "All time"
        around = stack.get("/v1/leaderboards/overall", window="all", around=user, limit=11)["entries"]
        if any(e["user_id"] == user for e in around):
            console.page.wait_for_selector("#neighbours tr.is-player")
            assert console.rows("#neighbours") == as_shown(around)
            assert console.page.locator("#neighbours tr[aria-current='true']").count() == 1
        else:
            console.page.wait_for_selector("#neighbours-message:not([hidden])")
            assert "not available" in console.text("#neighbours-message")
    # the form finds a player by id, from the keyboard
    console.page.fill("#player-id", board[0]["user_id"])
    console.page.press("#player-id", "Enter")
    console.page.wait_for_function("id => document.querySelector('#profile-user-id')?.textContent === id",
                                   arg=board[0]["user_id"])
    console.page.wait_for_selector("#neighbours tr.is-player")  # the leader is within any top eleven
    console.open(f"#/player?id={quote(board[5]['user_id'], safe='')}", "#neighbours tr.is-player")
    console.screenshot("player")
    console.assert_clean()


def test_health_and_an_admin_refresh_from_the_page(console: Console, stack: Stack) -> None:
    # a minute old: a refresh's as_of is a whole second, so an event of this very second could fall after it
    rng, now = random.Random(99), now_ms() - dt.timedelta(minutes=1)
    late = [{"event_id": new_id(rng), "event_type": "score", "user_id": "late-comer", "ts": ts_text(now),
             "category": "puzzle", "points": 1_000_000, "user_name": "Late Comer"} for _ in range(2)]
    stack.post(late)
    console.open("#/health", "#health-figures")
    console.page.wait_for_selector("#health-last-refresh time")
    health = stack.get("/v1/health")
    assert console.text("#health-dlq") == "0" and health["dlq_depth"] == 0
    assert console.text("#health-bad") == str(stack.rejected) == str(health["bad_events"])
    assert console.text("#health-events").replace(",", "").isdigit() and health["events_per_minute"] > 0
    assert console.text("#health-backlog").replace(",", "").isdigit()
    assert console.page.locator("#health-freshness").inner_text() != "—"

    console.page.fill("#admin-key", ADMIN_KEY)
    console.page.press("#admin-key", "Enter")
    console.page.wait_for_selector("#refresh-result:has-text('Boards refreshed')", timeout=REFRESH_TIMEOUT_MS)
    assert console.page.input_value("#admin-key") == ""
    kept = console.page.evaluate("""() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),
                                        document.cookie, location.href, history.length])""")
    assert ADMIN_KEY not in kept and ADMIN_KEY not in console.page.url
    assert console.context.cookies() == []
    console.page.wait_for_function("t => document.querySelector('#health-last-refresh time')?.dateTime !== t",
                                   arg=health["last_refresh"])
    console.screenshot("health")

    console.page.get_by_role("link", name="Boards").click()
    console.page.wait_for_selector("#board-table tbody tr")
    assert console.rows("#board-table")[0] == ["1", "Late Comer", "late-comer", "2,000,000"]
    assert stack.get("/v1/leaderboards/overall")["entries"][0]["user_id"] == "late-comer"
    console.assert_clean()


def test_the_console_fits_a_phone_and_works_from_the_keyboard(phone: Console) -> None:
    for fragment, ready in (("", "#board-table tbody tr"), ("#/player?id=mallory", "#player-ranks"),
                            ("#/health", "#health-last-refresh time")):
        phone.open(fragment, ready)
        assert phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), fragment
        unlabelled = phone.page.evaluate(
            "[...document.querySelectorAll('select, input')].filter(c => !c.labels.length).map(c => c.id)")
        assert unlabelled == [], fragment
    phone.page.reload()  # a fresh load: the focus is on the document, not on a heading the router focused
    phone.page.wait_for_selector("#health-last-refresh time")
    phone.page.keyboard.press("Tab")
    assert phone.page.evaluate("document.activeElement.id") == "skip-link"
    phone.page.keyboard.press("Enter")
    assert phone.page.evaluate("document.activeElement.id") == "main"
    phone.page.keyboard.press("Tab")  # from the main content to the first control of the page
    assert phone.page.evaluate("document.activeElement.id") == "health-update"
    phone.assert_clean()
