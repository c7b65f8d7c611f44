"""docs/data-contract.md describes the contract defined in carecall_eval.contract.spec."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from carecall_eval.contract.spec import TABLES

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-contract.md"


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### `(\w+)`.*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


@pytest.mark.parametrize("name", list(TABLES))
def test_each_table_and_column_is_documented(name):
    section = _sections(DOC.read_text())[name]
    table = TABLES[name]
    for col in table.columns:
        row = re.search(rf"^\| `{col.name}`\s*\|\s*(\w+)\s*\|\s*(\w+)", section, flags=re.M)
        assert row, f"{name}.{col.name} is not in its table in {DOC.name}"
        kind, null = row.groups()
        assert kind == col.kind
        assert null == ("nullable" if col.nullable else "required")


def test_every_vocabulary_value_is_documented():
    text = DOC.read_text()
    for table in TABLES.values():
        for col in table.columns:
            for value in col.vocabulary or ():
                assert f"`{value}`" in text, value
