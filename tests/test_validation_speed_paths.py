"""Validation's one aggregation by customer over a large table (``grouped_scan``) finds what the exact scan finds.

The fast path proves clean data clean in one pass (row checks, the composite key by its bitmap, the foreign key
of the customer, the cross-table rules by their screens) and counts only what it finds broken again, exactly.
Each crafted dataset here (rows shuffled, so nothing rests on the simulator's order; Parquet and CSV) is
validated twice, with the fast path and with the exact scan alone, and the problems must be the same: table,
column, rule, rows failing, expected text and the offending rows shown.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from carecall_eval.contract import validation as V
from carecall_eval.contract.dataset import open_dataset
from carecall_eval.contract.schemas import CROSS_SCREENS
from carecall_eval.contract.spec import CROSS_RULES, TABLES

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
KEY = ("customer_id", "date", "product")


def _shuffle(t: pa.Table, seed: int = 1) -> pa.Table:
    return t.take(pa.array(np.random.default_rng(seed).permutation(t.num_rows)))


def _set(t: pa.Table, col: str, rows: list[int], values: list) -> pa.Table:
    vals = t.column(col).to_pylist()
    for i, v in zip(rows, values):
        vals[i] = v
    return t.set_column(t.schema.get_field_index(col), col, pa.array(vals, type=t.schema.field(col).type))


def _closed(n: int) -> list[tuple[str, dt.date]]:
    c = pq.read_table(SAMPLE / "customers.parquet", columns=["customer_id", "closed_on"]).to_pylist()
    return [(r["customer_id"], r["closed_on"]) for r in c if r["closed_on"] is not None][:n]


def _after_closure(t: pa.Table) -> pa.Table:
    """Four rows after a closure: three with a stake (play_after_closure), one with none (fine)."""
    extra = t.slice(0, 4).to_pylist()
    for row, (cid, day), w in zip(extra, _closed(4), (5.0, 7.5, 1.0, 0.0)):
        row.update(customer_id=cid, date=day + dt.timedelta(days=3), wagered=w)
    return pa.concat_tables([t, pa.Table.from_pylist(extra, schema=t.schema)])


#: name -> (edit of activity, edit of deposits, tables written as CSV)
CASES = {
    "clean": (None, None, ()),
    "duplicates": (lambda t: pa.concat_tables([t, t.slice(100, 2)]), None, ()),
    "duplicate_with_a_null_date": (lambda t: pa.concat_tables([_set(t, "date", [5], [None]),
                                                              _set(t.slice(5, 1), "date", [0], [None])]), None, ()),
    "unknown_product": (lambda t: _set(t, "product", [7, 300], ["keno", "Slots"]), None, ()),
    "unknown_customer": (lambda t: _set(t, "customer_id", [20, 21, 22], ["ZZZ1", "ZZZ1", "ZZZ2"]),
                         lambda t: _set(t, "customer_id", [3], ["ZZZ9"]), ()),
    "values": (lambda t: _set(_set(t, "wagered", [1, 2, 3], [-1.0, float("nan"), float("inf")]), "won", [4], [2e12]),
               lambda t: _set(_set(t, "amount", [1], [-5.0]), "date", [2], [None]), ()),
    "nulls": (lambda t: _set(_set(t, "product", [9], [None]), "customer_id", [11], [None]), None, ()),
    "date_out_of_range": (lambda t: _set(t, "date", [30], [dt.date(1980, 1, 1)]), None, ()),
    "play_after_closure": (_after_closure, None, ()),
    "several": (lambda t: _after_closure(_set(t, "won", [8], [-3.0])),
                lambda t: _set(t, "customer_id", [3], ["ZZZ9"]), ()),
    "extra_column": (lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)), None, ()),
    "timestamp_with_a_time_of_day": (
        lambda t: _set(t.set_column(1, "date", pc.cast(t.column("date"), pa.timestamp("us"))), "date", [9],
                       [dt.datetime(2024, 5, 5, 13, 0)]), None, ()),
    "csv_clean": (None, None, ("activity", "deposits")),
    "csv_duplicates_and_unknown_product": (
        lambda t: pa.concat_tables([_set(t, "product", [7], ["keno"]), t.slice(100, 2)]), None, ("activity",)),
    "csv_text_not_a_number": (
        lambda t: _set(t.set_column(3, "wagered", pc.cast(t.column("wagered"), pa.string())), "wagered", [4], ["1,5"]),
        None, ("activity",)),
}


def _write(tmp_path: Path, name: str) -> Path:
    act, dep, csv = CASES[name]
    d = tmp_path / name
    shutil.copytree(SAMPLE, d)
    for table, edit, n in (("activity", act, 40_000), ("deposits", dep, 20_000)):
        t = pq.read_table(d / f"{table}.parquet").slice(0, n)
        t = _shuffle(edit(t) if edit is not None else t)
        (d / f"{table}.parquet").unlink()
        if table in csv:
            pacsv.write_csv(t, d / f"{table}.csv")
        else:
            pq.write_table(t, d / f"{table}.parquet", row_group_size=7_000)
    return d


def _run(d: Path, grouped: bool, monkeypatch) -> V._Validator:
    with monkeypatch.context() as m:
        if not grouped:
            m.setattr(V._Validator, "grouped_scan", lambda self, t, checks, lossy: False)
        ds, _ = open_dataset(d)
        v = V._Validator(ds, "auto")
        with V._no_type_pushdown(ds.con):
            v.run()
        v.drop_views()
    ds.close()
    return v


def _problems(v: V._Validator) -> set[tuple]:
    # at most five offending rows per crafted problem: the rows shown are the same set, in any order
    return {(p.table, p.column, p.rule, int(p.n_failing), p.expected, frozenset(p.examples.split("; ")))
            for p in v.problems}


@pytest.mark.parametrize("name", list(CASES))
def test_the_fast_path_finds_what_the_exact_scan_finds(tmp_path, monkeypatch, name):
    d = _write(tmp_path, name)
    fast, exact = _run(d, True, monkeypatch), _run(d, False, monkeypatch)
    assert _problems(fast) == _problems(exact)
    assert fast.n_rows == exact.n_rows
    if "clean" in name or name == "extra_column":
        assert not fast.problems and ("activity", KEY) in fast.proven
    else:
        assert fast.problems


def test_expected_problems_on_shuffled_data(tmp_path, monkeypatch):
    got = {(p.table, p.column, p.rule): int(p.n_failing)
           for p in _run(_write(tmp_path, "several"), True, monkeypatch).problems}
    # (a problem of wagered or a duplicated key would leave play_after_closure out: a cross-table rule is not
    # checked on a column found wrong)
    assert got == {("activity", "won", "range"): 1,
                   ("activity", "date", "play_after_closure"): 3,              # the stake of 0 is fine
                   ("deposits", "customer_id", "foreign_key"): 1}


def test_unknown_customers_are_counted_by_row(tmp_path, monkeypatch):
    v = _run(_write(tmp_path, "unknown_customer"), True, monkeypatch)
    assert v.precounted[("fk", "activity", "customer_id")] == 3     # three rows of two unknown customers
    assert v.precounted[("fk", "deposits", "customer_id")] == 1


def test_the_bitmap_proves_the_product_key(tmp_path, monkeypatch):
    clean = _run(_write(tmp_path, "clean"), True, monkeypatch)
    assert clean.precounted[("fk", "activity", "product")] == 0
    bad = _run(_write(tmp_path, "unknown_product"), True, monkeypatch)
    fk = [p for p in bad.problems if p.rule == "foreign_key"]
    assert [(p.column, p.n_failing) for p in fk] == [("product", 2)]
    assert not [p for p in bad.problems if p.rule == "unique"]      # the exact count decides: no duplicate


def test_over_the_bitmap_budget_the_exact_counts_still_decide(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "BITMAP_BUDGET", 0)
    v = _run(_write(tmp_path, "duplicates"), True, monkeypatch)
    assert ("activity", KEY) not in v.proven
    assert [(p.rule, p.n_failing) for p in v.problems] == [("unique", 4)]


def test_every_cross_rule_of_a_large_table_has_a_screen():
    for rule in CROSS_RULES:
        if TABLES[rule.table].large:
            assert rule.name in CROSS_SCREENS and rule.key == TABLES[rule.table].columns[0].name


@pytest.mark.parametrize("wagered, date_shift, closed", [
    (5.0, 3, True), (0.0, 3, True), (float("nan"), 3, True), (None, 3, True), (5.0, 0, True), (5.0, -1, True),
    (5.0, 3, False), (-2.0, 3, True)])
def test_the_play_after_closure_screen_agrees_with_the_rule(wagered, date_shift, closed):
    import duckdb

    rule = next(r for r in CROSS_RULES if r.name == "play_after_closure")
    agg, pred = CROSS_SCREENS[rule.name]
    con = duckdb.connect()
    con.execute("CREATE TABLE a (customer_id VARCHAR, date DATE, wagered DOUBLE)")
    con.execute("CREATE TABLE c (customer_id VARCHAR, closed_on DATE)")
    con.execute("INSERT INTO c VALUES ('A', ?)", [dt.date(2024, 5, 1) if closed else None])
    con.execute("INSERT INTO a VALUES ('A', DATE '2024-04-01', 3.0), ('A', ?, ?)",
                [dt.date(2024, 5, 1) + dt.timedelta(days=date_shift), wagered])
    rows = con.sql("SELECT count(*) FROM a LEFT JOIN c USING (customer_id) WHERE "
                   + rule.violation.format(t="a", v="c.closed_on")).fetchall()[0][0]
    screen = con.sql(f"SELECT count(*) FILTER (WHERE {pred.format(a='g.x', v='c.closed_on')}) FROM "
                     f"(SELECT customer_id, {agg.format(t='a')} AS x FROM a GROUP BY customer_id) g "
                     "LEFT JOIN c USING (customer_id)").fetchall()[0][0]
    assert bool(rows) == bool(screen)


@pytest.mark.parametrize("column", range(6))
def test_a_damaged_page_in_any_column_of_activity_is_the_named_problem(tmp_path, column):
    """Every stored value is read by the one aggregation (the customer and the key by the grouping and the
    bitmap, the other columns, an extra one too, by a hash): damaged pages anywhere are found."""
    from carecall_eval.contract import validate

    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    t = pq.read_table(SAMPLE / "activity.parquet").slice(0, 40_000)
    t = t.append_column("note", pa.array([f"n{i % 97}" for i in range(t.num_rows)]))
    pq.write_table(t, d / "activity.parquet", compression="none", use_dictionary=False)
    b = bytearray((d / "activity.parquet").read_bytes())
    off = pq.ParquetFile(d / "activity.parquet").metadata.row_group(0).column(column).data_page_offset + 40
    for i in range(off, off + 200):
        b[i] ^= 0x5A
    (d / "activity.parquet").write_bytes(bytes(b))
    got = [tuple(r) for r in validate(d).problems[["table", "rule"]].itertuples(index=False)]
    assert got == [("activity", "unreadable_file")]


def test_the_bitmaps_take_at_most_a_share_of_duckdbs_memory_limit(tmp_path, monkeypatch):
    """The bitmaps are aggregate states DuckDB does not spill: past a share of the memory limit the hash
    screen (which spills) decides, with the same problems."""
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB"})
    assert V._memory_limit_bytes(con) == pytest.approx(953.6 * 2**20, rel=1e-3)      # DuckDB says '953.6 MiB'
    v = V._Validator.__new__(V._Validator)
    v.con = con
    assert v.bitmap_budget() == pytest.approx(V.BITMAP_LIMIT_SHARE * 953.6 * 2**20, rel=1e-3)
    d = _write(tmp_path, "duplicates")
    with_bitmap = _run(d, True, monkeypatch)
    monkeypatch.setattr(V, "BITMAP_LIMIT_SHARE", 1e-9)            # a few bytes at any limit
    without = _run(d, True, monkeypatch)
    assert _problems(without) == _problems(with_bitmap) and [(p.rule, p.n_failing) for p in without.problems] == \
        [("unique", 4)]


class _Spy:
    """A connection that logs the SQL it runs (and can refuse the bitmaps as out of memory)."""

    def __init__(self, con, out_of_memory: bool = False):
        self.con, self.out_of_memory, self.log = con, out_of_memory, []

    def sql(self, q, *a, **k):
        import duckdb

        self.log.append(q)
        if self.out_of_memory and "bitstring_agg" in q:
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data")
        return self.con.sql(q, *a, **k)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _run_spied(d: Path, **spy) -> tuple[V._Validator, _Spy]:
    ds, _ = open_dataset(d)
    v = V._Validator(ds, "auto")
    v.con = con = _Spy(ds.con, **spy)
    with V._no_type_pushdown(ds.con):
        v.run()
    v.drop_views()
    ds.close()
    return v, con


def test_an_out_of_memory_bitmap_scan_falls_back_to_the_exact_scan(tmp_path, monkeypatch):
    for name in ("clean", "duplicates"):
        d = _write(tmp_path, name)
        v, _ = _run_spied(d, out_of_memory=True)
        assert _problems(v) == _problems(_run(d, False, monkeypatch))
        assert bool(v.problems) == (name == "duplicates")


@pytest.mark.parametrize("name", ["clean", "duplicates", "several", "unknown_customer", "nulls"])
def test_bitmaps_over_the_budget_are_built_in_parts_with_the_same_findings(tmp_path, monkeypatch, name):
    """Over the budget the grouped scan runs once per part of the customers (by a hash of the id), the
    bitmaps of one part at a time; the parts add up to the one-pass figures."""
    d = _write(tmp_path, name)
    one, _ = _run_spied(d)
    act = pq.read_table(d / "activity.parquet", columns=["date"]) if (d / "activity.parquet").exists() else None
    dates = pc.min_max(act.column("date")).as_py()
    groups = pq.read_metadata(d / "customers.parquet").num_rows
    need = groups * ((dates["max"] - dates["min"]).days + 1) * pq.read_table(d / "products.parquet").num_rows / 8
    monkeypatch.setattr(V, "BITMAP_BUDGET", need / 2.5)                    # three parts
    three, con = _run_spied(d)
    scans = [q for q in con.log if "bitstring_agg" in q and "GROUP BY" in q and "__g" in q]
    assert len(scans) == 3 and all(f"% 3 = {p}" in q for p, q in enumerate(scans))
    assert _problems(three) == _problems(one) and three.n_rows == one.n_rows
    assert three.precounted == one.precounted and three.proven == one.proven


def test_duckdbs_progress_bar_is_off_on_the_toolkits_connection():
    """DuckDB draws its progress bar on stdout (also when redirected) for a query of more than two seconds:
    at operator scale it would land in a command's JSON or CSV output; the toolkit reports its own progress.
    The allocator's background threads are on (freed memory goes back while the pass runs)."""
    ds, _ = open_dataset(SAMPLE)
    try:
        assert ds.con.sql("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]
        assert ds.con.sql("SELECT current_setting('allocator_background_threads')").fetchall() == [(True,)]
    finally:
        ds.close()
