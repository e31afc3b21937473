"""YAML a person wrote, read with limits: no input may exhaust the machine.

`yaml.safe_load` refuses arbitrary Python objects but not the "billion laughs": anchors and
aliases inside allowed keys that expand, nine references a level, into gigabytes once the
document is walked (a 1 KB rules file became a 39 MB database row after 30 s). `load_yaml`
reads at most `MAX_BYTES`, composes the document (aliases stay shared references, cheap), and
counts the nodes it would expand to and its nesting depth before constructing anything; over
`MAX_NODES` or `MAX_DEPTH` is refused with one line, as is a key given twice in one mapping
(PyYAML would keep the last without a word). Constructing a document within the limits
is then bounded too. Text with a NUL character (YAML's "\\0" escape) is refused with its line:
PostgreSQL cannot store it, and it has no place in a name, a pattern or a description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_NODES = 100_000  # nodes once every alias is expanded (a large rules file has ~1,000)
MAX_DEPTH = 40


class _DuplicateKey(ValueError):
    """A mapping naming `key` twice, the second time at `line` (1-based)."""

    def __init__(self, key: str, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _NulInText(ValueError):
    """A scalar holding a NUL character, at `line` (1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _expanded(node: yaml.Node, memo: dict[int, tuple[int, int]], depth: int) -> tuple[int, int]:
    """(nodes once expanded, nesting depth) of `node`; each shared node is counted once.

    Raises `_NulInText` for a scalar with a NUL character.
    """
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.ScalarNode) and "\x00" in node.value:
        raise _NulInText(node.start_mark.line + 1)
    if depth > MAX_DEPTH:
        return 1, depth
    if isinstance(node, yaml.MappingNode):
        # PyYAML keeps the last of two equal keys: `tolerance: 0.01, tolerance: 500` read as
        # 500 without a word
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise _DuplicateKey(key.value, key.start_mark.line + 1)
                seen.add(key.value)
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total, deepest = 1, 0
    for child in children:
        size, child_depth = _expanded(child, memo, depth + 1)
        total += size
        deepest = max(deepest, child_depth)
        if total > MAX_NODES:
            break
    memo[id(node)] = (total, deepest + 1)
    return total, deepest + 1


def load_yaml(path: Path, error: type[Exception]) -> Any:
    """The document in `path`, or `error` with one line naming the file and what is wrong."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    if size > MAX_BYTES:
        raise error(f"{path}: {size:,} bytes; a rules or feeds file may be {MAX_BYTES:,} at most")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        # the reader refuses control characters (a binary file) as it is made
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes, depth = _expanded(node, {}, 0)
        if nodes > MAX_NODES:
            raise error(
                f"{path}: expands to more than {MAX_NODES:,} values (anchors and aliases "
                "repeated inside each other?); write the values out"
            )
        if depth > MAX_DEPTH:
            raise error(f"{path}: nested more than {MAX_DEPTH} levels deep")
        return loader.construct_document(node)
    except _DuplicateKey as err:
        raise error(
            f"{path}: line {err.line}: key {err.key[:80]!r} is given twice in one mapping; "
            "keep one (YAML would silently keep the last)"
        ) from None
    except _NulInText as err:
        raise error(
            f"{path}: line {err.line}: text with a NUL character (\\0), which cannot be stored; "
            "remove it"
        ) from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to read") from None
    finally:
        loader.dispose()
