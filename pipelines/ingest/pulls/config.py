"""What a pulled data source declares: the `config` of a DATABASE or REST_API `data_sources` row.

Stored as JSON in `data_sources.config` (credentials sealed by `resources.secrets`: a URL's
password and any credential-named key such as `token`), read back decrypted and held to these
pydantic shapes, as strict as the rules and feeds files: an unknown key or a wrong type is one
`SourceConfigError` line naming the data source and the key.

- DATABASE: a SQLAlchemy `url` (its password in it, or apart as `password`: both stored
  encrypted), a `table` or a `query` (one SELECT), the `incremental_column`
  whose values only grow (an id, an updated_at); each pull asks for the rows above the last
  pull's watermark, in that column's order, and writes them as CSV.
- REST_API: the endpoint `url`, where the records are in a page (`items`, a JSONPath; found by
  dlt when omitted), how pages follow each other (`paginator`: offset, cursor, link header,
  page number), the auth (a bearer `token` or `token` in a named header), and the
  `incremental_field` of each record (with `incremental_param`, the query parameter the API
  filters by, if it has one); records are written as JSON Lines.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from resources.errors import ReconError

PULLED_TYPES = ("DATABASE", "REST_API")
MAX_ROWS = 5_000_000  # a pull stops (fails) beyond this many rows: a runaway query never lands


class SourceConfigError(ReconError):
    """A pulled source's declaration is wrong (one line naming the source and the key)."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DatabaseConfig(_Shape):
    """A table or query of another database, pulled incrementally."""

    url: str = Field(description="SQLAlchemy URL (postgresql+psycopg://..., sqlite:///...)")
    password: Any = None  # sealed; replaces the URL's (`recon secrets set password ...`)
    table: str | None = None
    query: str | None = None
    incremental_column: str
    initial_watermark: str | int | None = None
    batch_rows: int = Field(50_000, gt=0, le=1_000_000)
    max_rows: int = Field(MAX_ROWS, gt=0)
    timeout_seconds: int = Field(600, gt=0, le=86_400)

    @model_validator(mode="after")
    def _table_or_query(self) -> DatabaseConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give a table or a query (exactly one)")
        if self.query is not None and not self.query.lstrip().lower().startswith(
            ("select", "with")
        ):
            raise ValueError("query must be one SELECT (or WITH ... SELECT)")
        if self.query is not None and ";" in self.query.strip().rstrip(";"):
            raise ValueError("query must be one statement (no ';' inside)")
        return self


class RestApiConfig(_Shape):
    """A paged JSON endpoint, pulled incrementally."""

    url: str = Field(description="the endpoint, http(s)://host/path")
    items: str | None = None  # JSONPath of a page's records ("data", "results[*]"); None: found
    paginator: Literal["offset", "cursor", "link", "page", "single"] = "link"
    page_size: int = Field(100, gt=0, le=10_000)
    limit_param: str = "limit"
    offset_param: str = "offset"
    page_param: str = "page"
    cursor_path: str = "next_cursor"  # JSONPath of the next cursor in a page
    cursor_param: str = "cursor"
    auth: Literal["none", "bearer", "header"] = "none"
    auth_header: str = "X-API-Key"  # with auth: header, the header carrying the token
    token: Any = None  # sealed at rest; `recon secrets set token --data-source NAME`
    params: dict[str, str] = Field(default_factory=dict)  # fixed query parameters
    incremental_field: str
    incremental_param: str | None = None  # the API filters by it ("since"); else client side
    initial_watermark: str | int | None = None
    max_records: int = Field(MAX_ROWS, gt=0)
    max_page_bytes: int = Field(64 << 20, gt=0, le=1 << 30)  # one answer's body, at most
    timeout_seconds: int = Field(60, gt=0, le=3_600)

    @model_validator(mode="after")
    def _http(self) -> RestApiConfig:
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        if self.auth != "none" and self.token is None:
            raise ValueError(
                "auth needs a token: `recon secrets set token --data-source NAME` (stdin)"
            )
        return self


def source_config(kind: str, config: dict[str, Any], where: str) -> DatabaseConfig | RestApiConfig:
    """The validated declaration of a pulled source (its config decrypted, Secrets revealed)."""
    from resources.secrets import reveal

    shape = {"DATABASE": DatabaseConfig, "REST_API": RestApiConfig}.get(kind)
    if shape is None:
        raise SourceConfigError(f"{where} is a {kind} data source; only DATABASE and REST_API pull")
    plain = {k: reveal(v) for k, v in config.items() if k != "columns"}
    try:
        return shape.model_validate(plain)
    except ValidationError as err:
        problem = err.errors()[0]
        key = ".".join(str(p) for p in problem["loc"]) or "config"
        raise SourceConfigError(f"{where}: {key}: {problem['msg']}") from None


def watermark_value(value: Any) -> str | int:
    """A value of a source's incremental column or field as a watermark kept in JSON: an int
    stays an int (an integral float or decimal becomes one), a date or time is ISO 8601,
    anything else its text (ISO timestamps compare as text)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)) and value == int(value):
        return int(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)
