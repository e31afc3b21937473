"""Credentials in `data_sources.config`, encrypted at rest with Fernet (`cryptography`).

The key is `RECON_SECRET_KEY` (one Fernet key, or several separated by commas: the first
encrypts, all decrypt) or else the key file `RECON_HOME/secret.key` (one key a line, same
rule), created with mode 0600 the first time something is encrypted. A key file readable by
group or others is refused with the `chmod` that fixes it.

Which config values are credentials (`is_credential_key`): any key whose name, lower-cased and
without `-`/`_`, contains password, passwd, passphrase, secret, token, apikey, credential,
privatekey or accesskey (whole value encrypted, whatever its JSON type), and the password of
any URL-valued string (`scheme://user:password@host/...`; the URL is kept with `***` for
people to read). The `columns` declarations are never credentials.

A credential is stored as an envelope, `{"$secret": "<Fernet token>", "key_id": "<12 hex>"}`
(plus `"url"` for a URL whose password it holds). `encrypt_config` seals a config before it is
written; `decrypt_config` opens one after reading, each value as a pydantic `Secret` (prints as
`**********`; `.get_secret_value()` or `reveal` for the plain value). `rotate_config`
re-encrypts every envelope with the newest key (MultiFernet.rotate).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import Secret

from resources.errors import ReconError
from resources.settings import recon_home

ENV_KEY = "RECON_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
SEALED = "$secret"
NOT_CREDENTIALS = frozenset({"columns"})
CREDENTIAL_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "creds",
    "privatekey",
    "accesskey",
)
MASK = "***"
MAKE_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


@dataclass(frozen=True)
class KeyRing:
    """The keys in force: `keys[0]` encrypts, every key decrypts. Never printed."""

    keys: tuple[bytes, ...]
    source: str  # "RECON_SECRET_KEY" or "key file <path>", for messages
    path: Path | None = None

    def __repr__(self) -> str:
        return f"KeyRing(source={self.source!r}, key_ids={self.key_ids()!r})"

    def key_ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])


def key_id(key: bytes) -> str:
    """A short public name for a key (a hash prefix: it says which key, not what it is)."""
    return hashlib.sha256(key).hexdigest()[:12]


def key_file() -> Path:
    """Where the key lives when `RECON_SECRET_KEY` is not set."""
    return recon_home() / KEY_FILE_NAME


def new_key() -> bytes:
    return Fernet.generate_key()


def _parse_keys(text: str, where: str) -> tuple[bytes, ...]:
    keys = tuple(k.encode() for k in re.split(r"[\s,]+", text.strip()) if k)
    if not keys:
        raise ReconError(f"{where} holds no key: restore it, or remove it to have a new one made")
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ReconError(
                f"{where} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                f"{MAKE_KEY}"
            ) from None
    return keys


def check_key_file_mode(path: Path) -> None:
    """Refuse a key file that group or others can read or write, saying how to fix it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ReconError(
            f"secret key file {path} is open to group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`"
        )


def write_key_file(path: Path, keys: tuple[bytes, ...]) -> None:
    """Replace the key file atomically (a 0600 temporary file, fsync, rename, fsync the dir)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, b"".join(k + b"\n" for k in keys))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _create_key_file(path: Path) -> None:
    """A first key, created exclusively (two processes at once: one wins, both use its key)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, new_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def load_keys(*, create: bool = False) -> KeyRing | None:
    """The key ring in force; None when there is none and `create` is false."""
    configured = os.environ.get(ENV_KEY, "").strip()
    if configured:
        return KeyRing(_parse_keys(configured, ENV_KEY), ENV_KEY)
    path = key_file()
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    check_key_file_mode(path)
    return KeyRing(_parse_keys(path.read_text(), f"key file {path}"), f"key file {path}", path)


def require_keys() -> KeyRing:
    """The key ring, for opening envelopes: one line saying what to do when there is none."""
    ring = load_keys()
    if ring is None:
        raise ReconError(
            f"data source secrets are encrypted but there is no key ({ENV_KEY} is unset and "
            f"{key_file()} does not exist): restore the key file or set {ENV_KEY}"
        )
    return ring


# --- which values are credentials -------------------------------------------------------------


def is_credential_key(name: str) -> bool:
    """Whether a config key names a credential (password, api_key, client-secret, ...)."""
    folded = re.sub(r"[-_\s.]", "", name.lower())
    return any(word in folded for word in CREDENTIAL_WORDS)


def url_password(value: str) -> str | None:
    """The (still percent-encoded) password of a `scheme://user:password@host` URL, if any."""
    if "://" not in value or "@" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc or "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    return password if colon and password and password != MASK else None


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{password}@{hostinfo}").geturl()


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(SEALED), str)


# --- envelopes --------------------------------------------------------------------------------


def seal(value: Any, ring: KeyRing) -> dict[str, Any]:
    """The envelope of a whole value (any JSON value)."""
    token = ring.fernet().encrypt(json.dumps(value).encode())
    return {SEALED: token.decode(), "key_id": key_id(ring.keys[0])}


def seal_url(url: str, ring: KeyRing) -> dict[str, Any]:
    """The envelope of a URL's password; the URL itself is kept with `***` in its place."""
    password = url_password(url)
    assert password is not None
    token = ring.fernet().encrypt(password.encode())
    return {
        SEALED: token.decode(),
        "key_id": key_id(ring.keys[0]),
        "url": _with_password(url, MASK),
    }


def unseal(envelope: dict[str, Any], ring: KeyRing, where: str = "a data source secret") -> Any:
    """The plain value of an envelope; one line naming the key when this ring cannot open it."""
    try:
        plain = ring.fernet().decrypt(envelope[SEALED].encode())
    except InvalidToken:
        wanted = envelope.get("key_id", "unknown")
        raise ReconError(
            f"{where} was encrypted with key {wanted}, which {ring.source} does not hold "
            f"(it has {', '.join(ring.key_ids())}): restore that key (the key file from a backup, "
            f"or {ENV_KEY}), or set the value again with `recon secrets set`"
        ) from None
    if "url" in envelope:
        return _with_password(envelope["url"], plain.decode())
    return json.loads(plain)


# --- whole configs ----------------------------------------------------------------------------


def _walk(
    value: Any, path: str, visit: Callable[[Any, str, str | None], Any], key: str | None = None
) -> Any:
    """Rebuild `value`, letting `visit(value, path, key)` replace any node (None: descend)."""
    replaced = visit(value, path, key)
    if replaced is not None:
        return replaced
    if isinstance(value, dict):
        return {
            k: (v if not path and k in NOT_CREDENTIALS else _walk(v, _join(path, k), visit, k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, f"{path}[{i}]", visit) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def needs_sealing(value: Any, key: str | None) -> bool:
    """Whether a plain config value is a credential that should be an envelope."""
    if is_sealed(value) or value is None or value == "":
        return False
    if key is not None and is_credential_key(key):
        return True
    return isinstance(value, str) and url_password(value) is not None


def encrypt_config(config: dict[str, Any] | None, ring: KeyRing) -> dict[str, Any]:
    """The config to write: every credential as an envelope (envelopes already there kept)."""

    def visit(value: Any, _path: str, key: str | None) -> Any:
        if is_sealed(value):
            return value
        return _seal_plain(value, key, ring) if needs_sealing(value, key) else None

    return _walk(config or {}, "", visit)


def _seal_plain(value: Any, key: str | None, ring: KeyRing) -> dict[str, Any]:
    if key is not None and is_credential_key(key):
        return seal(value, ring)
    return seal_url(value, ring)


def decrypt_config(config: dict[str, Any] | None, ring: KeyRing | None = None) -> dict[str, Any]:
    """The config as read, each envelope opened into a pydantic `Secret` (prints masked).

    The key is needed only when the config holds envelopes.
    """
    keys: list[KeyRing] = [ring] if ring is not None else []

    def visit(value: Any, path: str, _key: str | None) -> Any:
        if not is_sealed(value):
            return None
        if not keys:
            keys.append(require_keys())
        return Secret(unseal(value, keys[0], f"data source secret {path!r}"))

    return _walk(config or {}, "", visit)


def reveal(value: Any) -> Any:
    """`value` with every `Secret` replaced by its plain value (for the code that connects)."""
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def rotate_config(config: dict[str, Any] | None, ring: KeyRing) -> dict[str, Any]:
    """Every envelope re-encrypted with `ring.keys[0]` (any key of the ring opens the old ones),
    and any plain credential sealed."""
    fernet, newest = ring.fernet(), key_id(ring.keys[0])

    def visit(value: Any, path: str, key: str | None) -> Any:
        if is_sealed(value):
            try:
                token = fernet.rotate(value[SEALED].encode())
            except InvalidToken:
                unseal(value, ring, f"data source secret {path!r}")  # raises its one line
                raise
            return {**value, SEALED: token.decode(), "key_id": newest}
        return _seal_plain(value, key, ring) if needs_sealing(value, key) else None

    return _walk(config or {}, "", visit)


def sealed_paths(config: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(path, key id) of every envelope in a config."""
    found: list[tuple[str, str]] = []

    def visit(value: Any, path: str, _key: str | None) -> Any:
        if is_sealed(value):
            found.append((path, str(value.get("key_id", "unknown"))))
            return value
        return None

    _walk(config or {}, "", visit)
    return iter(found)


def plain_credential_paths(config: dict[str, Any] | None) -> list[str]:
    """Paths of credentials still stored in plain text (written by hand, say)."""
    found: list[str] = []

    def visit(value: Any, path: str, key: str | None) -> Any:
        if is_sealed(value):
            return value
        if needs_sealing(value, key):
            found.append(path)
            return value
        return None

    _walk(config or {}, "", visit)
    return found


def count_by_key(configs: list[dict[str, Any] | None]) -> Counter[str]:
    """How many envelopes each key id sealed, over many configs."""
    return Counter(kid for config in configs for _path, kid in sealed_paths(config))
