"""The REST_API puller against a real loopback HTTP server: the four paginators, incremental
pulls (by the API's `since` or client side), auth, HTTP failures, bad records and the probe."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from rest_server import RestServer

from pipelines.ingest.pulls.config import RestApiConfig
from pipelines.ingest.pulls.rest_api import PullError, fetch_pages, probe, watermark_of

N = 237
SIZE = 50
TOKEN = "s3cret-token-xyz"
# each paginator's requests for 237 records by 50: offset and page stop at the first empty page
REQUESTS = {"offset": 6, "page": 6, "cursor": 5, "link": 5}


def make_records(n: int = N, start: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "amount": round(i * 1.25, 2),
            "updated_at": f"2024-01-01T{i // 3600:02}:{i // 60 % 60:02}:{i % 60:02}Z",
        }
        for i in range(start, start + n)
    ]


def config_for(server: RestServer, **over: Any) -> RestApiConfig:
    shape: dict[str, Any] = {
        "url": server.url,
        "paginator": server.mode,
        "page_size": SIZE,
        "incremental_field": "id",
        "timeout_seconds": 5,
    }
    if server.mode == "page":
        shape["limit_param"] = "per_page"
    return RestApiConfig.model_validate(shape | over)


def pull(config: RestApiConfig, since: str | int | None = None) -> list[dict[str, Any]]:
    return [r for page in fetch_pages(config, since) for r in page]


@pytest.mark.parametrize("mode", ["offset", "cursor", "link", "page"])
def test_every_record_in_order_with_the_expected_requests(mode: str) -> None:
    records = make_records()
    with RestServer(records, mode) as server:
        pages = list(fetch_pages(config_for(server), None))
        asked = server.page_requests()
    assert [r for page in pages for r in page] == records
    assert all(isinstance(p, list) and p for p in pages)
    assert [len(p) for p in pages] == [50, 50, 50, 50, 37]
    assert len(asked) == REQUESTS[mode]
    size_param = "per_page" if mode == "page" else "limit"
    assert asked[0]["query"][size_param] == str(SIZE)


@pytest.mark.parametrize("mode", ["offset", "cursor", "link", "page"])
def test_incremental_by_the_apis_since_param(mode: str) -> None:
    with RestServer(make_records(), mode) as server:
        got = pull(config_for(server, incremental_param="since"), 200)
        asked = server.page_requests()
    assert [r["id"] for r in got] == list(range(201, 238))
    assert asked[0]["query"]["since"] == "200"
    assert all(r["query"].get("since") == "200" for r in asked)


def test_incremental_client_side_without_a_since_param() -> None:
    with RestServer(make_records(), "offset") as server:
        got = pull(config_for(server), 200)
        asked = server.page_requests()
    assert [r["id"] for r in got] == list(range(201, 238))
    assert len(asked) == REQUESTS["offset"]  # every page read, none filtered by the API
    assert all("since" not in r["query"] for r in asked)


def test_iso_timestamps_compare_as_text() -> None:
    records = make_records()
    with RestServer(records, "cursor") as server:
        config = config_for(server, incremental_field="updated_at")
        got = pull(config, records[199]["updated_at"])
    assert [r["id"] for r in got] == list(range(201, 238))


def test_records_appended_between_pulls_are_the_next_pull() -> None:
    records = make_records()
    with RestServer(records, "link") as server:
        config = config_for(server, incremental_param="since")
        first = pull(config)
        mark = max(watermark_of(r, "id") for r in first)
        records.extend(make_records(12, start=N + 1))
        second = pull(config, mark)
        again = pull(config, max(watermark_of(r, "id") for r in second))
    assert len(first) == N
    assert [r["id"] for r in second] == list(range(238, 250))
    assert again == []


def test_fixed_params_on_every_request() -> None:
    with RestServer(make_records(), "offset") as server:
        pull(config_for(server, params={"account": "main"}))
        asked = server.page_requests()
    assert all(r["query"]["account"] == "main" for r in asked)
    assert [r["query"]["offset"] for r in asked] == ["0", "50", "100", "150", "200", "250"]


@pytest.mark.parametrize("auth", ["bearer", "header"])
def test_auth_accepted(auth: str) -> None:
    with RestServer(make_records(), "offset", token=TOKEN, auth=auth) as server:
        got = pull(config_for(server, auth=auth, token=TOKEN))
        asked = server.page_requests()
    assert len(got) == N
    if auth == "bearer":
        assert asked[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    else:
        assert asked[0]["headers"]["X-API-Key"] == TOKEN


@pytest.mark.parametrize("auth", ["bearer", "header"])
def test_wrong_token_is_one_line_401_without_the_token(auth: str) -> None:
    wrong = "wrong-token-abc"
    with RestServer(make_records(), "cursor", token=TOKEN, auth=auth) as server:
        with pytest.raises(PullError) as caught:
            pull(config_for(server, auth=auth, token=wrong))
        assert len(server.page_requests()) == 1  # a 401 is not retried
        url = server.url
    message = str(caught.value)
    assert "401" in message and "recon secrets set token" in message
    assert url in message
    assert wrong not in message and TOKEN not in message and "\n" not in message


def test_missing_token_is_401() -> None:
    with RestServer(make_records(), "offset", token=TOKEN) as server:
        with pytest.raises(PullError, match="401"):
            pull(config_for(server))


def test_not_found_names_the_url() -> None:
    with RestServer(make_records(), "offset") as server:
        config = config_for(server, url=f"{server.base}/nowhere")
        with pytest.raises(PullError, match="404.*url"):
            pull(config)


def test_server_error_fails_within_seconds_after_few_tries() -> None:
    with RestServer(make_records(), "offset") as server:
        server.fail_status = 500
        began = time.monotonic()
        with pytest.raises(PullError) as caught:
            pull(config_for(server))
        took = time.monotonic() - began
        tries = len(server.requests)
        url = server.url
    assert took < 6
    assert 1 < tries <= 5
    message = str(caught.value)
    assert "500" in message and url in message and "\n" not in message


def test_connection_refused_fails_within_seconds() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = RestApiConfig(
        url=f"http://127.0.0.1:{port}/transactions", incremental_field="id", timeout_seconds=2
    )
    began = time.monotonic()
    with pytest.raises(PullError, match="cannot connect") as caught:
        pull(config)
    assert time.monotonic() - began < 6
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_record_without_the_incremental_field() -> None:
    records = make_records()
    del records[60]["updated_at"]  # page 2, record 10
    with RestServer(records, "page") as server:
        with pytest.raises(PullError) as caught:
            pull(config_for(server, incremental_field="updated_at"))
    message = str(caught.value)
    assert "page 2" in message and "record 10" in message and "updated_at" in message


def test_record_that_is_not_an_object() -> None:
    records: list[Any] = make_records()
    records[3] = 42
    with RestServer(records, "link") as server:
        with pytest.raises(PullError, match="page 1, record 3 is a int"):
            pull(config_for(server))


def test_max_records_exceeded_stops_the_pull() -> None:
    with RestServer(make_records(), "offset") as server:
        pages = fetch_pages(config_for(server, max_records=120), None)
        assert len(next(pages)) == 50 and len(next(pages)) == 50
        with pytest.raises(PullError, match="max_records=120"):
            next(pages)
        assert len(server.page_requests()) == 3


@pytest.mark.parametrize("mode", ["offset", "link"])
def test_probe_reads_the_first_page_only(mode: str) -> None:
    with RestServer(make_records(), mode, token=TOKEN, auth="header") as server:
        found = probe(config_for(server, auth="header", token=TOKEN))
        assert len(server.requests) == 1
    assert found == {"records": 50, "fields": ["amount", "id", "updated_at"], "status": 200}


def test_probe_fails_like_a_pull() -> None:
    with RestServer(make_records(), "offset", token=TOKEN) as server:
        with pytest.raises(PullError, match="401"):
            probe(config_for(server, auth="bearer", token="nope-nope"))


def test_items_path_given() -> None:
    with RestServer(make_records(), "cursor", items_key="results") as server:
        got = pull(config_for(server, items="results"))
    assert len(got) == N


def test_watermark_of() -> None:
    assert watermark_of({"v": 7}, "v") == 7
    assert watermark_of({"v": 7.0}, "v") == 7 and isinstance(watermark_of({"v": 7.0}, "v"), int)
    assert watermark_of({"v": 7.5}, "v") == "7.5"
    assert watermark_of({"v": "2024-01-01T00:00:00Z"}, "v") == "2024-01-01T00:00:00Z"
