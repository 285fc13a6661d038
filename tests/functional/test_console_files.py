"""The web console's files as the read API serves them (the browser tests are in tests/e2e/test_console.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from starlette.testclient import TestClient

from processors import read_api, webconsole
from streamboard.backend import Backend
from streamboard.runtime.stack import read_api_app
from tests.functional.test_handlers import api_event


def get(path: str, backend: Backend | None = None, method: str = "GET", **headers: str) -> dict[str, Any]:
    return read_api.handle(api_event(path, method=method, headers=headers), backend)  # type: ignore[arg-type]


class Page(HTMLParser):
    """What the page loads and whether anything in it is inline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self._tag = tag
        if any(name.startswith("on") for name in a) or "style" in a:
            self.inline.append(f"<{tag}> with an inline handler or style")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self.urls.append(a.get("src") or "")
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"] or "")

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and data.strip():
            self.inline.append("<script> with a body")


def test_the_page_loads_only_its_own_versioned_files_with_nothing_inline() -> None:
    response = get("/")
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "text/html; charset=utf-8"
    page = Page()
    page.feed(response["body"])
    assert page.inline == []
    assert "data:," in page.urls  # the favicon, so the browser asks for no /favicon.ico
    files = [u for u in page.urls if u != "data:,"]
    assert sorted(files) == sorted(webconsole.asset_url(n) for n in webconsole.ASSETS)
    for url in files:
        assert re.fullmatch(r"/console/[0-9a-f]{16}/(app\.js|style\.css)", url), url  # same origin, by content
        asset = get(url)
        assert asset["statusCode"] == 200 and asset["headers"]["cache-control"] == webconsole.IMMUTABLE
        assert asset["headers"]["content-type"].startswith("text/javascript" if url.endswith(".js") else "text/css")
        assert asset["body"] == (webconsole.CONSOLE_DIR / url.rsplit("/", 1)[1]).read_text()


def test_every_console_answer_has_the_content_security_policy() -> None:
    for path in ("/", webconsole.asset_url("app.js"), "/console/style.css"):
        headers = get(path)["headers"]
        csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert csp["default-src"] == "'none'"
        for directive in ("script-src", "style-src", "connect-src"):
            assert csp[directive] == "'self'", directive  # no inline code, no other origin
        assert csp["img-src"] == "'self' data:" and csp["frame-ancestors"] == "'none'"
        assert csp["base-uri"] == csp["form-action"] == "'none'"
        assert csp["require-trusted-types-for"] == "'script'"  # an HTML string sink throws
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_the_page_is_revalidated_and_a_current_copy_gets_304() -> None:
    first = get("/")
    assert first["headers"]["cache-control"] == "no-cache" and first["headers"]["etag"]
    again = get("/", **{"if-none-match": first["headers"]["etag"]})
    assert again["statusCode"] == 304 and again["body"] == "" and "content-type" not in again["headers"]
    assert get("/", **{"if-none-match": '"stale"'})["statusCode"] == 200
    unversioned = get("/console/app.js")  # for curl and old bookmarks: revalidated, never kept blindly
    assert unversioned["headers"]["cache-control"] == "no-cache"


def test_head_and_other_methods() -> None:
    head = get("/", method="HEAD")
    assert head["statusCode"] == 200 and head["body"] == "" and head["headers"]["etag"] == get("/")["headers"]["etag"]
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        refused = get("/", method=method)
        assert refused["statusCode"] == 405 and refused["headers"]["allow"] == "GET, HEAD"
    assert get("/console/nope.js")["statusCode"] == 404


@pytest.mark.parametrize("path", ["/console/", "/console//app.js", "/console/../processors/read_api.py",
                                  "/console/%2e%2e/read_api.py", "/console/index.html", "/console/" + "a" * 5000])
def test_nothing_but_the_console_files_is_served(path: str) -> None:
    response = get(path)
    assert response["statusCode"] == 404 and "Traceback" not in response["body"]


def test_the_script_builds_the_page_from_text_only() -> None:
    """Client data never goes through an HTML parser: no HTML string sinks, no eval, no inline style writes."""
    script = (webconsole.CONSOLE_DIR / "app.js").read_text()
    script = re.sub(r"(?m)(^|\s)//\s.*$", "", re.sub(r"/\*.*?\*/", "", script, flags=re.S))  # code, no comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"style\"", ".style.", "localStorage", "sessionStorage", "document.cookie"):
        assert sink not in script, sink
    assert "http://" not in script and "https://" not in script  # the API is this origin


def test_the_local_server_serves_the_console(backend: Backend) -> None:
    with TestClient(read_api_app(backend)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = client.get(webconsole.asset_url("app.js"))
        assert script.status_code == 200 and script.headers["cache-control"] == webconsole.IMMUTABLE
        assert client.get("/", headers={"if-none-match": page.headers["etag"]}).status_code == 304
