"""The on-disk memo of estimator results (carecall_eval/outcomes/memo.py).

Through the registry, a second call with the same data, sample, level and options reads the result back
(identical summary, no refit); another level, another matching option, changed code or a switched-off
cache computes; a damaged entry is recomputed; calling the function directly always computes.
"""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import SAMPLE

from carecall_eval.cohorts import build_cohort
from carecall_eval.cohorts import cache as C
from carecall_eval.contract import load
from carecall_eval.outcomes import memo
from carecall_eval.outcomes.registry import ESTIMATORS


@pytest.fixture(scope="module")
def data():
    ds = load(SAMPLE, validate=False)
    from carecall_eval.cohorts.cache import caching

    with caching(False):
        cohort = build_cohort(ds)
    yield ds, cohort
    ds.close()


def _results(lookups):
    return [o for f, o in lookups if f.startswith("result:")]


def _entries(d):
    """The entries (without the files their details are stored in)."""
    return sorted(p for p in (d / memo.FOLDER).glob("*/*.pickle") if ".details" not in p.name) if d.is_dir() else []


def test_a_second_call_reads_the_result_back(data, cache_on, monkeypatch):
    ds, cohort = data
    spec = ESTIMATORS["retention"]
    with C.lookups() as seen:
        first = spec(ds, cohort.sample(), level=0.9, horizon=180)
    assert _results(seen) == ["miss"] and len(_entries(cache_on)) == 1
    calls = []
    real = spec.func
    monkeypatch.setattr(type(spec), "func", property(lambda self: lambda *a, **k: calls.append(1) or real(*a, **k)))
    with C.lookups() as seen:
        again = spec(ds, cohort.sample(), level=0.9, horizon=180)   # a new sample object, the same content
    assert _results(seen) == ["hit"] and calls == []
    pd.testing.assert_frame_equal(first.summary, again.summary, check_exact=True)
    assert again.text == first.text and again.settings == first.settings
    with C.lookups() as seen:
        spec(ds, cohort.sample(), level=0.8, horizon=180)              # another level
        spec(ds, cohort.sample(caliper=0.05), level=0.9, horizon=180)  # another matching option
    assert _results(seen) == ["miss", "miss"] and len(calls) == 2


def test_changed_code_or_a_switched_off_cache_computes(data, cache_on, monkeypatch):
    ds, cohort = data
    spec = ESTIMATORS["call_length"]
    with C.lookups() as seen:
        spec(ds)
        spec(ds)
    assert _results(seen) == ["miss", "hit"]
    monkeypatch.setattr(memo, "code_digest", lambda: "another release")
    with C.lookups() as seen:
        spec(ds)
    assert _results(seen) == ["miss"]
    monkeypatch.setenv("CARECALL_CACHE", "0")
    n = len(_entries(cache_on))
    with C.lookups() as seen:
        spec(ds)
    assert _results(seen) == [] and len(_entries(cache_on)) == n


def test_a_damaged_entry_is_recomputed_and_clear_removes_results(data, cache_on):
    ds, _ = data
    spec = ESTIMATORS["call_length"]
    first = spec(ds)
    (entry,) = _entries(cache_on)
    entry.write_bytes(b"not a pickle")
    with C.lookups() as seen:
        again = spec(ds)
    assert _results(seen) == ["miss"]
    pd.testing.assert_frame_equal(first.summary, again.summary, check_exact=True)
    assert C.clear() >= 1 and _entries(cache_on) == []


def test_a_read_result_says_the_warnings_of_its_computation_again(data, cache_on, monkeypatch):
    import warnings

    from carecall_eval.errors import SmallSampleWarning

    ds, _ = data
    spec = ESTIMATORS["call_length"]
    real = spec.func

    def noisy(*a, **k):
        warnings.warn("only 3 calls in a cell", SmallSampleWarning, stacklevel=2)
        return real(*a, **k)

    monkeypatch.setattr(type(spec), "func", property(lambda self: noisy))
    for outcome in ("miss", "hit"):
        with C.lookups() as seen, pytest.warns(SmallSampleWarning, match="only 3 calls"):
            spec(ds)
        assert _results(seen) == [outcome]


def test_the_function_itself_always_computes(data, cache_on):
    ds, cohort = data
    with C.lookups() as seen:
        ESTIMATORS["call_length"].func(ds)
    assert _results(seen) == [] and _entries(cache_on) == []


def test_validation_and_key_figures_are_memoised_on_the_data_alone(data, cache_on):
    from carecall_eval.contract.validation import validate_dataset
    from carecall_eval.report.quarters import quarter_kpis

    ds, _ = data
    with C.lookups() as seen:
        v1 = memo.memoised("validation", validate_dataset, ds)
        v2 = memo.memoised("validation", validate_dataset, ds)
        k1 = memo.memoised("quarter_kpis", quarter_kpis, ds, ["2025Q3", "2025Q4"], level=0.9)
        k2 = memo.memoised("quarter_kpis", quarter_kpis, ds, ["2025Q3", "2025Q4"], level=0.9)
        memo.memoised("quarter_kpis", quarter_kpis, ds, ["2025Q4"], level=0.9)     # other arguments
    assert _results(seen) == ["miss", "hit", "miss", "hit", "miss"]
    assert v1.ok == v2.ok and v1.text == v2.text
    pd.testing.assert_frame_equal(k1, k2, check_exact=True)


def test_a_second_evaluate_reads_its_cohort_and_results_back(cache_on):
    from carecall_eval import evaluate

    with load(SAMPLE, validate=False) as ds:
        with C.lookups() as first:
            a = evaluate(ds, placebo=False, subgroups=False)
        with C.lookups() as second:
            b = evaluate(ds, placebo=False, subgroups=False)
    assert ("result:cohort", "miss") in first and ("result:cohort", "hit") in second
    assert all(o == "hit" for _, o in second)                 # nothing computed again
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)


def test_an_option_that_is_not_a_plain_value_is_never_memoised(data, cache_on):
    ds, cohort = data
    frame = pd.DataFrame({"a": [1, 2]})
    assert memo._key("spending", ds, None, {"table": frame}) is None            # a frame's text is not its value
    assert memo._key("spending", ds, None, {"f": len}) is None
    assert memo._key("spending", ds, None, {"windows": (28, 84), "level": 0.9}) is not None
    assert memo._key("x", ds, None, {}, (object(),)) is None
    # another library version is another entry
    import importlib.metadata as md

    assert md.version("numpy") and "numpy" in memo.LIBRARIES


def test_the_memo_keeps_within_its_size_by_removing_the_least_recently_used(data, cache_on, monkeypatch):
    import os
    import time

    ds, _ = data
    spec = ESTIMATORS["call_length"]
    spec(ds, level=0.9)
    spec(ds, level=0.8)
    old, new = sorted(_entries(cache_on), key=lambda p: p.stat().st_mtime)
    t = time.time()
    os.utime(new, (t - 100, t - 100))
    os.utime(old, (t - 200, t - 200))
    spec(ds, level=0.8)                                   # a read: its entry becomes the most recent
    size = sum(p.stat().st_size for p in (cache_on / memo.FOLDER).glob("*/*.pickle"))
    assert memo.prune(size - 1) == 1
    (left,) = _entries(cache_on)
    assert left == new
    monkeypatch.setenv(memo.ENV_MAX, "0")
    spec(ds, level=0.7)                                   # a store with no room left keeps nothing
    assert _entries(cache_on) == []


def test_details_are_stored_apart_and_read_when_first_looked_at(data, cache_on):
    """The re-run's report never opens a result's details (models, row-level tables): they are a file of
    their own, unpickled on first access; an entry whose details file has gone is recomputed."""
    ds, cohort = data
    spec = ESTIMATORS["retention"]
    first = spec(ds, cohort.sample(), level=0.9, horizon=180)
    assert first.details and isinstance(first.details, dict)
    (entry,) = _entries(cache_on)
    stored = entry.with_name(entry.name.replace(".pickle", ".details.pickle"))
    assert stored.is_file()
    again = spec(ds, cohort.sample(), level=0.9, horizon=180)
    assert isinstance(again.details, memo.StoredDetails) and again.details._data is None   # not read yet
    assert sorted(again.details) == sorted(first.details) and "table" in again.details
    assert again.details._data is None                                                      # still not read
    pd.testing.assert_frame_equal(again.details["table"], first.details["table"], check_exact=True)
    import pickle

    assert type(pickle.loads(pickle.dumps(again.details))) is dict
    stored.unlink()
    with C.lookups() as seen:
        third = spec(ds, cohort.sample(), level=0.9, horizon=180)
    assert _results(seen) == ["miss"] and isinstance(third.details, dict) and stored.is_file()
    assert memo.prune(0) == 1 and list((cache_on / memo.FOLDER).glob("*/*.pickle")) == []
