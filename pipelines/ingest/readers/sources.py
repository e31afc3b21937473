"""Text sources: a UTF-8 view of a text file, transcoding other encodings chunk by chunk."""

from __future__ import annotations

import codecs
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pipelines.ingest.readers.limits import _CHUNK_BYTES, FileFormatError
from pipelines.ingest.readers.sniffing import _Sniffed


@contextlib.contextmanager
def _utf8_source(path: Path, sniffed: _Sniffed, name: str) -> Iterator[Path]:
    """Yield a UTF-8 file with the same text: the file itself when it already is UTF-8.

    Other encodings (and old-Mac CR-only line ends) are transcoded chunk by chunk into a
    temporary file that is deleted afterwards, so memory stays bounded whatever the file size.
    """
    assert sniffed.encoding is not None and sniffed.body_encoding is not None
    if sniffed.encoding in ("utf-8", "utf-8-sig") and not sniffed.cr_only:
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix="recon-utf8-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:

            def write(text: str) -> None:
                if sniffed.cr_only:
                    text = text.replace("\r", "\n")
                out.write(text.encode("utf-8"))

            _decode_stream(src, sniffed.encoding, sniffed.body_encoding, name, write)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _decode_stream(
    src: BinaryIO,
    encoding: str,
    body_encoding: str,
    name: str,
    sink: Callable[[str], None] | None,
) -> None:
    """Decode `src` strictly in chunks, passing the text to `sink`.

    Raises FileFormatError naming the byte offset and line of the first byte sequence that is
    not valid in `encoding`.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    line = 1
    while True:
        chunk = src.read(_CHUNK_BYTES)
        final = not chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            pending = len(exc.object) - len(chunk)  # bytes held back from earlier chunks
            position = offset - pending + exc.start
            before = exc.object[: exc.start].decode(body_encoding, errors="replace")
            line += before.count("\n")
            label = codecs.lookup(encoding).name
            raise FileFormatError(
                f"{name}: byte {position} (line {line}) is not valid {label}, the encoding "
                "detected from the start of the file; the file mixes encodings or is damaged - "
                "re-save it as UTF-8"
            ) from exc
        line += text.count("\n")
        if sink is not None:
            sink(text)
        offset += len(chunk)
        if final:
            return
