"""The instruction-tuning report's spec (report/instruct.py)."""

import pytest

from robustft.report.instruct import InstructReportSpec


def test_spec_refuses_a_typo() -> None:
    with pytest.raises(ValueError, match=r"unknown instruct report keys \['titel'\]"):
        InstructReportSpec.from_dict({"titel": "t"})


def test_spec_takes_its_known_keys() -> None:
    spec = InstructReportSpec.from_dict({"title": "t", "choices": ["c"], "notes": ["n"]})
    assert spec.choices == ["c"] and spec.notes == ["n"]
