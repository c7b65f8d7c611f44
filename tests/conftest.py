"""Shared test fixtures: the committed sample data set and its truth."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

# The suite never reads or writes the user's aggregate cache (tests/test_aggregate_cache.py switches it on
# in a temporary folder): a cached aggregate would hide the queries some tests count.
os.environ["CARECALL_CACHE"] = "0"


def realised_truth(path) -> dict:
    """The ``realised`` block of a simulated data set's truth.json."""
    return json.loads((Path(path) / "truth.json").read_text())["realised"]


@pytest.fixture
def cache_on(tmp_path, monkeypatch):
    """The on-disk cache (aggregates and memoised results) switched on, in a fresh folder (the suite runs
    with CARECALL_CACHE=0)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("CARECALL_CACHE_DIR", str(d))
    monkeypatch.setenv("CARECALL_CACHE", "1")
    return d


@pytest.fixture(scope="module")
def sample():
    """``(dataset, realised truth)`` of data/sample (modules may define their own ``sample``)."""
    from carecall_eval import load

    ds = load(SAMPLE)
    yield ds, realised_truth(SAMPLE)
    ds.close()


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """Session-scoped factory of simulated data sets: ``simulated(customers=..., seed=..., **kw) -> (path, truth)``.

    Each parameter set is simulated once per test session and shared by every module that asks for it
    (simulating is deterministic for a seed, so sharing cannot couple tests).
    """
    from carecall_eval.simulate import simulate

    cache: dict = {}
    root = tmp_path_factory.mktemp("simulated")

    def make(**kw):
        key = tuple(sorted(kw.items()))
        if key not in cache:
            path = root / f"sim{len(cache)}"
            truth = simulate(path, **kw)
            cache[key] = (path, truth)
        return cache[key]

    return make
