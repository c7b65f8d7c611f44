"""The on-disk cache of the aggregation layer (carecall_eval/cohorts/cache.py).

A second build_cohort on the same data runs no query (the query log stays
empty) and gives identical tables; a changed input file changes the
fingerprint and misses; another design or window order is another entry;
``cache=False`` and ``CARECALL_CACHE=0`` neither read nor write; an entry
holds exactly the query's result, written with the umask's permissions.
"""
from __future__ import annotations

import os
import shutil
import stat

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE

from carecall_eval.cohorts import StudyDesign, build_cohort
from carecall_eval.cohorts import cache as C
from carecall_eval.cohorts import windows as W
from carecall_eval.contract import load


@pytest.fixture(scope="module")
def ds():
    d = load(SAMPLE, validate=False)
    yield d
    d.close()


def _entries(d):
    return sorted(d.glob("*/*.parquet")) if d.is_dir() else []


def test_second_build_reads_the_cache_and_gives_identical_tables(ds, cache_on):
    with W.query_log() as first_log, C.lookups() as first:
        c1 = build_cohort(ds)
    assert {t for _, t, _, _ in first_log} == {"activity", "deposits", "rg_events"}
    assert [o for _, o in first] == ["miss", "miss"]          # window_aggregates, prior_rg_flags
    assert len(_entries(cache_on)) == 2
    with W.query_log() as second_log, C.lookups() as second:
        c2 = build_cohort(ds)
    assert second_log == []                                    # no query ran
    assert [o for _, o in second] == ["hit", "hit"]
    pd.testing.assert_frame_equal(c1.table, c2.table, check_exact=True)
    pd.testing.assert_frame_equal(c1.flow, c2.flow, check_exact=True)
    # the same data opened again (a re-run in a new process opens them anew) hit too
    with load(SAMPLE, validate=False) as again, W.query_log() as log:
        c3 = build_cohort(again)
    assert log == []
    pd.testing.assert_frame_equal(c1.table, c3.table, check_exact=True)


def test_cache_false_and_the_switch_neither_read_nor_write(ds, cache_on, monkeypatch):
    build_cohort(ds)
    n = len(_entries(cache_on))
    with W.query_log() as log:
        build_cohort(ds, cache=False)
    assert {t for _, t, _, _ in log} == {"activity", "deposits", "rg_events"}
    monkeypatch.setenv("CARECALL_CACHE", "0")
    with W.query_log() as log, C.lookups() as seen:
        build_cohort(ds, design=StudyDesign(pre_window=56))
    assert log and seen == []
    assert len(_entries(cache_on)) == n
    with C.caching(True), W.query_log() as log:                # a block overrides the environment
        build_cohort(ds)
    assert log == []


def test_another_design_is_another_entry(ds, cache_on):
    build_cohort(ds)
    with W.query_log() as log:
        other = build_cohort(ds, StudyDesign(min_tenure=120))
    assert [t for _, t, _, _ in log if t == "activity"] == ["activity"]
    with C.caching(False):
        fresh = build_cohort(ds, StudyDesign(min_tenure=120))
    pd.testing.assert_frame_equal(other.table, fresh.table, check_exact=True)


def test_window_order_is_part_of_the_key(ds, cache_on):
    keys = ds.table("call_cases").head(40).rename(columns={"opened_on": "index_date"})
    keys["row_id"] = range(len(keys))
    a = W.window_totals(ds, keys, {"a": (-7, -1), "b": (0, 27)})
    b = W.window_totals(ds, keys, {"b": (0, 27), "a": (-7, -1)})
    assert list(a.columns) != list(b.columns)
    pd.testing.assert_frame_equal(a, b[a.columns], check_exact=True)
    with W.query_log() as log:
        again = W.window_totals(ds, keys, {"b": (0, 27), "a": (-7, -1)})
    assert log == []
    pd.testing.assert_frame_equal(again, b, check_exact=True)
    # other keys (one index date moved) miss
    moved = keys.copy()
    moved.loc[0, "index_date"] = moved.loc[0, "index_date"] + pd.Timedelta(days=1)
    with W.query_log() as log:
        W.window_totals(ds, moved, {"b": (0, 27), "a": (-7, -1)})
    assert log


def test_a_changed_file_changes_the_fingerprint_and_misses(tmp_path, cache_on):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    with load(data, validate=False) as d:
        fp1 = d.fingerprint()
        c1 = build_cohort(d)
    # one play row of a cohort customer doubled in a pre window: the covariate must change
    act = pq.read_table(data / "activity.parquet").to_pandas()
    row = c1.table.iloc[0]
    day = pd.Timestamp(row["index_date"]) - pd.Timedelta(days=3)
    hit = (act["customer_id"] == row["customer_id"]) & (pd.to_datetime(act["date"]) == day)
    if not hit.any():
        new = act.iloc[[0]].copy()
        new["customer_id"], new["date"] = row["customer_id"], day.date()
        new["wagered"], new["won"] = 100.0, 0.0
        act = pd.concat([act, new], ignore_index=True)
    else:
        act.loc[hit, "wagered"] = act.loc[hit, "wagered"] * 2
    schema = pq.read_schema(data / "activity.parquet")
    pq.write_table(pa.Table.from_pandas(act, schema=schema, preserve_index=False), data / "activity.parquet")
    with load(data, validate=False) as d, W.query_log() as log:
        assert d.fingerprint() != fp1
        c2 = build_cohort(d)
    assert {t for _, t, _, _ in log} == {"activity", "deposits", "rg_events"}
    first = c1.table.index[0]
    assert c2.table.loc[first, "wagered_7"] > c1.table.loc[first, "wagered_7"]


def test_an_entry_holds_the_query_result_only_with_umask_permissions(ds, cache_on):
    old = os.umask(0o027)
    try:
        out = W.prior_rg_flags(ds, ds.table("call_cases").head(30).rename(columns={"opened_on": "index_date"})
                               .assign(row_id=range(30)))
    finally:
        os.umask(old)
    (entry,) = _entries(cache_on)
    stored = pq.read_table(entry).to_pandas()
    pd.testing.assert_frame_equal(stored, out, check_exact=True)
    assert list(stored.columns) == ["prior_limit", "prior_pause", "prior_self_exclusion"]
    assert stat.S_IMODE(entry.stat().st_mode) == 0o640
    assert C.clear() == 1 and _entries(cache_on) == []


def test_a_damaged_entry_is_recomputed(ds, cache_on):
    keys = ds.table("call_cases").head(30).rename(columns={"opened_on": "index_date"}).assign(row_id=range(30))
    a = W.prior_rg_flags(ds, keys)
    (entry,) = _entries(cache_on)
    entry.write_bytes(b"not parquet")
    with W.query_log() as log:
        b = W.prior_rg_flags(ds, keys)
    assert log
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(pq.read_table(entry).to_pandas(), a, check_exact=True)


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("CARECALL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert C.cache_dir() == tmp_path / "carecall_eval"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert C.cache_dir() == tmp_path / "home" / ".cache" / "carecall_eval"
