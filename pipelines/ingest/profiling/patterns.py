"""Date and time patterns: translation between the seed's Java DateTimeFormatter style and
chrono strftime, and the lenient vectorised parse of stripped text with a strftime format."""

from __future__ import annotations

import re

import polars as pl

_SEED_TO_STRFTIME = {
    "yyyy": "%Y",
    "uuuu": "%Y",
    "yy": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%-m",
    "dd": "%d",
    "d": "%-d",
    "HH": "%H",
    "H": "%-H",
    "hh": "%I",
    "h": "%-I",
    "mm": "%M",
    "ss": "%S",
    "a": "%p",
    "EEEE": "%A",
    "EEE": "%a",
    "XXX": "%:z",
    "xxx": "%:z",
    "ZZZZZ": "%:z",
    "XX": "%z",
    "xx": "%z",
    "Z": "%z",
}
_FRACTION_TO_STRFTIME = {3: "%.3f", 6: "%.6f", 9: "%.9f"}
_STRFTIME_TO_SEED = {
    "%Y": "yyyy",
    "%y": "yy",
    "%B": "MMMM",
    "%b": "MMM",
    "%h": "MMM",
    "%m": "MM",
    "%-m": "M",
    "%d": "dd",
    "%-d": "d",
    "%e": "d",
    "%H": "HH",
    "%-H": "H",
    "%I": "hh",
    "%-I": "h",
    "%M": "mm",
    "%S": "ss",
    "%p": "a",
    "%P": "a",
    "%A": "EEEE",
    "%a": "EEE",
    "%:z": "XXX",
    "%#z": "XXX",
    "%z": "XX",
    "%.3f": ".SSS",
    "%.6f": ".SSSSSS",
    "%.9f": ".SSSSSSSSS",
    "%.f": ".SSS",
    "%F": "yyyy-MM-dd",
    "%T": "HH:mm:ss",
    "%R": "HH:mm",
    "%D": "MM/dd/yy",
    "%%": "%",
}
_SEED_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|\.S+|([A-Za-z])\1*|.", re.DOTALL)
_STRFTIME_TOKEN_RE = re.compile(r"%[-_0^#]?(?:\.[0-9]?|:)?[A-Za-z%+]|.", re.DOTALL)


def seed_pattern_to_strftime(pattern: str) -> str:
    """Translate a seed (Java DateTimeFormatter style) pattern to a chrono strftime format.

    Supported letters: ``yyyy yy MMMM MMM MM M dd d HH H hh h mm ss a EEEE EEE`` plus
    ``.SSS``/``.SSSSSS``/``.SSSSSSSSS`` fractions (other widths map to ``%.f``) and the zone
    offsets ``XXX``/``xxx``/``ZZZZZ`` (``+02:00``) and ``XX``/``xx``/``Z`` (``+0200``). Quoted
    text (``'T'``, ``''`` for a quote) is literal. Unsupported letters raise ValueError.
    """
    out: list[str] = []
    for match in _SEED_TOKEN_RE.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            literal = "'" if token == "''" else token[1:-1].replace("''", "'")
            out.append(literal.replace("%", "%%"))
        elif token.startswith(".") and len(token) > 1:
            out.append(_FRACTION_TO_STRFTIME.get(len(token) - 1, "%.f"))
        elif token[0].isalpha():
            if token not in _SEED_TO_STRFTIME:
                raise ValueError(f"unsupported pattern letters {token!r} in {pattern!r}")
            out.append(_SEED_TO_STRFTIME[token])
        else:
            out.append("%%" if token == "%" else token)
    return "".join(out)


def strftime_to_seed_pattern(fmt: str) -> str:
    """Translate a chrono strftime format back to the seed's pattern style.

    Inverse of `seed_pattern_to_strftime` for the directives it produces; literal letters are
    quoted (``T`` -> ``'T'``). Unsupported directives raise ValueError.
    """
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal)
            if any(ch.isalpha() for ch in text):
                out.append("'" + text.replace("'", "''") + "'")
            else:
                out.append(text.replace("'", "''"))
            literal.clear()

    for match in _STRFTIME_TOKEN_RE.finditer(fmt):
        token = match.group(0)
        if token.startswith("%") and len(token) > 1:
            if token not in _STRFTIME_TO_SEED:
                raise ValueError(f"unsupported strftime directive {token!r} in {fmt!r}")
            if token == "%%":
                literal.append("%")
                continue
            flush()
            out.append(_STRFTIME_TO_SEED[token])
        else:
            literal.append(token)
    flush()
    return "".join(out)


_FRACTION_DIRECTIVE_RE = re.compile(r"%\.[0-9]?f")
_SECONDS_RE = re.compile(r"%S(?!%\.[0-9]?f)")
_ZONE_RE = re.compile(r"%[:#]?z")


def _lenient_strftime(fmt: str) -> str:
    """Parse format that also accepts optional fractions of any width and ``Z`` as an offset."""
    fmt = _FRACTION_DIRECTIVE_RE.sub("%.f", fmt)
    fmt = _SECONDS_RE.sub("%S%.f", fmt)
    return _ZONE_RE.sub("%#z", fmt)


def _parse_temporal(expr: pl.Expr, fmt: str, kind: str, cache: bool = True) -> pl.Expr:
    """Vectorised parse of stripped text with a strftime format; failures become null.

    `cache` makes polars parse each distinct text once, which pays only when few repeat a lot.
    """
    lenient = _lenient_strftime(fmt)
    if kind == "DATE":
        out = expr.str.to_date(lenient, strict=False, exact=True, cache=cache)
    else:
        out = expr.str.to_datetime(lenient, time_unit="us", strict=False, exact=True, cache=cache)
        if "%#z" in lenient:
            out = out.dt.convert_time_zone("UTC")
        else:
            out = out.dt.replace_time_zone("UTC")
    if "%Y" in lenient:  # chrono reads "24" as the year 24 with %Y; such cells are failures
        floor = pl.date(1000, 1, 1) if kind == "DATE" else pl.datetime(1000, 1, 1, time_zone="UTC")
        out = pl.when(out >= floor).then(out)  # the year, but comparing is much cheaper
    return out
