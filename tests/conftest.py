"""Shared test fixtures: the committed sample data set and its truth."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def realised_truth(path) -> dict:
    """The ``realised`` block of a simulated data set's truth.json."""
    return json.loads((Path(path) / "truth.json").read_text())["realised"]


@pytest.fixture(scope="module")
def sample():
    """``(dataset, realised truth)`` of data/sample (modules may define their own ``sample``)."""
    from carecall_eval import load

    ds = load(SAMPLE)
    yield ds, realised_truth(SAMPLE)
    ds.close()
