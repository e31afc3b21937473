"""A paged JSON API on loopback for the REST_API puller's tests (a real HTTP server, no mocks).

`RestServer(records, mode)` serves GET /transactions in a daemon thread on 127.0.0.1 (a free
port), paged one of four ways:

- "offset": `limit` and `offset` parameters, body {"data": [...]} (no total);
- "cursor": `limit` and `cursor` parameters, body {"data": [...], "next_cursor": "..." | null};
- "link": `limit` and `offset` parameters, RFC 5988 `Link: <url>; rel="next"` header while
  records remain, body a bare JSON array;
- "page": `page` (from 1) and `per_page` parameters, body {"data": [...]}, an empty page after
  the last one.

A `since` parameter keeps the records whose (int) `id` is above it. With a `token`, requests
without it (`Authorization: Bearer T`, or `X-API-Key: T` with auth="header") get 401. Every
request is kept in `requests` (path, query, headers); `records` may grow between pulls and
`fail_status` makes every request answer that status.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit


class RestServer:
    """A threaded loopback HTTP server paging `records`; use it as a context manager."""

    def __init__(
        self,
        records: list[dict[str, Any]],
        mode: Literal["offset", "cursor", "link", "page"],
        token: str | None = None,
        auth: Literal["bearer", "header"] = "bearer",
        items_key: str = "data",
        page_size: int = 50,
        header: str = "X-API-Key",
    ) -> None:
        if mode not in ("offset", "cursor", "link", "page"):
            raise ValueError(f"unknown mode {mode!r}")
        self.records = records
        self.mode = mode
        self.token = token
        self.auth = auth
        self.items_key = items_key
        self.page_size = page_size
        self.header = header
        self.fail_status: int | None = None
        self.requests: list[dict[str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/transactions"

    def start(self) -> RestServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def page_requests(self) -> list[dict[str, Any]]:
        """The requests made to /transactions."""
        return [r for r in self.requests if r["path"] == "/transactions"]

    # the answer to one request: (status, headers, body)
    def answer(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if self.fail_status is not None:
            return self.fail_status, {}, {"error": "failing on purpose"}
        if path != "/transactions":
            return 404, {}, {"error": "no such endpoint"}
        if self.token is not None and not self._authorized(headers):
            return 401, {"WWW-Authenticate": "Bearer"}, {"error": "unauthorized"}
        rows = list(self.records)
        if "since" in query:
            since = int(query["since"])
            rows = [r for r in rows if r["id"] > since]
        if self.mode == "page":
            size = int(query.get("per_page", self.page_size))
            start = (int(query.get("page", 1)) - 1) * size
            return 200, {}, {self.items_key: rows[start : start + size]}
        size = int(query.get("limit", self.page_size))
        if self.mode == "cursor":
            start = int(query["cursor"][1:]) if "cursor" in query else 0
            after = start + size
            cursor = f"c{after}" if after < len(rows) else None
            return 200, {}, {self.items_key: rows[start:after], "next_cursor": cursor}
        start = int(query.get("offset", 0))
        page = rows[start : start + size]
        if self.mode == "offset":
            return 200, {}, {self.items_key: page}
        links: dict[str, str] = {}
        if start + size < len(rows):
            nxt = urlencode({**query, "offset": start + size, "limit": size})
            links["Link"] = f'<{self.url}?{nxt}>; rel="next", <{self.url}?offset=0>; rel="first"'
        return 200, links, page

    def _authorized(self, headers: dict[str, str]) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self.auth == "bearer":
            return lowered.get("authorization") == f"Bearer {self.token}"
        return lowered.get(self.header.lower()) == self.token


def _handler(server: RestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            headers = dict(self.headers.items())
            server.requests.append({"path": parts.path, "query": query, "headers": headers})
            status, extra, body = server.answer(parts.path, query, headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler
