"""The suite's files: pytest imports test modules by their file name, so two files of one name in tests/ and
tests/unit/ stop the whole suite's collection, which the unit tier alone would never show."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
