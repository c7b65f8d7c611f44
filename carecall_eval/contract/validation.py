"""Validate a data directory against the contract, collecting every problem (:func:`validate`), and
open a validated one (:func:`load`).

The checks run in three layers, all derived from :mod:`.spec`:

1. **Storage** (SQL, every table): the files, required columns, stored types,
   values that cannot be converted to the contract type (unparseable CSV text, a
   date with a time of day), and non-finite numbers.
2. **Column values** (``not_null``, ``vocabulary``, ``range``, ``unique``):
   pandera schemas for the small tables, validated lazily in pandas; the same
   rules as SQL aggregates for the large tables (activity, deposits), or for
   every table with ``engine="sql"``.
3. **Rows and tables** (SQL, every table): row rules (answered calls, date
   order), composite keys and foreign keys.

Every SQL check is an aggregate query; offending rows are fetched only for the
message (``LIMIT 5``), so validating a table never loads it into pandas.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import duckdb
import numpy as np
import pandas as pd

from .dataset import Dataset, open_dataset
from .files import probe_readable
from .hints import column_hint
from .problems import Problem, ValidationReport
from .schemas import (
    CROSS_SCREENS,
    SqlCheck,
    foreign_key_counts_sql,
    pandera_schema,
    quote_ident,
    rule_from_pandera,
    sql_checks,
    sql_literal,
)
from .spec import CROSS_RULES, TABLES, Table, expected_text
from .timezones import OFFSET_PATTERN, is_zoned_type, offset_problem

#: Offending rows shown per problem.
N_EXAMPLES = 5
#: Rows of a large table looked at for dates written with a UTC offset.
N_PROBE_LARGE = 10_000


# --------------------------------------------------------------------------- helpers
def _fmt(value, kind: str | None = None, *, nan_is_null: bool = False) -> str:
    # values fetched from DuckDB keep NaN apart from NULL (None); in pandas both are NaN
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "null" if nan_is_null else "nan"
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, _dt.datetime):
        if kind == "date" and value.time() == _dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _fmt_rows(columns: list[str], rows: Iterable[tuple], kinds: Mapping[str, str], *,
              nan_is_null: bool = False) -> str:
    return "; ".join(
        ", ".join(f"{c}={_fmt(v, kinds.get(c), nan_is_null=nan_is_null)}"
                  for c, v in zip(columns, row))
        for row in rows)


@contextmanager
def _no_type_pushdown(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    # DuckDB pushes casts into the CSV reader, which turns TRY_CAST into a hard
    # conversion error; validation needs TRY_CAST to count unparseable cells.
    before = con.sql("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    disabled = ",".join(x for x in [before, "type_pushdown"] if x)
    con.execute(f"SET disabled_optimizers = '{disabled}'")
    try:
        yield
    finally:
        con.execute(f"SET disabled_optimizers = '{before}'")


def _check_view(name: str) -> str:
    """Name of the relation validation reads for table `name` (TRY_CAST, raw copies)."""
    return quote_ident(f"__check_{name}")


def _raw(col: str) -> str:
    return quote_ident(f"__raw__{col}")


_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _memory_limit_bytes(con) -> float | None:
    """DuckDB's memory limit in bytes (its setting reads like ``3.7 GiB``); None if unknown or unset."""
    try:
        text = str(con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]).strip()
    except Exception:   # noqa: BLE001 - another engine, or a setting DuckDB does not report
        return None
    m = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", text)
    if m is None or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


#: Largest bitmap per customer of the uniqueness screen (bits), and the most the bitmaps of one pass may take
#: (bytes): 1M customers with two years of eight products take 0.7 GB.
BITMAP_MAX_BITS = 1 << 16
BITMAP_BUDGET = 1 << 30
#: ... and at most this share of DuckDB's memory limit: the bitmaps are aggregate states, which DuckDB does
#: not spill (1M customers at a 1 GB limit failed with an out-of-memory error).
BITMAP_LIMIT_SHARE = 0.25
#: Bitmaps larger than that budget are built in up to this many passes, each over the customers of one part
#: (by a hash of the customer id: every customer's rows in one part); beyond it the hash screen (which
#: spills) is used.
BITMAP_MAX_PARTS = 16
#: A small table of more rows than this is checked with SQL aggregates rather than loaded into pandera.
PANDERA_MAX_ROWS = 200_000


class _Validator:
    def __init__(self, ds: Dataset, engine: str):
        self.ds = ds
        self.con = ds.con
        self.engine = engine
        self.problems: list[Problem] = ds.open_problems
        self.unreadable: dict[str, set[str]] = {}  # table -> missing or bad columns
        self.damaged: set[str] = set()              # tables whose files cannot be read through
        self.n_rows: dict[str, int] = {}
        self.engines: dict[str, str] = {}
        self.ranges: dict[tuple[str, str], tuple] = {}   # (table, date column) -> (min, max), from the scan
        self.precounted: dict[tuple, int] = {}   # foreign keys and cross rules counted by a large table's scan
        self.proven: set[tuple[str, tuple]] = set()   # (table, columns) of keys a large table's scan proved unique
        self.no_bitmap: set[str] = set()   # tables whose bitmaps ran out of memory: screened by hashing instead

    # --------------------------------------------------------------- plumbing
    def readable(self, table: str, columns: Iterable[str]) -> bool:
        return table in self.ds.tables and table not in self.damaged \
            and not (set(columns) & self.unreadable.get(table, set()))

    def kinds(self, table: str) -> dict[str, str]:
        return {c.name: c.kind for c in TABLES[table].columns}

    def display_columns(self, t: Table, extra: Iterable[str]) -> list[str]:
        cols = [c for c in (*t.key, *extra) if c not in self.unreadable[t.name]]
        return list(dict.fromkeys(cols))

    def examples_sql(self, t: Table, where: str, extra: Iterable[str],
                     raw: str | None = None) -> str:
        cols = self.display_columns(t, extra)
        sel = [f"{_raw(c)} AS {quote_ident(c)}" if c == raw else quote_ident(c) for c in cols]
        return (f"SELECT {', '.join(sel)} FROM {_check_view(t.name)} WHERE {where} "
                f"LIMIT {N_EXAMPLES}")

    def fetch_examples(self, t: Table, where: str, extra: Iterable[str],
                       raw: str | None = None) -> str:
        rel = self.con.sql(self.examples_sql(t, where, extra, raw))
        kinds = self.kinds(t.name)
        if raw:
            kinds[raw] = "raw"
        return _fmt_rows(rel.columns, rel.fetchall(), kinds)

    # --------------------------------------------------------------- layers
    def create_check_view(self, name: str) -> None:
        plans = self.ds.plan(name)
        replace = [f"{expr} AS {quote_ident(c)}" for c, p in plans.items()
                   if (expr := p.view_expr(strict=False)) is not None]
        raws = [f"{quote_ident(c)} AS {_raw(c)}" for c, p in plans.items() if p.status == "cast"]
        select = f"* REPLACE ({', '.join(replace)})" if replace else "*"
        select += "".join(f", {r}" for r in raws)
        # small tables are read once into a temporary table; large ones stay a view
        kind = "VIEW" if TABLES[name].large else "TABLE"
        self.con.execute(f"CREATE OR REPLACE TEMP {kind} {_check_view(name)} AS "
                         f"SELECT {select} FROM {self.ds.source_sql(name)}")

    def structure(self, t: Table) -> None:
        plans = self.ds.plan(t.name)
        self.unreadable[t.name] = {c for c, p in plans.items() if p.status in ("missing", "bad")}
        stored = list(self.ds.stored_columns(t.name))
        for c, p in plans.items():
            if p.status == "missing" and p.column.optional:
                continue                   # an optional column may be absent
            if p.status == "missing":
                n = self.ds.n_rows(t.name)
                found = column_hint(c, stored)
                self.problems.append(Problem(t.name, c, "required_column", n, found,
                                             expected_text(p.column, "required_column")))
            elif p.status == "bad" and is_zoned_type(p.stored_type or ""):
                continue                   # a timezone problem when opening: no operator time zone
            elif p.status == "bad":
                q = quote_ident(c)
                n_bad = self.con.sql(f"SELECT count({q}) FROM {self.ds.source_sql(t.name)}"
                                     ).fetchall()[0][0]
                rel = self.con.sql(f"SELECT {q} FROM {self.ds.source_sql(t.name)} "
                                   f"WHERE {q} IS NOT NULL LIMIT {N_EXAMPLES}")
                vals = ", ".join(_fmt(r[0]) for r in rel.fetchall())
                self.problems.append(Problem(t.name, c, "type", n_bad,
                                             f"stored as {p.stored_type}: {vals}",
                                             expected_text(p.column, "type")))

    def scan(self, t: Table, checks: list[SqlCheck]) -> None:
        """The table's aggregate checks: unconvertible values, the given row checks, its foreign keys and
        cross-table rules (joined in); for a large table also its composite key (:meth:`grouped_scan`)."""
        plans = self.ds.plan(t.name)
        lossy = {c: p.lossy.format(r=_raw(c)) for c, p in plans.items()
                 if p.status == "cast" and p.lossy}
        if t.large and self.grouped_scan(t, checks, lossy):
            return
        self.exact_scan(t, checks, lossy, joins=True, read_all=t.large)

    def stored_sql(self, t: Table, without: Iterable[str] = ()) -> str:
        """The columns of the table's check view (but `without`), for ``hash()``: reading them all decompresses
        every page."""
        view_cols = self.con.sql(f"SELECT * FROM {_check_view(t.name)} LIMIT 0").columns
        return ", ".join(quote_ident(c) for c in view_cols if c not in set(without))

    def exact_scan(self, t: Table, checks: list[SqlCheck], lossy: dict[str, str], *, joins: bool,
                   read_all: bool) -> None:
        """One aggregate scan counting every problem exactly: unconvertible values, then the given row checks
        (and with `joins`, the table's foreign keys and cross-table rules, by joins)."""
        plans = self.ds.plan(t.name)
        aggs = [f"count(*) FILTER (WHERE {_raw(c)} IS NOT NULL AND {pred})"
                for c, pred in lossy.items()]
        aggs += [f"count(*) FILTER (WHERE {chk.violation})" for chk in checks]
        if read_all:   # every stored value is read (and decompressed) by this one pass: a damaged page fails it
            stored = self.stored_sql(t)
            if stored:
                aggs.append(f"count(*) FILTER (WHERE hash({stored}) IS NULL)")
        # the range of each date in a composite key, for the bitmap screen of its uniqueness (run_count)
        dated = [c for c in t.unique_together if t.column(c).kind == "date" and c not in self.unreadable[t.name]] \
            if t.large else []
        first_range = len(aggs)
        aggs += [f"{f}({quote_ident(c)})" for c in dated for f in ("min", "max")]
        # a large table's foreign keys and cross-table rules are counted in the same pass, by joins to
        # one row per key of the other table; reported (or not) once every table is checked (run, cross)
        joined: list[tuple[tuple, str]] = []
        lookups: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
        if joins:
            joined = self.joined_checks(t, lookups)
        first_joined = len(aggs)
        aggs += [f"count(*) FILTER (WHERE {w.replace('{t}', '__t')})" for _, w in joined]
        aggs.append("count(*)")
        counts = self.con.sql(f"SELECT {', '.join(aggs)} FROM {_check_view(t.name)} AS __t "
                              + " ".join(self.lookup_joins(lookups, "__t"))).fetchall()[0]
        for j, (key, _) in enumerate(joined):
            self.precounted[key] = int(counts[first_joined + j])
        for i, c in enumerate(dated):
            self.ranges[(t.name, c)] = counts[first_range + 2 * i: first_range + 2 * i + 2]
        self.n_rows[t.name] = int(counts[-1])
        self.ds.remember_n_rows(t.name, int(counts[-1]))
        for (c, pred), n in zip(lossy.items(), counts[: len(lossy)]):
            if n:
                ex = self.fetch_examples(t, f"{_raw(c)} IS NOT NULL AND {pred}", [c], raw=c)
                self.unreadable[t.name].add(c)
                stored = ("CSV text" if self.ds.source(t.name).format == "csv"
                          else plans[c].stored_type)
                self.problems.append(Problem(t.name, c, "type", n, ex,
                                             f"{expected_text(t.column(c), 'type')}; "
                                             f"stored as {stored}"))
        for chk, n in zip(checks, counts[len(lossy):-1]):
            if n and self.readable(t.name, chk.columns):
                self.report_sql(chk, n)

    def joined_checks(self, t: Table, lookups: dict) -> list[tuple[tuple, str]]:
        """A large table's foreign keys and cross-table rules as predicates on a row (``{t}``) joined to one
        row per key of the other table: ``[(precounted key, predicate)]``; `lookups` gets the joins,
        ``(other, its key, our column) -> (alias, looked-up values)``."""
        def lookup(other: str, okey: str, mine: str) -> tuple[str, list[str]]:
            return lookups.setdefault((other, okey, mine), (f"__ref{len(lookups)}", []))

        joined: list[tuple[tuple, str]] = []
        for chk in (c for c in sql_checks(t.name) if c.kind == "foreign_key"):
            if self.readable(chk.ref_table, [chk.ref_column]) and self.readable(t.name, chk.columns):
                alias, _ = lookup(chk.ref_table, chk.ref_column, chk.column)
                joined.append((("fk", chk.table, chk.column),
                               f"{{t}}.{quote_ident(chk.column)} IS NOT NULL AND {alias}.__k IS NULL"))
        for rule in (r for r in CROSS_RULES if r.table == t.name):
            if self.readable(rule.other, rule.other_columns) and self.readable(t.name, rule.columns):
                alias, values = lookup(rule.other, rule.key, rule.key)
                values.append(rule.lookup)
                joined.append((("cross", rule.name),
                               rule.violation.format(t="{t}", v=f"{alias}.__v{len(values) - 1}")))
        return joined

    @staticmethod
    def lookup_joins(lookups: dict, me: str) -> list[str]:
        """``LEFT JOIN`` of each lookup of :meth:`joined_checks` (one row per key of the other table) to `me`."""
        joins = []
        for (other, okey, mine), (alias, values) in lookups.items():
            k = quote_ident(okey)
            vals = "".join(f", {v} AS __v{j}" for j, v in enumerate(values))
            joins.append(f"LEFT JOIN (SELECT {k} AS __k{vals} FROM {_check_view(other)} WHERE {k} IS NOT NULL "
                         f"GROUP BY {k}) AS {alias} ON {me}.{quote_ident(mine)} = {alias}.__k")
        return joins

    def grouped_scan(self, t: Table, checks: list[SqlCheck], lossy: dict[str, str]) -> bool:
        """A large table's checks in one aggregation by its first column (the customer), as cheap as a bare
        ``GROUP BY customer_id`` when the data are clean; False when it does not apply (the exact scan runs).

        Per customer: the number of rows, whether any row breaks a row check or holds an unconvertible value
        (every stored value read, as by the exact scan), the bitmap of the composite key
        (:meth:`bitmap_key`) and the aggregate of each cross-table rule's screen
        (:data:`~.schemas.CROSS_SCREENS`).  The per-customer rows are then joined to one row per customer
        of the table referenced: the foreign key of the customer is counted exactly (the customer's rows
        with no match), the cross-table rules screened.  Only a check found broken is counted again, exactly:
        the row checks by :meth:`exact_scan` (without joins), a cross-table rule by its join, the composite
        key by :meth:`run_count`; the other foreign keys are proven by the bitmap (a value not referenced
        has no bit) or counted with the others in :meth:`run`.
        """
        group = t.columns[0].name
        if group in self.unreadable[t.name]:
            return False
        g = quote_ident(group)
        # the date ranges of the composite key, for its bitmap: from the Parquet statistics where they hold
        dated = [c for c in t.unique_together if t.column(c).kind == "date" and c not in self.unreadable[t.name]]
        if dated:
            got = self.con.sql("SELECT " + ", ".join(f"{f}({quote_ident(c)})" for c in dated for f in ("min", "max"))
                               + f" FROM {_check_view(t.name)}").fetchall()[0]
            for i, c in enumerate(dated):
                self.ranges[(t.name, c)] = got[2 * i: 2 * i + 2]
        unique = next((c for c in sql_checks(t.name) if c.kind == "unique" and c.columns == t.unique_together
                       and self.readable(t.name, c.columns)), None)
        bitmap = self.bitmap_key(unique, max_parts=BITMAP_MAX_PARTS) if unique is not None else None
        # every stored value is read (and decompressed), a damaged page fails the query: the customer and the
        # key's columns by the grouping and the bitmap, every other column by a hash the planner cannot drop
        read = {group, *(unique.columns if bitmap is not None else ())}
        bad = [f"({_raw(c)} IS NOT NULL AND {pred})" for c, pred in lossy.items()]
        bad += [f"({chk.violation})" for chk in checks]
        stored = self.stored_sql(t, without=read)
        if stored:
            bad.append(f"hash({stored}) IS NULL")
        inner = ["count(*) AS __n", f"bool_or({' OR '.join(bad) or 'false'}) AS __bad"]
        outer = ["coalesce(sum(__g.__n), 0)", "coalesce(bool_or(__g.__bad), false)"]
        parts = 1
        if bitmap is not None:
            key, size, coded, parts = bitmap
            inner.append(f"bitstring_agg(CASE WHEN {self._not_null(unique.columns)} THEN {key} END, 0, {size - 1})"
                         " AS __b")
            outer.append("coalesce(sum(__g.__n - coalesce(bit_count(__g.__b), 0)), 0)")
        # the foreign key of the customer and the screens of the cross-table rules, on one row per customer
        lookups: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
        fks = [chk for chk in sql_checks(t.name) if chk.kind == "foreign_key"
               and self.readable(chk.ref_table, [chk.ref_column]) and self.readable(t.name, chk.columns)]
        screened: list[tuple] = []      # (precounted key, index in outer)
        exact: dict[tuple, int] = {}    # precounted key -> index in outer
        for chk in fks:
            if chk.column == group:
                alias = self._lookup(lookups, chk.ref_table, chk.ref_column, group)[0]
                exact[("fk", chk.table, chk.column)] = len(outer)
                outer.append(f"coalesce(sum(__g.__n) FILTER (WHERE __g.{g} IS NOT NULL AND {alias}.__k IS NULL), 0)")
        cross_rules = []
        for rule in (r for r in CROSS_RULES if r.table == t.name):
            if not (self.readable(rule.other, rule.other_columns) and self.readable(t.name, rule.columns)):
                continue
            screen = CROSS_SCREENS.get(rule.name)
            if screen is None or rule.key != group:
                return False          # no screen of this rule: the exact scan counts it by its join
            alias, values = self._lookup(lookups, rule.other, rule.key, group)
            values.append(rule.lookup)
            agg, pred = screen
            inner.append(f"{agg.format(t='__t')} AS __a{len(cross_rules)}")
            screened.append((("cross", rule.name), len(outer)))
            outer.append(f"count(*) FILTER (WHERE {pred.format(a=f'__g.__a{len(cross_rules)}', v=f'{alias}.__v{len(values) - 1}')})")
            cross_rules.append(rule)
        def part(p: int) -> str:      # the customers of part p (all of them when there is one part)
            where = f"WHERE hash(__t.{g}) % {parts} = {p} " if parts > 1 else ""
            return (f"SELECT {', '.join(outer)} FROM (SELECT {g}, {', '.join(inner)} FROM {_check_view(t.name)} "
                    f"AS __t {where}GROUP BY {g}) AS __g " + " ".join(self.lookup_joins(lookups, "__g")))
        try:
            # each outer figure is a sum over customers (the second an "any"): the parts add up
            rows = [self.con.sql(part(p)).fetchall()[0] for p in range(parts)]
            got = [any(r[1] for r in rows) if i == 1 else sum(r[i] for r in rows) for i in range(len(outer))]
        except duckdb.OutOfMemoryException:
            if bitmap is None:
                raise
            self.no_bitmap.add(t.name)     # the bitmaps did not fit after all: the exact scan's screens spill
            return False
        n_rows, any_bad = int(got[0]), bool(got[1])
        self.n_rows[t.name] = n_rows
        self.ds.remember_n_rows(t.name, n_rows)
        for key, i in exact.items():
            self.precounted[key] = int(got[i])
        if bitmap is not None and got[2] == 0:
            # every row has a bit of its own: the key is unique, and every coded value is referenced
            self.proven.add((t.name, unique.columns))
            for chk in fks:
                if chk.column in coded:
                    self.precounted[("fk", chk.table, chk.column)] = 0
        if any(got[i] for _, i in screened):    # a broken cross-table rule: counted exactly, by its join
            joined = dict(self.joined_checks(t, lk := {}))
            keys = [k for k, i in screened if got[i]]
            counts = self.con.sql(
                "SELECT " + ", ".join(f"count(*) FILTER (WHERE {joined[k].replace('{t}', '__t')})" for k in keys)
                + f" FROM {_check_view(t.name)} AS __t " + " ".join(self.lookup_joins(lk, "__t"))).fetchall()[0]
            self.precounted.update({k: int(n) for k, n in zip(keys, counts)})
        for key, i in screened:
            if not got[i]:
                self.precounted[key] = 0
        if any_bad:   # a row check broken or a value not convertible: every one counted exactly
            self.exact_scan(t, checks, lossy, joins=False, read_all=False)
        return True

    @staticmethod
    def _lookup(lookups: dict, other: str, okey: str, mine: str) -> tuple[str, list[str]]:
        return lookups.setdefault((other, okey, mine), (f"__ref{len(lookups)}", []))

    @staticmethod
    def _not_null(columns: Iterable[str]) -> str:
        return " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in columns)

    def report_sql(self, chk: SqlCheck, n: int) -> None:
        t = TABLES[chk.table]
        where = chk.offending_where(_check_view)
        ex = self.fetch_examples(t, where, chk.columns)
        self.problems.append(Problem(chk.table, chk.column, chk.rule, n, ex, chk.expected))

    def bitmap_screen_sql(self, chk: SqlCheck) -> str | None:
        """An exact, cheap screen of a composite key's uniqueness on a large table: per value of the key's
        first column (the customer), a bitmap with one bit per (date, coded value) and the number of rows;
        the key is unique exactly when every customer has as many distinct bits as rows.  The other key
        columns are coded by the values of the small table they reference (a value not there, or a null,
        makes the screen non-zero, and the exact count decides).  One hash aggregation over customers,
        as cheap as a bare GROUP BY, where the general screen hashes every row's key (4x the cost).

        None when it does not apply: no date among the key, a column that references no small table, or
        bitmaps that would need more than :meth:`bitmap_budget` bytes (then the hash screen is used).
        """
        got = self.bitmap_key(chk)
        if got is None:
            return None
        key, size, _, _ = got
        return (f"SELECT coalesce(sum(n - bit_count(b)), 0) FROM (SELECT count(*) AS n, "
                f"bitstring_agg({key}, 0, {size - 1}) AS b FROM {_check_view(chk.table)} "
                f"WHERE {self._not_null(chk.columns)} GROUP BY {quote_ident(chk.columns[0])})")

    def bitmap_key(self, chk: SqlCheck, max_parts: int = 1) -> tuple[str, int, set[str], int] | None:
        """The bit of a row in its customer's bitmap (:meth:`bitmap_screen_sql`): ``(SQL, bits, coded
        columns, parts)``, the SQL in ``[0, bits)`` for a row with no null in the key, a date within the range
        found and coded values that are referenced (NULL otherwise), and the passes the bitmaps need to stay
        within :meth:`bitmap_budget` each; None when the bitmap does not apply or would need more than
        `max_parts` passes."""
        t = TABLES[chk.table]
        group, *rest = chk.columns
        if chk.table in self.no_bitmap:
            return None
        dates = [c for c in rest if (chk.table, c) in self.ranges]
        if len(dates) != 1 or group != t.columns[0].name:
            return None
        lo, hi = self.ranges[(chk.table, dates[0])]
        if lo is None or hi is None:
            return None
        span = (hi - lo).days + 1
        coded, size = [], span
        for c in rest:
            if c == dates[0]:
                continue
            ref = t.column(c).references
            if ref is None or TABLES[ref[0]].large or not self.readable(ref[0], [ref[1]]):
                return None
            values = [r[0] for r in self.con.sql(
                f"SELECT DISTINCT {quote_ident(ref[1])} FROM {_check_view(ref[0])} "
                f"WHERE {quote_ident(ref[1])} IS NOT NULL ORDER BY 1").fetchall()]
            if not values:
                return None
            coded.append((c, values))
            size *= len(values)
        owner = t.column(group).references
        groups = self.n_rows.get(owner[0]) if owner else None
        if groups is None or size > BITMAP_MAX_BITS:
            return None
        parts = max(1, math.ceil(groups * size / 8 / max(self.bitmap_budget(), 1.0)))
        if parts > max_parts:
            return None
        key = f"(CAST({quote_ident(dates[0])} - DATE '{lo.isoformat()}' AS BIGINT))"
        for c, values in coded:
            listed = "[" + ", ".join(sql_literal(v) for v in values) + "]"
            key = f"({key} * {len(values)} + list_position({listed}, {quote_ident(c)}) - 1)"
        return key, size, {c for c, _ in coded}, parts

    def bitmap_budget(self) -> float:
        """Bytes the bitmaps of :meth:`bitmap_key` may take: :data:`BITMAP_BUDGET`, and at most
        :data:`BITMAP_LIMIT_SHARE` of the connection's memory limit."""
        limit = _memory_limit_bytes(self.con)
        return BITMAP_BUDGET if limit is None else min(BITMAP_BUDGET, BITMAP_LIMIT_SHARE * limit)

    def run_count(self, chk: SqlCheck, screen: bool = False) -> None:
        if (chk.table, chk.columns) in self.proven:
            return
        sql = (self.bitmap_screen_sql(chk) or chk.screen_sql(_check_view)) if screen else None
        if sql is not None and not self.con.sql(sql).fetchall()[0][0]:
            return
        n = self.con.sql(chk.count_sql(_check_view)).fetchall()[0][0]
        if n:
            self.report_sql(chk, int(n))

    def offsets(self, t: Table) -> None:
        """Dates and times written with a UTC offset when no operator time zone is set: refused (``timezone``).

        With a zone they were converted when the data were opened (:mod:`.timezones`).  The small
        tables are counted whole; for the large ones the first rows are looked at.
        """
        if self.ds.config is not None and self.ds.config.timezone is not None:
            return
        plans = self.ds.plan(t.name)
        cols = [c for c, p in plans.items() if p.column.kind in ("date", "timestamp") and p.status == "cast"
                and (p.stored_type or "").upper() == "VARCHAR" and c not in self.unreadable[t.name]]
        if not cols:
            return
        pat = sql_literal(OFFSET_PATTERN)
        rel = _check_view(t.name) if not t.large else \
            f"(SELECT * FROM {_check_view(t.name)} LIMIT {N_PROBE_LARGE})"
        aggs = ", ".join(f"count(*) FILTER (WHERE regexp_matches({_raw(c)}, {pat}))" for c in cols)
        counts = self.con.sql(f"SELECT {aggs} FROM {rel}").fetchall()[0]
        for c, n in zip(cols, counts):
            if n:
                ex = self.fetch_examples(t, f"regexp_matches({_raw(c)}, {pat})", [c], raw=c)
                self.unreadable[t.name].add(c)
                self.problems.append(offset_problem(t.name, c, int(n), ex))

    def pandera(self, t: Table) -> None:
        import pandera.pandas as pa

        cols = [c for c in t.column_names if c not in self.unreadable[t.name]]
        if not cols:
            return
        frame = self.con.sql(
            f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM {_check_view(t.name)}").df()
        schema = pandera_schema(t.name, columns=cols, dtypes=False)
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            fc = fc[fc["index"].notna()]
            kinds = self.kinds(t.name)
            for (column, check), grp in fc.groupby(["column", "check"], sort=False):
                rule = rule_from_pandera(str(check))
                idx = sorted(set(int(i) for i in grp["index"]))
                show = self.display_columns(t, [column])
                rows = frame.loc[idx[:N_EXAMPLES], show].itertuples(index=False, name=None)
                self.problems.append(Problem(t.name, column, rule, len(idx),
                                             _fmt_rows(show, rows, kinds, nan_is_null=True),
                                             expected_text(t.column(column), rule)))

    def create_or_probe(self, name: str) -> None:
        """Create the table's check relation.  A small table is read whole into it (every value of every
        stored column decompressed), so a small Parquet table that cannot be read is probed: damaged data
        pages are one named problem per table, and the table is left out of the other checks (issue 13).
        The large tables stay views, read through by their own aggregate scan (:meth:`checked`), and are
        probed only when that scan fails."""
        try:
            self.create_check_view(name)
        except duckdb.Error:
            if self.ds.source(name).format != "parquet" or TABLES[name].large or not self._probe_one(name):
                raise

    def _probe_one(self, name: str) -> bool:
        src = self.ds.source(name)
        p = probe_readable(self.con, name, src, list(self.ds.stored_columns(name)))
        if p is not None:
            self.problems.append(p)
            self.damaged.add(name)
        return p is not None

    @contextmanager
    def checked(self, t: Table) -> Iterator[None]:
        """Run one large table's checks; a read error there probes the table's files: damaged data pages are
        its one ``unreadable_file`` problem (what the checks had found before the error is dropped) and the
        table is left out of the other checks.  Any other error is raised as it is."""
        n_before = len(self.problems)
        try:
            yield
        except duckdb.Error:
            if self.ds.source(t.name).format != "parquet" or not TABLES[t.name].large:
                raise
            del self.problems[n_before:]
            if not self._probe_one(t.name):
                raise

    def _lookup_join(self, rule, t: str, alias: str) -> str:
        """LEFT JOIN of ``rule.other`` reduced to one row per key: ``alias.__v`` is the rule's looked-up value."""
        k = quote_ident(rule.key)
        return (f"LEFT JOIN (SELECT {k} AS __k, {rule.lookup} AS __v FROM {_check_view(rule.other)} "
                f"WHERE {k} IS NOT NULL GROUP BY {k}) AS {alias} ON {t}.{k} = {alias}.__k")

    def cross(self, present: list[Table]) -> None:
        """The rules across tables (:data:`~.spec.CROSS_RULES`), with the other table's value in each example."""
        names = {t.name for t in present}
        suspect: set[tuple[str, str]] = set()   # columns another rule already found wrong: not compared again
        for p in self.problems:
            cols = {c.strip() for c in (p.column or "").split(",") if c.strip()}
            if p.table in TABLES:
                for rr in TABLES[p.table].row_rules:
                    if rr.name == p.rule:
                        cols |= set(rr.columns)
            suspect |= {(p.table, c) for c in cols}
        for rule in CROSS_RULES:
            if rule.table not in names or rule.other not in names or not (
                    self.readable(rule.table, rule.columns) and self.readable(rule.other, rule.other_columns)):
                continue
            if any((rule.table, c) in suspect for c in rule.columns) or \
                    any((rule.other, c) in suspect for c in rule.other_columns):
                continue
            t = _check_view(rule.table)
            joined = f"{t} {self._lookup_join(rule, t, '__o')}"
            where = rule.violation.format(t=t, v="__o.__v")
            n = self.precounted.get(("cross", rule.name))
            if n is None:
                n = self.con.sql(f"SELECT count(*) FROM {joined} WHERE {where}").fetchall()[0][0]
            if not n:
                continue
            cols = self.display_columns(TABLES[rule.table], rule.columns)
            sel = ", ".join(f"{t}.{quote_ident(c)}" for c in cols) + f", __o.__v AS {quote_ident(rule.show_as)}"
            rel = self.con.sql(f"SELECT {sel} FROM {joined} WHERE {where} LIMIT {N_EXAMPLES}")
            ex = _fmt_rows(rel.columns, rel.fetchall(), self.kinds(rule.table))
            self.problems.append(Problem(rule.table, rule.column, rule.name, int(n), ex, rule.expected))

    def run(self) -> None:
        for name in self.ds.tables:
            self.create_or_probe(name)
        present = [TABLES[n] for n in self.ds.tables if n not in self.damaged]
        for t in present:
            with self.checked(t):
                self.structure(t)
        for t in present:
            if t.name in self.damaged:
                continue
            with self.checked(t):
                self.table_checks(t)
        present = [t for t in present if t.name not in self.damaged]
        for t in present:  # foreign keys, once every table's readable columns are known
            fks = [chk for chk in sql_checks(t.name)
                   if chk.kind == "foreign_key" and self.readable(t.name, chk.columns)
                   and self.readable(chk.ref_table, [chk.ref_column])]
            if fks and all(("fk", c.table, c.column) in self.precounted for c in fks):
                counts = [self.precounted[("fk", c.table, c.column)] for c in fks]
            elif fks:
                counts = self.con.sql(foreign_key_counts_sql(fks, _check_view)).fetchall()[0]
            if fks:
                for chk, n in zip(fks, counts):
                    if n:
                        self.report_sql(chk, int(n))
        self.cross(present)

    def table_checks(self, t: Table) -> None:
        """One table's own checks: the aggregate scan, offsets, pandera (small tables), uniqueness."""
        use_sql = self.engine == "sql" or t.large or self.ds.n_rows(t.name) > PANDERA_MAX_ROWS
        self.engines[t.name] = "sql" if use_sql else "pandera"
        checks = sql_checks(t.name)
        row_checks = [c for c in checks if c.kind == "row" and (use_sql or not c.value_rule)
                      and self.readable(t.name, c.columns)]
        self.scan(t, row_checks)
        self.offsets(t)
        if not use_sql:
            self.pandera(t)
        for chk in checks:
            if chk.kind == "unique" and (use_sql or not chk.value_rule) \
                    and self.readable(t.name, chk.columns):
                self.run_count(chk, screen=t.large)

    def drop_views(self) -> None:
        for name in self.ds.tables:
            kind = "VIEW" if TABLES[name].large else "TABLE"
            self.con.execute(f"DROP {kind} IF EXISTS {_check_view(name)}")


def validate_dataset(ds: Dataset, *, engine: str = "auto") -> ValidationReport:
    """Validate an opened :class:`Dataset` (see :func:`validate`)."""
    if engine not in ("auto", "sql"):
        raise ValueError(f"engine must be one of {{'auto', 'sql'}}, got {engine!r}")
    v = _Validator(ds, engine)
    with _no_type_pushdown(ds.con):
        try:
            v.run()
        finally:
            v.drop_views()
    return ValidationReport.from_problems(ds.path, v.problems, v.n_rows, v.engines)


def validate(path_or_dataset: str | Path | Dataset, *, engine: str = "auto",
             memory_limit: str | None = None) -> ValidationReport:
    """Check a data directory against every rule of the data contract.

    All problems are collected (lazy validation); nothing is raised for bad data.

    Parameters
    ----------
    path_or_dataset : str, Path or Dataset
        A data directory, or a dataset opened with ``load(..., validate=False)``.
    engine : {"auto", "sql"}, default "auto"
        ``"auto"`` checks column values of the small tables with pandera and of
        the large tables (activity, deposits), and of any table of more than
        :data:`PANDERA_MAX_ROWS` rows, with SQL aggregates (the same rules and
        counts, without loading the table into pandas); ``"sql"`` uses SQL for
        every table.
    memory_limit : str, optional
        DuckDB memory limit (e.g. ``"4GB"``) when opening a path.

    Returns
    -------
    ValidationReport
        ``.ok``, ``.problems`` (table, column, rule, n_failing, examples,
        expected), ``.raise_if_failed()``, and ``.text`` (:func:`~carecall_eval.contract.format_problems`)
        for the console.

    Notes
    -----
    Rules: required files and columns; stored types (values that cannot be
    converted count as ``type`` failures); ``not_null``; ``finite`` numbers;
    exact, case-sensitive ``vocabulary``; ``range`` (amounts >= 0, payback in
    [0, 1], birth_year 1900-2015, dates 1990-01-01 to 2100-01-01); ``unique``
    keys; row rules on answered and unanswered calls and on date order; and
    ``foreign_key`` references. Extra columns are allowed.

    Examples
    --------
    >>> report = validate("data/sample")  # doctest: +SKIP
    >>> print(report.text)  # doctest: +SKIP
    """
    if isinstance(path_or_dataset, Dataset):
        return validate_dataset(path_or_dataset, engine=engine)
    if not isinstance(path_or_dataset, (str, os.PathLike)):
        raise TypeError(f"validate() takes a data directory or a Dataset from load(), not "
                        f"{type(path_or_dataset).__name__}; data on Spark or a warehouse are validated from a "
                        f"Parquet export (docs/backends.md)")
    ds, _ = open_dataset(path_or_dataset, memory_limit=memory_limit)
    try:
        return validate_dataset(ds, engine=engine)
    finally:
        ds.close()


def load(path: str | Path, *, validate: bool = True, memory_limit: str | None = None) -> Dataset:
    """Open and (by default) validate a data directory in the data contract.

    Parameters
    ----------
    path : str or Path
        Directory with one file per table (``customers``, ``products``,
        ``activity``, ``deposits`` (optional), ``triggers``, ``call_cases``,
        ``call_attempts``, ``sms``, ``rg_events``; each ``.parquet`` or
        ``.csv``) and ``operator.toml``.
    validate : bool, default True
        Check every rule of the contract and raise if any fails. With False only
        the files and ``operator.toml`` are checked.
    memory_limit : str, optional
        DuckDB memory limit such as ``"4GB"``; larger joins and aggregations
        spill to a temporary directory (removed when the dataset is closed or
        collected).  Default: the ``CARECALL_MEMORY_LIMIT`` environment
        variable, else :data:`DEFAULT_MEMORY_LIMIT` (4GB), which keeps the
        1M-customer benchmark well under 8 GB in all.

    Returns
    -------
    Dataset
        The opened data (close it, or use it as a context manager).

    Raises
    ------
    ContractError
        Listing every problem found (table, column, rule, failing rows, examples
        of offending rows, what was expected).
    FileNotFoundError
        If `path` is not a directory.

    See Also
    --------
    validate : the same checks, returning a report instead of raising.

    Examples
    --------
    >>> ds = load("data/sample")  # doctest: +SKIP
    >>> ds.con.sql("SELECT product, sum(wagered) FROM activity GROUP BY ALL").df()  # doctest: +SKIP
    """
    ds, problems = open_dataset(path, memory_limit=memory_limit)
    try:
        if validate:
            report = validate_dataset(ds)
        else:
            report = ValidationReport.from_problems(ds.path, problems)
        report.raise_if_failed()
    except BaseException:
        ds.close()
        raise
    return ds


__all__ = ["validate", "validate_dataset", "load", "N_EXAMPLES"]
