"""Webhook signatures: HMAC-SHA256 over `timestamp + "." + body` with the data source's secret.

A sender signs each delivery with the secret stored (encrypted) at `webhook_secret` in its
data source's config (`recon secrets set webhook_secret --data-source NAME`):

    X-Recon-Timestamp: <unix seconds>
    X-Recon-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>

A delivery whose timestamp is more than the replay window (default 300 s) away from the
receiver's clock, in either direction, is refused before its body is read; the signature is
compared in constant time (`hmac.compare_digest`). The body is fed to `Signature` chunk by
chunk, so it is never held whole. Every refusal is a `WebhookAuthError` (HTTP 401) whose
message says which check failed, never the expected signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

TIMESTAMP_HEADER = "X-Recon-Timestamp"
SIGNATURE_HEADER = "X-Recon-Signature"
SECRET_KEY = "webhook_secret"  # the config key holding the secret (sealed: "secret")
REPLAY_WINDOW_SECONDS = 300
SCHEME = "sha256="
_HEX = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,12}")


class WebhookAuthError(Exception):
    """A delivery that is not authenticated (HTTP 401); the message says which check failed."""


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The `X-Recon-Signature` value of a delivery (what a sender computes)."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return SCHEME + mac.hexdigest()


def signed_headers(
    secret: str | bytes, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers of a delivery signed now (or at `timestamp`)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(secret, stamp, body)}


def check_timestamp(value: str | None, now: float, window: int = REPLAY_WINDOW_SECONDS) -> str:
    """The timestamp header as signed; `WebhookAuthError` when missing, malformed or stale."""
    if value is None:
        raise WebhookAuthError(f"missing {TIMESTAMP_HEADER} header (unix seconds)")
    if not _DIGITS.fullmatch(value):
        raise WebhookAuthError(f"{TIMESTAMP_HEADER} is not unix seconds")
    skew = int(value) - now
    if abs(skew) > window:
        side = "in the future" if skew > 0 else "old"
        raise WebhookAuthError(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {side}, outside the {window} s replay "
            "window (sign each delivery when it is sent; check the sender's clock)"
        )
    return value


def parse_signature(value: str | None) -> str:
    """The hex digest of a `sha256=<hex>` header; `WebhookAuthError` when missing or malformed."""
    if value is None:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header (sha256=<hex>)")
    digest = value.strip().removeprefix(SCHEME).lower()
    if not value.strip().startswith(SCHEME) or not _HEX.fullmatch(digest):
        raise WebhookAuthError(f"{SIGNATURE_HEADER} is not sha256=<64 hex digits>")
    return digest


@dataclass
class Signature:
    """The HMAC of one delivery, fed its body chunk by chunk, then checked against its header."""

    secret: bytes
    timestamp: str
    _mac: hmac.HMAC = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mac = hmac.new(self.secret, f"{self.timestamp}.".encode(), hashlib.sha256)

    def update(self, chunk: bytes) -> None:
        self._mac.update(chunk)

    def verify(self, claimed_hex: str) -> None:
        """`WebhookAuthError` unless the body fed so far has the claimed signature."""
        if not hmac.compare_digest(self._mac.hexdigest(), claimed_hex):
            raise WebhookAuthError(
                f"{SIGNATURE_HEADER} does not match the body (wrong secret, or the body or "
                f"{TIMESTAMP_HEADER} changed after signing)"
            )
