"""The web console (DESIGN section 8): plain HTML, CSS and JavaScript files in ``processors/console/``, served by
the read API at ``GET /`` (the page) and ``GET /console/...`` (its script and style sheet), on AWS and locally.

No build step: the page names its files by content (``/console/<hash>/app.js``), so they can be cached for a
year and a new version is a new URL; the page itself is revalidated on every load (``no-cache`` with an
``ETag``). The files are read once per process. Every answer carries a Content-Security-Policy that lets the
page load only its own script and style sheet and talk only to its own origin (the read API), with no inline
script or style, and requires Trusted Types: the script never turns a string into HTML.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamboard.errors import MethodNotAllowed, NotFound

CONSOLE_DIR = Path(__file__).parent / "console"
PAGE = "index.html"
ASSETS = ("app.js", "style.css")
PREFIX = "/console/"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; "
       "trusted-types 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"  # a versioned URL never changes its content
REVALIDATE = "no-cache"  # the page and unversioned URLs: kept, but checked (ETag) before each use
METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    etag: str
    cache_control: str


def serves(path: str) -> bool:
    """Whether ``path`` is the console's (the page at ``/``, its files under ``/console/``)."""
    return path == "/" or path.startswith(PREFIX)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def files() -> dict[str, StaticFile]:
    """Every path the console answers, read from ``CONSOLE_DIR`` once per process."""
    out: dict[str, StaticFile] = {}
    page = (CONSOLE_DIR / PAGE).read_text(encoding="utf-8")
    for name in ASSETS:
        body = (CONSOLE_DIR / name).read_text(encoding="utf-8")
        digest = _digest(body)
        content_type = CONTENT_TYPES[Path(name).suffix]
        url = f"{PREFIX}{digest[:16]}/{name}"
        out[url] = StaticFile(body, content_type, f'"{digest[:32]}"', IMMUTABLE)
        out[f"{PREFIX}{name}"] = StaticFile(body, content_type, f'"{digest[:32]}"', REVALIDATE)
        placeholder = "{{asset:" + name + "}}"
        if placeholder not in page:
            raise RuntimeError(f"{PAGE} does not load {name} (no {placeholder} in it)")
        page = page.replace(placeholder, url)
    out["/"] = StaticFile(page, CONTENT_TYPES[".html"], f'"{_digest(page)[:32]}"', REVALIDATE)
    return out


def asset_url(name: str) -> str:
    """The versioned URL the page loads ``name`` from."""
    return next(path for path, f in files().items() if path.endswith(f"/{name}") and f.cache_control == IMMUTABLE)


def respond(method: str, path: str, if_none_match: str | None,
            matches: Callable[[str | None, str], bool]) -> dict[str, Any]:
    """The API Gateway (v2) response for a console path; ``matches(header, etag)`` is the handler's
    ``If-None-Match`` test. Raises :class:`NotFound` or :class:`MethodNotAllowed` for the handler to answer."""
    if method not in METHODS:
        raise MethodNotAllowed("use GET for the console's pages and files", METHODS)
    found = files().get(path)
    if found is None:
        raise NotFound(f"no console file {path!r} (the page at / names the current ones)")
    headers = {"content-type": found.content_type, "etag": found.etag, "cache-control": found.cache_control,
               **SECURITY_HEADERS}
    if matches(if_none_match, found.etag):
        del headers["content-type"]
        return {"statusCode": 304, "headers": headers, "body": "", "isBase64Encoded": False}
    return {"statusCode": 200, "headers": headers, "body": "" if method == "HEAD" else found.body,
            "isBase64Encoded": False}
