"""The cheap screens of validation at operator scale give the same verdicts as the exact queries.

The composite key of activity is screened with one bitmap per customer (``bitmap_screen_sql``); the
foreign keys and cross-table rules of a large table are counted within its one scan.  Each is checked here
against the exact SQL on the same data: clean, with a duplicated row, with a product missing from
products, and with play after a closure.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carecall_eval.contract import validation as V
from carecall_eval.contract.dataset import open_dataset
from carecall_eval.contract.schemas import sql_checks

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _copy(tmp_path: Path, edit=None) -> Path:
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    if edit is not None:
        t = pq.read_table(d / "activity.parquet")
        pq.write_table(edit(t), d / "activity.parquet")
    return d


def _validator(d: Path):
    ds, _ = open_dataset(d)
    v = V._Validator(ds, "auto")
    v.run()
    return ds, v


def _exact_duplicates(ds) -> int:
    return ds.con.sql("SELECT count(*) - count(DISTINCT (customer_id, date, product)) FROM "
                      f"read_parquet('{ds.source('activity').files[0]}')").fetchall()[0][0]


def _unique_check():
    return next(c for c in sql_checks("activity") if c.kind == "unique")


def test_bitmap_screen_is_used_and_zero_on_the_sample(tmp_path):
    ds, v = _validator(_copy(tmp_path))
    sql = v.bitmap_screen_sql(_unique_check())
    assert sql is not None and "bitstring_agg" in sql
    assert ds.con.sql(sql).fetchall()[0][0] == 0 == _exact_duplicates(ds)
    assert not v.problems


def test_bitmap_screen_counts_a_duplicated_row(tmp_path):
    d = _copy(tmp_path, lambda t: pa.concat_tables([t, t.slice(100, 3)]))
    ds, v = _validator(d)
    screen = ds.con.sql(v.bitmap_screen_sql(_unique_check())).fetchall()[0][0]
    assert screen == _exact_duplicates(ds) == 3
    dup = [p for p in v.problems if p.table == "activity" and p.rule == "unique"]
    assert len(dup) == 1 and dup[0].n_failing == 6           # every row sharing its key, as pandera counts


def test_a_product_outside_products_makes_the_screen_non_zero_and_the_fk_is_reported(tmp_path):
    def edit(t):
        cols = t.to_pydict()
        cols["product"][7] = "keno"                        # not in products.parquet
        return pa.table(cols, schema=t.schema)
    ds, v = _validator(_copy(tmp_path, edit))
    assert ds.con.sql(v.bitmap_screen_sql(_unique_check())).fetchall()[0][0] >= 1
    assert _exact_duplicates(ds) == 0
    got = {(p.table, p.column, p.rule, p.n_failing) for p in v.problems}
    assert ("activity", "product", "foreign_key", 1) in got
    assert not [p for p in v.problems if p.rule == "unique"]   # the exact count decides: no duplicate


def test_play_after_closure_counted_in_the_scan_equals_the_exact_query(tmp_path):
    d = _copy(tmp_path)
    con = duckdb.connect()
    closed = con.sql(f"SELECT customer_id, closed_on FROM read_parquet('{d / 'customers.parquet'}') "
                     "WHERE closed_on IS NOT NULL ORDER BY customer_id LIMIT 3").fetchall()
    assert closed, "the sample has closed accounts"

    def edit(t):
        cols = t.to_pydict()
        product = cols["product"][0]
        for i, (cid, day) in enumerate(closed):      # a stake 5 days after each closure
            row = {"customer_id": cid, "date": day + dt.timedelta(days=5), "product": product,
                   "wagered": 10.0 + i, "won": 0.0}
            for k, v in cols.items():
                v.append(row[k])
        return pa.table(cols, schema=t.schema)
    t = pq.read_table(d / "activity.parquet")
    pq.write_table(edit(t), d / "activity.parquet")
    ds, v = _validator(d)
    exact = ds.con.sql(f"SELECT count(*) FROM read_parquet('{d / 'activity.parquet'}') a JOIN "
                       f"read_parquet('{d / 'customers.parquet'}') c USING (customer_id) "
                       "WHERE a.wagered > 0 AND a.date > c.closed_on").fetchall()[0][0]
    assert exact >= 3
    assert v.precounted[("cross", "play_after_closure")] == exact
    got = [p for p in v.problems if p.rule == "play_after_closure"]
    assert len(got) == 1 and got[0].n_failing == exact and "customers.closed_on=" in got[0].examples


@pytest.mark.parametrize("budget", [0])
def test_over_the_memory_budget_the_hash_screen_is_used(tmp_path, monkeypatch, budget):
    monkeypatch.setattr(V, "BITMAP_BUDGET", budget)
    ds, v = _validator(_copy(tmp_path, lambda t: pa.concat_tables([t, t.slice(5, 1)])))
    assert v.bitmap_screen_sql(_unique_check()) is None
    dup = [p for p in v.problems if p.table == "activity" and p.rule == "unique"]
    assert len(dup) == 1 and dup[0].n_failing == 2
