"""Text as people write it: the normalised form FUZZY and EXACT rules compare.

A bank writes `APERTURE SUPPLIES GMBH  `, the ledger `Aperture Supplies GmbH`; a payee is
`O'BRIEN & SONS LTD` on one side and `O'Brien & Sons Limited` on the other; a reference is
`INV-2024-00123` in the ledger and `INV 2024/00123` in the bank's free text. Compared as
written, none of them agree, and a model trained on such pairs learns that names never agree.

So matching compares normalised values (the stored records keep what the files wrote):

- FUZZY text (names, descriptions): accents removed (NFKD, marks dropped; `ø`, `æ`, `ß`,
  `ł` and the like folded as banks spell them: `o`, `ae`, `ss`, `l`), lower case,
  apostrophes and dots removed (`O'Brien` -> `obrien`, `L.L.C.` -> `llc`), `&` read as `and`,
  any other punctuation a space, runs of whitespace one space, and legal forms replaced by one
  canonical token from an equivalence table (`Limited` and `Ltd` -> `ltd`, `Incorporated` ->
  `inc`, `Gesellschaft mit beschränkter Haftung` -> `gmbh`, ...);
- EXACT text (references, accounts, codes): the same without the legal-form table, then every
  character that is not a letter or a digit dropped (`INV-2024-00123` == `inv 2024 00123`);
  EXACT text that reads like names (spaces in a fifth of the values) keeps the table
  (`ACME LTD` == `Acme Limited`);
- a value that is blank after normalising is null: a blank is no evidence, never evidence
  against (Splink gives a null its neutral level; the exact pre-pass never joins on it).

A rule set controls it under `text_normalization` (defaults shown)::

    text_normalization:
      enabled: true          # false compares text exactly as mapped
      legal_forms: true      # false leaves legal forms as written
      equivalents:           # extends the table: canonical token -> variants
        ltd: [ltee]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

# canonical token -> the ways it is written, each already in normalised form (lower case,
# no dots or apostrophes); the canonical token is always one of its own variants
LEGAL_FORMS: dict[str, tuple[str, ...]] = {
    "ltd": ("limited", "ltd"),
    "inc": ("incorporated", "inc"),
    "co": ("company", "co"),
    "corp": ("corporation", "corp"),
    "llc": ("llc", "limited liability company"),
    "llp": ("llp", "limited liability partnership"),
    "lp": ("lp", "limited partnership"),
    "plc": ("plc", "public limited company"),
    "gmbh": ("gmbh", "gesellschaft mit beschrankter haftung"),
    "ag": ("ag", "aktiengesellschaft"),
    "kg": ("kg", "kommanditgesellschaft"),
    "sa": ("sa", "societe anonyme", "sociedad anonima"),
    "sarl": ("sarl", "societe a responsabilite limitee"),
    "srl": ("srl", "societa a responsabilita limitata"),
    "spa": ("spa", "societa per azioni"),
    "bv": ("bv", "besloten vennootschap"),
    "nv": ("nv", "naamloze vennootschap"),
    "pty": ("pty", "proprietary"),
    "oy": ("oy", "osakeyhtio"),
    "ab": ("ab", "aktiebolag"),
}


@dataclass(frozen=True)
class TextNormalization:
    """How a rule set normalises text before comparing it."""

    enabled: bool = True
    legal_forms: bool = True
    equivalents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def table(self) -> dict[str, tuple[str, ...]]:
        """The equivalence table in force: built-in (unless switched off) plus extensions."""
        table: dict[str, tuple[str, ...]] = dict(LEGAL_FORMS) if self.legal_forms else {}
        for canonical, variants in self.equivalents.items():
            table[canonical] = tuple(dict.fromkeys((*table.get(canonical, ()), *variants)))
        return table


# letters NFKD does not take apart, as banks' character sets spell them
FOLDED = {
    "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
    "ı": "i",
}  # fmt: skip


def _plain(expr: pl.Expr, *, ascii_only: bool = False) -> pl.Expr:
    """Accents, case, apostrophes/dots, `&` and punctuation handled; words single-spaced.

    `ascii_only` (the caller checked the column) skips the Unicode folding, a third of the
    cost on a million rows.
    """
    text = expr.cast(pl.String)
    if not ascii_only:
        text = text.str.replace_many(FOLDED).str.normalize("NFKD").str.replace_all(r"\p{Mn}", "")
    return (
        text.str.to_lowercase()
        .str.replace_all(r"['’`.]", "")
        .str.replace_all("&", " and ", literal=True)
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
    )


def _word(text: str) -> str:
    """A table entry in the same normalised form as the data (so `L.L.C.` works too)."""
    text = text.lower().replace("&", " and ")
    text = re.sub(r"['’`.]", "", text)
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _legal_forms(expr: pl.Expr, table: Mapping[str, tuple[str, ...]]) -> pl.Expr:
    """Each legal-form variant (a whole word or phrase) replaced by its canonical token.

    One Aho-Corasick pass (`replace_many`, leftmost, longest phrase first) over the text with
    every word wrapped in its own pair of spaces, so ` co ` never matches inside `cocoa`.
    """
    pairs = sorted(
        {(_word(v), _word(c)) for c, variants in table.items() for v in (c, *variants)},
        key=lambda p: (-len(p[0]), p[0]),  # `limited liability company` before `limited`
    )
    pairs = [(v, c) for v, c in pairs if v and v != c]
    if not pairs:
        return expr
    spaced = pl.concat_str(
        [pl.lit(" "), expr.str.replace_all(" ", "  ", literal=True), pl.lit(" ")]
    )
    return spaced.str.replace_many(
        [f" {v.replace(' ', '  ')} " for v, _ in pairs],
        [f" {c} " for _, c in pairs],
        leftmost=True,
    ).alias("text")


def normalize_plain(expr: pl.Expr, *, ascii_only: bool = False) -> pl.Expr:
    """Free text as identifiers are compared: folded, lower case, punctuation a space."""
    return _plain(expr, ascii_only=ascii_only)


def normalize_name(
    expr: pl.Expr, policy: TextNormalization, *, ascii_only: bool = False
) -> pl.Expr:
    """A name as compared by FUZZY; blank becomes null."""
    if not policy.enabled:
        return _blank_is_null(expr.cast(pl.String).str.strip_chars())
    text = _plain(expr, ascii_only=ascii_only)
    if policy.legal_forms or policy.equivalents:
        text = _legal_forms(text, policy.table())
    return _blank_is_null(text.str.replace_all(r"\s+", " ").str.strip_chars())


def normalize_identifier(
    expr: pl.Expr, policy: TextNormalization, *, ascii_only: bool = False
) -> pl.Expr:
    """A code or reference as compared by EXACT: letters and digits only; blank becomes null."""
    if not policy.enabled:
        return _blank_is_null(expr.cast(pl.String).str.strip_chars())
    return _blank_is_null(
        _plain(expr, ascii_only=ascii_only).str.replace_all(" ", "", literal=True)
    )


def is_ascii(series: pl.Series) -> bool:
    """Whether every value of a text column is plain ASCII (no folding needed)."""
    return not series.str.contains(r"[^\x00-\x7F]").any()


def _blank_is_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.len_chars() > 0).then(expr).otherwise(None)


def _on_distinct(series: pl.Series, how: pl.Expr) -> pl.Series:
    """`how` (over column "v") applied once per distinct value, then mapped back."""
    distinct = series.unique().to_frame("v")
    table = distinct.with_columns(how.alias("n"))
    out = series.to_frame("v").join(
        table, on="v", how="left", nulls_equal=True, maintain_order="left"
    )
    return out.get_column("n").alias(series.name)


def normalize_text(series: pl.Series, match_type: str, policy: TextNormalization) -> pl.Series:
    """A text column as a FUZZY or EXACT rule compares it (see the module docstring).

    EXACT text that reads like names (a fifth or more of a sample holds a space) is
    normalised as a name and then loses its spaces, so `ACME LTD` equals `Acme Limited`;
    other EXACT text (references, codes) skips the legal-form table. Work is done once per
    distinct value when values repeat (payees follow a Zipf law), else row by row.
    """
    text = series.cast(pl.String)
    column = pl.col("v")
    plain = is_ascii(text)
    if match_type == "FUZZY":
        how = normalize_name(column, policy, ascii_only=plain)
    else:
        sample = text.drop_nulls().head(10_000)
        spaced = sample.str.strip_chars().str.contains(" ", literal=True).mean() or 0.0
        how = (
            normalize_name(column, policy, ascii_only=plain).str.replace_all(" ", "", literal=True)
            if spaced >= 0.2
            else normalize_identifier(column, policy, ascii_only=plain)
        )
    if text.len() and text.n_unique() <= text.len() // 2:
        return _on_distinct(text, how)
    return text.to_frame("v").select(how.alias(series.name)).to_series()
