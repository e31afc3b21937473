"""Pull a REST_API data source: the pages of records newer than the last pull's watermark.

dlt's REST client does the HTTP work (pagination, auth, retries); this module picks its paginator
and auth from a `RestApiConfig`, keeps only the records whose `incremental_field` is above the
watermark (also when the API filters by `incremental_param` itself), checks every record, and
turns every failure into one `PullError` line saying what to do (never showing the token).

- offset: `limit_param`=page_size and `offset_param` 0, 50, ...; stops at the first empty page.
- page: `page_param` 1, 2, ... with `limit_param`=page_size; stops at the first empty page.
- cursor: `cursor_param` from the page's `cursor_path`; stops when it is null or missing.
- link: the `Link: <...>; rel="next"` header; stops when there is none.
- single: one request.

dlt is imported on first use (about a second), not when this module is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.ingest.pulls.config import RestApiConfig, watermark_value
from resources.errors import ReconError

if TYPE_CHECKING:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.paginators import BasePaginator

# dlt's retries: 429, 5xx, refused/dropped connections and timeouts are tried this many times in
# all, waiting BACKOFF_SECONDS * 2**n between tries (or the server's Retry-After, at most
# MAX_RETRY_DELAY_SECONDS): a dead server fails in about two seconds, not minutes
REQUEST_ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
MAX_RETRY_DELAY_SECONDS = 10.0

SECRETS_HINT = "`recon secrets set token --data-source NAME`"


class PullError(ReconError):
    """A REST_API pull failed: one line naming the URL or the record and what to do."""


def watermark_of(record: dict[str, Any], field: str) -> str | int:
    """The record's incremental value as a watermark (`config.watermark_value`)."""
    return watermark_value(record[field])


def is_newer(value: str | int, since: str | int) -> bool:
    """Whether a watermark value is above `since`: ints compare as ints, the rest as text."""
    if isinstance(value, int) and isinstance(since, int) and not isinstance(since, bool):
        return value > since
    return str(value) > str(since)


def fetch_pages(config: RestApiConfig, since: str | int | None) -> Iterator[list[dict[str, Any]]]:
    """The pages of records (non-empty lists of dicts) whose `incremental_field` is above `since`
    (every record when `since` is None), in the API's order; `PullError` on an HTTP failure,
    a record that is not an object or lacks the field, or more than `max_records` records."""
    kept = 0
    for number, page in _pages(config, since):
        records = _checked(config, number, page)
        if since is not None:
            records = [
                r for r in records if is_newer(watermark_of(r, config.incremental_field), since)
            ]
        kept += len(records)
        if kept > config.max_records:
            raise PullError(
                f"{_safe_url(config, config.url)}: more than max_records={config.max_records} "
                "records to pull: raise max_records in the source's config, or check that the "
                "API honours the paging and since parameters"
            )
        if records:
            yield records


def probe(config: RestApiConfig) -> dict[str, Any]:
    """Fetch the first page only: its record count, the first record's sorted field names and
    the HTTP status; `PullError` as `fetch_pages` (the page's records are checked the same)."""
    pages = _pages(config, None)
    try:
        number, page = next(pages, (1, None))
    finally:
        pages.close()
    if page is None:
        return {"records": 0, "fields": [], "status": 200}
    records = _checked(config, number, page)
    fields = sorted(records[0]) if records else []
    return {"records": len(records), "fields": fields, "status": page.response.status_code}


def _checked(config: RestApiConfig, number: int, page: list[Any]) -> list[dict[str, Any]]:
    field = config.incremental_field
    for index, record in enumerate(page):
        if not isinstance(record, dict):
            raise PullError(
                f"{_safe_url(config, config.url)}: page {number}, record {index} is a "
                f"{type(record).__name__}, not an object with `{field}`: set `items` to the "
                "JSONPath of the records in a page"
            )
        if record.get(field) is None:
            raise PullError(
                f"{_safe_url(config, config.url)}: page {number}, record {index} has no "
                f"`{field}` (the incremental_field): fix incremental_field or `items`"
            )
    return list(page)


def _pages(config: RestApiConfig, since: str | int | None) -> Iterator[tuple[int, Any]]:
    """(page number from 1, dlt PageData) for each page the paginator asks for."""
    import requests

    params: dict[str, Any] = dict(config.params)
    if config.paginator in ("page", "cursor", "link"):
        params[config.limit_param] = config.page_size
    if since is not None and config.incremental_param:
        params[config.incremental_param] = since
    client = _client(config)
    number = 0
    try:
        # every answer's size checked before its body is read (a hostile API cannot fill
        # memory), then its status (an HTTPError inside `send`, which dlt's retries see)
        hooks = {"response": [_bounded(config), _raise_for_status]}
        for page in client.paginate(params=params, hooks=hooks):
            number += 1
            yield number, page
    except requests.HTTPError as err:
        raise PullError(_http_message(config, err.response)) from None
    except requests.Timeout:
        raise PullError(
            f"{_safe_url(config, config.url)}: no answer within {config.timeout_seconds} s "
            f"({REQUEST_ATTEMPTS} tries, page {number + 1}): raise timeout_seconds or try later"
        ) from None
    except requests.ConnectionError as err:
        raise PullError(
            f"{_safe_url(config, config.url)}: cannot connect ({_reason(config, err)}) after "
            f"{REQUEST_ATTEMPTS} tries: check the url and that the API is up and reachable"
        ) from None
    except requests.exceptions.JSONDecodeError:
        raise PullError(
            f"{_safe_url(config, config.url)}: page {number + 1} is not JSON: check the url"
        ) from None
    except requests.RequestException as err:
        raise PullError(
            f"{_safe_url(config, config.url)}: request failed ({_reason(config, err)}): "
            "check the url"
        ) from None
    except ValueError as err:  # a body that is not JSON, a paginator that cannot go on
        raise PullError(
            f"{_safe_url(config, config.url)}: page {number + 1} cannot be read "
            f"({_reason(config, err)}): check the url, `items` and the paginator settings"
        ) from None
    except Exception as err:
        if type(err).__name__ == "PaginatorNotFound":
            raise PullError(
                f"{_safe_url(config, config.url)}: the paging cannot be detected: set `paginator`"
            ) from None
        raise


def _client(config: RestApiConfig) -> RESTClient:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from dlt.common.configuration.specs import RuntimeConfiguration
    from dlt.sources.helpers.requests.retry import Client
    from dlt.sources.helpers.rest_client import RESTClient

    runtime = RuntimeConfiguration()  # not resolved: no config files or env vars read
    runtime.http_show_error_body = False
    runtime.request_timeout = float(config.timeout_seconds)
    runtime.request_max_attempts = REQUEST_ATTEMPTS
    runtime.request_backoff_factor = BACKOFF_SECONDS
    runtime.request_max_retry_delay = MAX_RETRY_DELAY_SECONDS
    http = Client(
        request_timeout=float(config.timeout_seconds),
        raise_for_status=False,  # RESTClient's own response hook raises (and is retried)
        request_max_attempts=REQUEST_ATTEMPTS,
        request_backoff_factor=BACKOFF_SECONDS,
        request_max_retry_delay=MAX_RETRY_DELAY_SECONDS,
    )
    return RESTClient(
        base_url=config.url,
        auth=_auth(config),
        paginator=_paginator(config),
        data_selector=config.items,
        session=http.session,
        config=runtime,
    )


def _raise_for_status(response: Any, *_args: Any, **_kwargs: Any) -> Any:
    response.raise_for_status()
    return response


def _bounded(config: RestApiConfig) -> Any:
    """A response hook refusing a page over `max_page_bytes` (declared or as it is read)."""
    limit = config.max_page_bytes

    def check(response: Any, *_args: Any, **_kwargs: Any) -> Any:
        too_big = PullError(
            f"{_safe_url(config, response.url)}: a page over max_page_bytes={limit:,}: lower "
            "page_size or raise max_page_bytes"
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise too_big
        if not declared and getattr(response, "_content", False) is False:
            body = response.raw.read(limit + 1, decode_content=True)  # not preloaded yet
            if len(body) > limit:
                response.close()
                raise too_big
            response._content = body  # what `requests` keeps after reading the body itself
            response._content_consumed = True
        return response

    return check


def _paginator(config: RestApiConfig) -> BasePaginator:
    from dlt.sources.helpers.rest_client import paginators

    if config.paginator == "offset":
        return paginators.OffsetPaginator(
            limit=config.page_size,
            offset=0,
            offset_param=config.offset_param,
            limit_param=config.limit_param,
            total_path=None,
            stop_after_empty_page=True,
        )
    if config.paginator == "page":
        return paginators.PageNumberPaginator(
            base_page=1,
            page_param=config.page_param,
            total_path=None,
            stop_after_empty_page=True,
        )
    if config.paginator == "cursor":
        return paginators.JSONResponseCursorPaginator(
            cursor_path=config.cursor_path, cursor_param=config.cursor_param
        )
    if config.paginator == "link":
        return paginators.HeaderLinkPaginator()
    return paginators.SinglePagePaginator()


def _auth(config: RestApiConfig) -> Any:
    from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth

    if config.auth == "bearer":
        return BearerTokenAuth(token=str(config.token))
    if config.auth == "header":
        return APIKeyAuth(name=config.auth_header, api_key=str(config.token), location="header")
    return None


def _http_message(config: RestApiConfig, response: Any) -> str:
    status = response.status_code if response is not None else 0
    reason = (response.reason or "").strip() if response is not None else ""
    url = _safe_url(config, response.url if response is not None else config.url)
    head = f"{url}: {status} {reason}".rstrip()
    if status == 401:
        return f"{head}: check the source's token ({SECRETS_HINT})"
    if status == 403:
        return f"{head}: the token may not read this endpoint: check its rights ({SECRETS_HINT})"
    if status == 404:
        return f"{head}: check the source's url"
    if status == 429:
        return f"{head} after {REQUEST_ATTEMPTS} tries: the API limits the rate; pull again later"
    if status >= 500:
        return f"{head} after {REQUEST_ATTEMPTS} tries: the API is failing; pull again later"
    return f"{head}: the API refused the request; check the source's params and paginator"


def _safe_url(config: RestApiConfig, url: str | None) -> str:
    """The URL without credentials: sensitive query values and the token itself masked."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url or config.url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, "***" if any(s in k.lower() for s in ("token", "key", "secret", "pass")) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return _masked(config, urlunsplit(parts._replace(netloc=netloc, query=query)))


def _masked(config: RestApiConfig, text: str) -> str:
    token = str(config.token) if config.token is not None else ""
    text = " ".join(text.split())  # one line
    return text.replace(token, "***") if len(token) >= 4 else text


def _reason(config: RestApiConfig, err: BaseException) -> str:
    """The innermost cause's text, short (a refused connection, not urllib3's whole chain)."""
    cause: BaseException = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        if nxt is None or nxt is cause:
            break
        cause = nxt
    text = str(cause) or type(cause).__name__
    if "Connection refused" in text:
        return "connection refused"
    text = _masked(config, text)
    return text if len(text) <= 160 else text[:157] + "..."
