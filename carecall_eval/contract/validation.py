"""Validate a data directory against the contract, collecting every problem.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa

from .errors import PROBLEM_COLUMNS, ContractError, Problem
from .dataset import Dataset, open_dataset
from .schemas import (
    SqlCheck,
    foreign_key_counts_sql,
    pandera_schema,
    quote_ident,
    rule_from_pandera,
    sql_checks,
)
from .spec import CONTRACT_VERSION, TABLES, Table, expected_text

#: Offending rows shown per problem.
N_EXAMPLES = 5

_RULE_ORDER = ["missing_file", "unreadable_file", "ambiguous_file", "missing_table",
               "required_key", "required_column", "type", "not_null", "finite",
               "vocabulary", "range", "unique"]


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """The outcome of :func:`validate`.

    Attributes
    ----------
    path : pathlib.Path
        The data directory validated.
    problems : pandas.DataFrame
        One row per failed rule, columns ``table``, ``column``, ``rule``,
        ``n_failing`` (offending rows), ``examples`` (the first few offending
        rows) and ``expected``. Empty when the data meet the contract.
    n_rows : Mapping of str to int
        Rows checked per table.
    engines : Mapping of str to str
        How each table's column values were checked: ``"pandera"`` or ``"sql"``.
    contract_version : str
        Version of the data contract checked.
    """

    path: Path
    problems: pd.DataFrame
    n_rows: Mapping[str, int] = field(default_factory=dict)
    engines: Mapping[str, str] = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION

    @classmethod
    def from_problems(cls, path: str | Path, problems: Iterable[Problem],
                      n_rows: Mapping[str, int] | None = None,
                      engines: Mapping[str, str] | None = None) -> "ValidationReport":
        """Build a report from problem records, in contract order."""
        rows = sorted(problems, key=_problem_order)
        frame = pd.DataFrame.from_records(rows, columns=PROBLEM_COLUMNS)
        frame["n_failing"] = frame["n_failing"].astype("int64")
        return cls(Path(path), frame, dict(n_rows or {}), dict(engines or {}))

    def to_json(self) -> str:
        """The report as JSON (read back with :meth:`from_json`)."""
        import json

        return json.dumps({"path": str(self.path), "contract_version": self.contract_version,
                           "n_rows": dict(self.n_rows), "engines": dict(self.engines),
                           "problems": self.problems.to_dict(orient="records")}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ValidationReport":
        """A report written by :meth:`to_json`."""
        import json

        doc = json.loads(text)
        frame = pd.DataFrame.from_records(doc["problems"], columns=PROBLEM_COLUMNS)
        frame["n_failing"] = frame["n_failing"].astype("int64")
        return cls(Path(doc["path"]), frame, doc["n_rows"], doc["engines"], doc["contract_version"])

    @property
    def ok(self) -> bool:
        """True when no rule failed."""
        return self.problems.empty

    def raise_if_failed(self) -> "ValidationReport":
        """Raise :class:`ContractError` listing every problem, or return self."""
        if not self.ok:
            raise ContractError(self.message(), report=self)
        return self

    def message(self) -> str:
        """Every problem in words: table, column, rule, failing rows, examples, expected."""
        if self.ok:
            return f"{self.path} meets the data contract (v{self.contract_version})."
        n = len(self.problems)
        lines = [f"{self.path} does not meet the data contract (v{self.contract_version}): "
                 f"{n} problem{'s' if n != 1 else ''}."]
        for p in self.problems.itertuples(index=False):
            where = f"{p.table}.{p.column}" if p.column else p.table
            total = self.n_rows.get(p.table)
            of = f" of {total:,}" if total is not None else ""
            count = (f"{p.n_failing:,} failing row{'s' if p.n_failing != 1 else ''}{of}"
                     if p.rule not in _FILE_RULES else "")
            lines.append(f"  - {where} [{p.rule}]: {count + '; ' if count else ''}"
                         f"expected {p.expected}")
            if p.examples:
                for ex in p.examples.split("; "):
                    lines.append(f"      {ex}")
        lines.append("Fix the data or the export that produced it, then run "
                     "`carecall-eval validate DIR` again (see docs/data-contract.md).")
        return "\n".join(lines)

    @property
    def text(self) -> str:
        """The report as a fixed-width table (see :func:`format_problems`)."""
        return format_problems(self)

    def __str__(self) -> str:
        return self.text


_FILE_RULES = {"missing_file", "unreadable_file", "ambiguous_file", "missing_table",
               "required_key"}


def _problem_order(p: Problem) -> tuple:
    names = list(TABLES)
    t = names.index(p.table) if p.table in names else -1
    cols = TABLES[p.table].column_names if p.table in TABLES else ()
    first = (p.column or "").split(",")[0].strip()
    c = cols.index(first) if first in cols else (-1 if p.column is None else len(cols))
    r = _RULE_ORDER.index(p.rule) if p.rule in _RULE_ORDER else len(_RULE_ORDER)
    return (t, c, r)


def format_problems(report: ValidationReport, *, max_examples_width: int = 100) -> str:
    """Format a validation report as a fixed-width table for the console.

    Parameters
    ----------
    report : ValidationReport
        From :func:`validate`.
    max_examples_width : int, default 100
        Examples longer than this are cut with "...".

    Returns
    -------
    str
        An "OK" line with row counts when the data meet the contract;
        otherwise a header line and one table row per problem with columns
        table, column, rule, failing, expected, examples.
    """
    if report.ok:
        counts = ", ".join(f"{t} {n:,}" for t, n in report.n_rows.items())
        return (f"OK: {report.path} meets the data contract (v{report.contract_version}). "
                f"Rows: {counts}.")
    df = report.problems
    rows = [("table", "column", "rule", "failing", "expected", "examples")]
    for p in df.itertuples(index=False):
        ex = p.examples if len(p.examples) <= max_examples_width else \
            p.examples[: max_examples_width - 3] + "..."
        failing = "-" if p.rule in _FILE_RULES else f"{p.n_failing:,}"
        rows.append((p.table, p.column or "-", p.rule, failing, p.expected, ex))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].ljust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    n = len(df)
    head = (f"FAILED: {report.path} does not meet the data contract "
            f"(v{report.contract_version}): {n} problem{'s' if n != 1 else ''}.")
    return head + "\n" + "\n".join(lines)


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


class _Validator:
    def __init__(self, ds: Dataset, engine: str):
        self.ds = ds
        self.con = ds.con
        self.engine = engine
        self.problems: list[Problem] = list(ds._open_problems)
        self.unreadable: dict[str, set[str]] = {}  # table -> missing or bad columns
        self.n_rows: dict[str, int] = {}
        self.engines: dict[str, str] = {}

    # --------------------------------------------------------------- plumbing
    def readable(self, table: str, columns: Iterable[str]) -> bool:
        return table in self.ds.tables and not (set(columns) & self.unreadable[table])

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
        plans = self.ds._plans[name]
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
        plans = self.ds._plans[t.name]
        self.unreadable[t.name] = {c for c, p in plans.items() if p.status in ("missing", "bad")}
        stored = list(self.ds._stored[t.name])
        for c, p in plans.items():
            if p.status == "missing":
                n = self.ds.n_rows(t.name)
                found = (f"found {p.found_as!r}: names are case-sensitive" if p.found_as
                         else "columns found: " + ", ".join(stored))
                self.problems.append(Problem(t.name, c, "required_column", n, found,
                                             expected_text(p.column, "required_column")))
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
        """One aggregate scan: unconvertible values, then the given row checks."""
        plans = self.ds._plans[t.name]
        lossy = {c: p.lossy.format(r=_raw(c)) for c, p in plans.items()
                 if p.status == "cast" and p.lossy}
        aggs = [f"count(*) FILTER (WHERE {_raw(c)} IS NOT NULL AND {pred})"
                for c, pred in lossy.items()]
        aggs += [f"count(*) FILTER (WHERE {chk.violation})" for chk in checks]
        aggs.append("count(*)")
        counts = self.con.sql(f"SELECT {', '.join(aggs)} FROM {_check_view(t.name)}").fetchall()[0]
        self.n_rows[t.name] = int(counts[-1])
        self.ds._counts.setdefault(t.name, int(counts[-1]))
        for (c, pred), n in zip(lossy.items(), counts[: len(lossy)]):
            if n:
                ex = self.fetch_examples(t, f"{_raw(c)} IS NOT NULL AND {pred}", [c], raw=c)
                self.unreadable[t.name].add(c)
                stored = ("CSV text" if self.ds._sources[t.name].format == "csv"
                          else plans[c].stored_type)
                self.problems.append(Problem(t.name, c, "type", n, ex,
                                             f"{expected_text(t.column(c), 'type')}; "
                                             f"stored as {stored}"))
        for chk, n in zip(checks, counts[len(lossy):-1]):
            if n and self.readable(t.name, chk.columns):
                self.report_sql(chk, n)

    def report_sql(self, chk: SqlCheck, n: int) -> None:
        t = TABLES[chk.table]
        where = chk.offending_where(_check_view)
        ex = self.fetch_examples(t, where, chk.columns)
        self.problems.append(Problem(chk.table, chk.column, chk.rule, n, ex, chk.expected))

    def run_count(self, chk: SqlCheck, screen: bool = False) -> None:
        sql = chk.screen_sql(_check_view) if screen else None
        if sql is not None and not self.con.sql(sql).fetchall()[0][0]:
            return
        n = self.con.sql(chk.count_sql(_check_view)).fetchall()[0][0]
        if n:
            self.report_sql(chk, int(n))

    def pandera(self, t: Table) -> None:
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

    def run(self) -> None:
        present = [TABLES[n] for n in self.ds.tables]
        for t in present:
            self.create_check_view(t.name)
        for t in present:
            self.structure(t)
        for t in present:
            use_sql = self.engine == "sql" or t.large
            self.engines[t.name] = "sql" if use_sql else "pandera"
            checks = sql_checks(t.name)
            row_checks = [c for c in checks if c.kind == "row" and (use_sql or not c.value_rule)
                          and self.readable(t.name, c.columns)]
            self.scan(t, row_checks)
            if not use_sql:
                self.pandera(t)
            for chk in checks:
                if chk.kind == "unique" and (use_sql or not chk.value_rule) \
                        and self.readable(t.name, chk.columns):
                    self.run_count(chk, screen=t.large)
        for t in present:  # foreign keys, once every table's readable columns are known
            fks = [chk for chk in sql_checks(t.name)
                   if chk.kind == "foreign_key" and self.readable(t.name, chk.columns)
                   and self.readable(chk.ref_table, [chk.ref_column])]
            if fks:
                counts = self.con.sql(foreign_key_counts_sql(fks, _check_view)).fetchall()[0]
                for chk, n in zip(fks, counts):
                    if n:
                        self.report_sql(chk, int(n))

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
        the large tables (activity, deposits) with SQL aggregates; ``"sql"``
        uses SQL for every table, so no table is loaded into pandas.
    memory_limit : str, optional
        DuckDB memory limit (e.g. ``"4GB"``) when opening a path.

    Returns
    -------
    ValidationReport
        ``.ok``, ``.problems`` (table, column, rule, n_failing, examples,
        expected), ``.raise_if_failed()``, and :func:`format_problems` for the
        console.

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
    >>> print(format_problems(report))  # doctest: +SKIP
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
