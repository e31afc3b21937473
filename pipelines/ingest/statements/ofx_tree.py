"""An OFX file as an element tree: the OFX 1.x SGML reader and the OFX 2.x XML one.

Written here rather than taken from a package because the one maintained OFX reader for Python,
`ofxtools`, is GPL-3.0-only and this project is Apache-2.0 (`ofxparse`, MIT, brings
BeautifulSoup and lxml and its own object model for a job this small). What is needed is small:
the header and a tree of tags.

- OFX 1.x (`OFXHEADER:100`): header lines `KEY:VALUE` (`ENCODING` and `CHARSET` give the
  text's codec), then an SGML body in which aggregates (`<STMTTRN>`...`</STMTTRN>`) are closed
  but leaf elements usually are not: `<TRNAMT>-12.50` ends at the next `<`. A closing tag of a
  leaf (`<CODE>0</CODE>`, as some banks write) is accepted too. An element that is closed only
  by its parent's end tag is a leaf, so elements found inside it (after an empty leaf such as
  `<MEMO><NAME>X`) are moved up to its parent. `&amp;`-style entities and numeric character
  references are decoded, `<![CDATA[...]]>` is text; nothing else is expanded.
- OFX 2.x (`<?OFX OFXHEADER="200" ...?>`): XML, parsed by ElementTree through `defusedxml`
  (a DTD or an entity is refused, nothing external is fetched). Files with the 2.x header whose
  body is SGML-style (unclosed leaves, as ANZ writes) are not XML; they are read by the SGML
  reader.

The tree is built with a loop and an explicit stack, never recursion, and nests at most
`MAX_DEPTH` deep (OFX nests about ten); the file size limit of statements bounds the rest.
Errors name the file, the entry (the number of the `STMTTRN` being read) and the tag.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from pipelines.ingest.statements.model import statement_error

MAX_DEPTH = 64

_TOKEN = re.compile(
    r"<!\[CDATA\[(?P<cdata>.*?)\]\]>"
    r"|<!--.*?-->|<\?.*?\?>|<!DOCTYPE[^>]*>"
    r"|<(?P<close>/?)(?P<tag>[A-Za-z][A-Za-z0-9_.:-]*)\s*/?>"
    r"|(?P<text>[^<]+|<)",
    re.S,
)
_HEADER_FIELD = re.compile(r"([A-Z]+)\s*:\s*([^\s<]*)")
_XML_ENCODING = re.compile(rb"""^[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|amp|lt|gt|quot|apos|nbsp);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": "\xa0"}
_CHARSETS = {"1252": "cp1252", "ISO-8859-1": "latin-1", "8859-1": "latin-1", "NONE": "latin-1"}
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def read_tree(data: bytes, name: str) -> Element:
    """The `<OFX>` element of an OFX 1.x or 2.x file; see the module doc."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _xml_tree(data, name)
    return _sgml_tree(_sgml_text(data, name), name)


def _sgml_text(data: bytes, name: str) -> str:
    """The body of an OFX 1.x file (from its first tag), decoded as its header says."""
    start = data.find(b"<")
    if start < 0:
        raise statement_error(name, "has an OFX header but no OFX body")
    header = dict(_HEADER_FIELD.findall(data[:start].decode("latin-1").upper()))
    if header.get("OFXHEADER") is None:
        raise statement_error(name, "has no OFXHEADER line", field_name="OFXHEADER")
    encoding = header.get("ENCODING", "USASCII")
    if encoding in ("UTF-8", "UNICODE"):
        codec = "utf-8"
    elif encoding == "USASCII":
        codec = _CHARSETS.get(header.get("CHARSET", "NONE"), "")
    else:
        codec = ""
    if not codec:
        raise statement_error(
            name,
            f"declares ENCODING:{encoding} CHARSET:{header.get('CHARSET', '')}, which is not "
            "an OFX text encoding",
            field_name="ENCODING",
        )
    return data[start:].decode(codec, errors="replace")


def _xml_tree(data: bytes, name: str) -> Element:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise statement_error(name, f"is XML with a DTD or entities ({exc})") from None
    except ParseError:
        return _sgml_tree(_xml_text(data), name)  # the 2.x header over an SGML body
    _check_depth(root, name)
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.rpartition("}")[2]  # a namespace, should a bank add one
    return _ofx_element(root, name)


def _xml_text(data: bytes) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    declared = _XML_ENCODING.match(data.lstrip())
    codec = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        return data.decode(codec, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _check_depth(root: Element, name: str) -> None:
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise statement_error(name, f"nests elements more than {MAX_DEPTH} deep")
        pending.extend((child, depth + 1) for child in node)


def _ofx_element(root: Element, name: str) -> Element:
    if root.tag == "OFX":
        return root
    found = root.find(".//OFX")
    if found is None:
        raise statement_error(name, "has no <OFX> element", field_name="OFX")
    return found


def _entity(match: re.Match[str]) -> str:
    key = match.group(1)
    if key[0] != "#":
        return _NAMED[key]
    code = int(key[2:], 16) if key[1] in "xX" else int(key[1:])
    return chr(code) if 0 < code <= 0x10FFFF else match.group(0)


def _close(stack: list[Element], count: int) -> None:
    """Pop `count` elements closed only by an ancestor's end tag: leaves, whose children (if
    any were read into them) belong to their parent, right after them."""
    for _ in range(count):
        node = stack.pop()
        if len(node):
            parent = stack[-1]
            at = list(parent).index(node) + 1
            parent[at:at] = list(node)
            del node[:]


def _sgml_tree(body: str, name: str) -> Element:
    """The element tree of an SGML (or XML-like) OFX body; see the module doc."""
    document = Element("#document")
    stack = [document]
    closed_leaf: str | None = None  # the leaf whose text just ended, its end tag is optional
    entry = 0
    has_data = False  # the open element has text and no child: a leaf, ended by any tag
    for match in _TOKEN.finditer(body):  # not findall: a list of every token is GBs
        cdata, close, tag, text = match.groups()
        top = stack[-1]
        if tag is None:
            piece = cdata or text
            if piece and top is not document and not len(top):
                if "&" in piece and not cdata:
                    piece = _ENTITY.sub(_entity, piece)
                top.text = (top.text or "") + piece
                has_data = has_data or not piece.isspace()
            continue
        if has_data:
            stack.pop()
            closed_leaf, has_data = top.tag, False
        if not close:
            node = Element(tag)
            stack[-1].append(node)
            stack.append(node)
            closed_leaf = None
            if tag == "STMTTRN":
                entry += 1
            if len(stack) > MAX_DEPTH:
                raise statement_error(
                    name, f"nests elements more than {MAX_DEPTH} deep", field_name=tag
                )
            continue
        if stack[-1].tag == tag and len(stack) > 1:
            stack.pop()
        elif depth := next((i for i in range(len(stack) - 1, 0, -1) if stack[i].tag == tag), 0):
            _close(stack, len(stack) - 1 - depth)
            stack.pop()
        elif closed_leaf != tag:
            raise statement_error(
                name,
                f"</{tag}> closes no open element",
                entry=entry if _inside(stack, "STMTTRN") else None,
                field_name=tag,
            )
        closed_leaf = None
    if has_data:
        stack.pop()
    if len(stack) > 1:
        raise statement_error(
            name,
            f"ends inside <{stack[-1].tag}> (the file is cut short)",
            entry=entry if _inside(stack, "STMTTRN") else None,
            field_name=stack[-1].tag,
        )
    for node in document.iter():
        if node.text is not None:
            node.text = node.text.strip()
    return _ofx_element(document, name)


def _inside(stack: list[Element], tag: str) -> bool:
    return any(node.tag == tag for node in stack)
