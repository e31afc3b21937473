"""`recon serve`: an HTTP endpoint where WEBHOOK data sources deliver files or batches of records.

`POST /webhooks/{organization}/{data source}` (a Starlette app served by uvicorn). The body is
a file (`text/csv`, JSON Lines, Parquet, `.xlsx`, `application/octet-stream`, ...: whatever
`recon land` reads, told apart by content) or a JSON batch (`application/json`: an array of
objects, landed as JSON Lines). It must be signed with the data source's `webhook_secret`
(`resources.webhook_auth`). Checks, in order, each refusal a JSON `{"error": ...}`:

- 404: no active WEBHOOK data source of that name (with a secret) in that organization;
- 401: timestamp missing, malformed or outside the replay window; signature header missing
  or malformed (all before the body is read);
- 415: a content type that is neither a file type nor `application/json`;
- 413: a body over `--max-bytes` (Starlette's per-route limit: a declared Content-Length
  over it is refused unread; a streamed body is cut off as soon as it passes it);
- 401: the signature does not match the body (compared in constant time);
- 400: a JSON batch that is not a non-empty array of objects.

Nothing is landed for any of these: the body streams into a hidden temporary file in the data
source's landing-zone folder (`recon.webhook_zone`), deleted on refusal, renamed into place
otherwise, and landed by `recon land`'s function in a worker (`recon.webhook_landing`): 201
with the file's summary (`uploaded_file_id`, status PROCESSED, ...); 200 when the content was
already landed for the organization (`duplicate_of`); 422 when the file landed but could not
be processed (FAILED, `processing_error`). A delivery repeated with the same timestamp and
signature while this server runs gets the first one's answer (`"replayed": true`) without
landing anything; after a restart the content hash does the same (`duplicate_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recon.webhook_landing import LandingPool, find_source
from recon.webhook_zone import (
    BATCH_TYPE,
    FILE_TYPES,
    BatchError,
    ZoneDrop,
    file_name,
    records_to_jsonl,
)
from resources.errors import ReconError
from resources.webhook_auth import (
    REPLAY_WINDOW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Signature,
    WebhookAuthError,
    check_timestamp,
    parse_signature,
)

DEFAULT_MAX_BYTES = 100 << 20
FILENAME_HEADER = "X-Recon-Filename"
STATUS_CODES = {"PROCESSED": 201, "FAILED": 422, "IN_PROGRESS": 409}


@dataclass
class ServerState:
    """What every request shares: database, zone, limits, workers, recent deliveries."""

    engine: sa.Engine
    zone: Path
    pool: LandingPool
    max_bytes: int = DEFAULT_MAX_BYTES
    window: int = REPLAY_WINDOW_SECONDS
    # (data source id, timestamp, signature) -> the answer, for replays within this process
    deliveries: dict[tuple[int, str, str], asyncio.Future[tuple[int, dict[str, Any]]]] = field(
        default_factory=dict
    )
    seen: dict[tuple[int, str, str], float] = field(default_factory=dict)

    def forget_old(self, now: float) -> None:
        """Drop remembered deliveries older than two windows (their timestamps are stale)."""
        for key, at in list(self.seen.items()):
            if now - at > 2 * self.window:
                self.seen.pop(key, None)
                self.deliveries.pop(key, None)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _answer(
    state: ServerState, drop: ZoneDrop, name: str, batch: bool
) -> tuple[int, dict[str, Any]]:
    """Convert a batch, rename the file into place and land it: (HTTP status, JSON body)."""
    records = None
    if batch:
        try:
            data, records = records_to_jsonl(drop.read())
        except BatchError as err:
            drop.discard()
            return 400, {"error": str(err)}
        drop.replace_content(data)
    item = drop.commit(name)
    try:
        summary = await state.pool.land(state.zone, item.relative)
    except ReconError as err:
        return 409, {"error": str(err), "path": str(item.relative)}
    status = STATUS_CODES.get(summary["status"], 500)
    if status == 201 and summary.get("duplicate_of") is not None:
        status = 200
    body = {**summary, "path": str(item.relative), "replayed": False}
    if records is not None:
        body["records"] = records
    return status, body


async def receive_delivery(request: Request) -> JSONResponse:
    """`POST /webhooks/{organization}/{data_source}` (see the module docstring)."""
    state: ServerState = request.app.state.webhooks
    organization = request.path_params["organization"]
    name = request.path_params["data_source"]
    try:
        source = await run_in_threadpool(find_source, state.engine, organization, name)
    except ReconError as err:  # e.g. the secret key is missing: say so to the operator
        return _error(503, str(err))
    if source is None:
        return _error(404, f"no WEBHOOK data source {name!r} in organization {organization!r}")
    now = time.time()
    try:
        timestamp = check_timestamp(request.headers.get(TIMESTAMP_HEADER), now, state.window)
        claimed = parse_signature(request.headers.get(SIGNATURE_HEADER))
    except WebhookAuthError as err:
        return _error(401, str(err))
    media = _media_type(request)
    batch = media == BATCH_TYPE
    if not batch and media not in FILE_TYPES:
        accepted = ", ".join([BATCH_TYPE, *FILE_TYPES])
        return _error(
            415, f"content type {media or 'none'!r} is not accepted; use one of {accepted}"
        )
    signature = Signature(source.secret, timestamp)
    drop = ZoneDrop(state.zone, organization, name)
    try:
        async for chunk in request.stream():  # 413 raised here past max_bytes (Starlette)
            signature.update(chunk)
            drop.write(chunk)
        signature.verify(claimed)
    except WebhookAuthError as err:
        drop.discard()
        return _error(401, str(err))
    except BaseException:
        drop.discard()
        raise
    key = (source.id, timestamp, claimed)
    earlier = state.deliveries.get(key)
    if earlier is not None:  # the same signed delivery again: its answer, nothing landed
        drop.discard()
        status, body = await asyncio.shield(earlier)
        return JSONResponse({**body, "replayed": True}, status_code=200 if status < 300 else status)
    state.forget_old(now)
    future: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
    state.deliveries[key], state.seen[key] = future, now
    suffix = ".jsonl" if batch else FILE_TYPES[media]
    given = request.headers.get(FILENAME_HEADER)
    if batch and given:
        given = f"{Path(given).stem}.jsonl"
    try:
        status, body = await _answer(
            state, drop, file_name(given, suffix, timestamp, claimed), batch
        )
    except BaseException as err:
        drop.discard()
        state.deliveries.pop(key, None)  # not answered: a retry may try again
        future.set_exception(err)
        future.exception()  # retrieved: no "never retrieved" warning when nobody waits
        raise
    if status >= 500 or status == 409:
        state.deliveries.pop(key, None)
    future.set_result((status, body))
    return JSONResponse(body, status_code=status)


async def health(_request: Request) -> JSONResponse:
    """`GET /health`: the server is up and its landing workers started."""
    return JSONResponse({"status": "ok"})


def create_app(state: ServerState) -> Starlette:
    """The ASGI app; the landing workers start with it and stop with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.pool.start()
        try:
            yield
        finally:
            state.pool.close()

    app = Starlette(
        routes=[
            Route(
                "/webhooks/{organization}/{data_source}",
                receive_delivery,
                methods=["POST"],
                max_body_size=state.max_bytes,
            ),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.webhooks = state
    return app
