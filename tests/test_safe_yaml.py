"""`resources.safe_yaml.load_yaml`: a key given twice in one mapping is refused with its line
(PyYAML keeps the last silently: a rule's `tolerance: 0.01` then `tolerance: 500` hid a fee),
while anchors, merge keys and equal keys in different mappings still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from resources.safe_yaml import load_yaml


class Refused(Exception):
    pass


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "name: fees\n"
        "matching_rules:\n"
        "  - {name: amount, match_type: RANGE, fields: [Amount], tolerance: 0.01, tolerance: 500}\n"
    )
    with pytest.raises(Refused) as err:
        load_yaml(rules, Refused)
    assert str(err.value) == (
        f"{rules}: line 3: key 'tolerance' is given twice in one mapping; keep one (YAML would "
        "silently keep the last)"
    )
    top = tmp_path / "top.yaml"
    top.write_text("name: a\nmatch_threshold: 0.9\nmatch_threshold: 0.5\n")
    with pytest.raises(Refused, match="line 3: key 'match_threshold' is given twice"):
        load_yaml(top, Refused)


def test_equal_keys_in_different_mappings_and_merge_keys_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "base: &base {match_type: RANGE, tolerance: 0.01}\n"
        "rules:\n"
        "  - {name: a, <<: *base}\n"
        "  - {name: b, <<: *base, tolerance: 1}\n"
    )
    loaded = load_yaml(path, Refused)
    assert [r["tolerance"] for r in loaded["rules"]] == [0.01, 1]
    assert loaded["rules"][0]["match_type"] == "RANGE"
