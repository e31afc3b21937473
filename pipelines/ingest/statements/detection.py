"""Telling a bank statement by its content, whatever the file is called.

`detect_format` looks at the first bytes of a file (`DETECT_BYTES`) and returns "mt940",
"mt942", "camt.052", "camt.053", "camt.054", "bai2" or "ofx", or None for anything else (which
the table readers then try). Only markers a table never starts with count:

- SWIFT MT940/MT942: a line starting `:20:` and a line starting `:25:` (or `:25P:`), after an
  optional SWIFT envelope (`{1:...}{2:O940...}{4:`) or a bank's own header lines (ING's
  `0000 01INGB...`, ABN AMRO's `ABNANL2A` and `940`); MT942 when the envelope says 942 or
  the text has the interim fields `:34F:`/`:13D:` and no `:60F:`/`:60M:` opening balance.
- ISO 20022 camt: an XML document whose namespace is
  `urn:iso:std:iso:20022:tech:xsd:camt.05x.001.NN` (any version).
- BAI2: a file header record `01,` followed by a group header `02,` and an account `03,`.
- OFX/QFX: the SGML header `OFXHEADER:` (OFX 1.x) or an XML document with the `<?OFX ...?>`
  processing instruction or an `<OFX>` root (OFX 2.x).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from pipelines.ingest.readers.limits import CONTENT_TYPES

DETECT_BYTES = 64 * 1024

STATEMENT_FORMATS = ("mt940", "mt942", "camt.052", "camt.053", "camt.054", "bai2", "ofx")
# their MIME types are in CONTENT_TYPES beside the table formats' (readers.limits)
STATEMENT_CONTENT_TYPES = {fmt: CONTENT_TYPES[fmt] for fmt in STATEMENT_FORMATS}

_CAMT_NS = re.compile(r"urn:iso:std:iso:20022:tech:xsd:(camt\.05[234])\.001\.\d{2}")
_MT_20 = re.compile(r"(?m)^\s*:20:")
_MT_25 = re.compile(r"(?m)^\s*:25P?:")
_MT_OPENING = re.compile(r"(?m)^\s*:60[FM]:")
_MT_INTERIM = re.compile(r"(?m)^\s*:(34F|13D):")
_MT_ENVELOPE = re.compile(r"\{2:[IO](94[02])")
_BAI_START = re.compile(r"^01,[^\n]*/[ \t]*\n(?:\s*\n)*02,[^\n]*\n(?:\s*\n|88,[^\n]*\n)*03,", re.M)
_OFX_XML = re.compile(r"<\?OFX\s|<OFX>", re.I)
_LEADING_NOISE = "\ufeff\x00\x01\x02\x03 \t\r\n"


def _text_of(head: bytes) -> str:
    """The sample as text: UTF-8/16 by BOM, else Latin-1 (every byte is a character)."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return head.decode(codec, errors="replace")
    return head.decode("latin-1")


def detect_format(head: bytes) -> str | None:
    """The statement format of a file starting with `head`, or None; see the module doc."""
    text = _text_of(head).lstrip(_LEADING_NOISE).replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        return None
    if text.startswith("<"):
        camt = _CAMT_NS.search(text)
        if camt:
            return camt.group(1)
        if _OFX_XML.search(text):
            return "ofx"
        return None
    if text.startswith("OFXHEADER:"):
        return "ofx"
    if text.startswith("01,") and _BAI_START.search(text):
        return "bai2"
    if _MT_20.search(text) and _MT_25.search(text):
        envelope = _MT_ENVELOPE.search(text)
        if envelope:
            return "mt" + envelope.group(1)
        if _MT_INTERIM.search(text) and not _MT_OPENING.search(text):
            return "mt942"
        return "mt940"
    return None


def detect_file(path: Path) -> str | None:
    """The statement format of a stored file, from its first `DETECT_BYTES` bytes."""
    with Path(path).open("rb") as handle:
        return detect_format(handle.read(DETECT_BYTES))
