"""Checks derived from the contract in :mod:`.spec`: pandera schemas and SQL checks.

Both translations sit side by side so that each rule has one definition and one
translation per engine:

* :func:`pandera_schema` builds a :class:`pandera.pandas.DataFrameSchema` with
  the column-value rules (``not_null``, ``vocabulary``, ``range``, ``unique``)
  for the small tables, validated lazily in pandas.
* :func:`sql_checks` builds :class:`SqlCheck` objects for the same rules plus
  the rules that need the stored values or other tables (``finite``,
  ``foreign_key``, composite keys, row rules). Each check counts offending rows
  with one aggregate query and fetches a few of them only for the message, so
  it runs on tables that do not fit in memory.

``tests/test_contract_validate.py`` checks that both engines report the same
problems on every malformed fixture.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterable, Literal

import pandas as pd

from .spec import TABLES, Column, Table, expected_text

if TYPE_CHECKING:
    # pandera is imported where a schema is built: opening data or reading a report does not need it
    # (about 0.6 s to import)
    import pandera.pandas as pa

#: Column-value rules that pandera and SQL both implement.
VALUE_RULES = ("not_null", "vocabulary", "range", "unique")

# pandera's own check names -> contract rule names
_PANDERA_RULES = {"not_nullable": "not_null", "field_uniqueness": "unique",
                  "vocabulary": "vocabulary", "range": "range"}


def rule_from_pandera(check: str) -> str:
    """Map a pandera failure-case ``check`` label to a contract rule name."""
    if check in _PANDERA_RULES:
        return _PANDERA_RULES[check]
    if check.startswith("dtype("):
        return "type"
    return check


# --------------------------------------------------------------------------- pandera
def _pandas_dtype(col: Column, datetime_unit: str):
    from pandera.engines import pandas_engine

    if col.kind in ("date", "timestamp"):
        return pandas_engine.DateTime(unit=datetime_unit)
    return {"string": str, "int": "int64", "float": "float64", "bool": bool}[col.kind]


def _bound(col: Column, value):
    if isinstance(value, _dt.date):
        return pd.Timestamp(value)
    return value


def pandera_checks(col: Column) -> list[pa.Check]:
    """The pandera checks for `col`'s vocabulary and range rules."""
    import pandera.pandas as pa

    checks = []
    if col.vocabulary is not None:
        checks.append(pa.Check.isin(list(col.vocabulary), name="vocabulary", error="vocabulary"))
    if col.min is not None and col.max is not None:
        checks.append(pa.Check.in_range(_bound(col, col.min), _bound(col, col.max),
                                        name="range", error="range"))
    elif col.min is not None:
        checks.append(pa.Check.ge(_bound(col, col.min), name="range", error="range"))
    elif col.max is not None:
        checks.append(pa.Check.le(_bound(col, col.max), name="range", error="range"))
    return checks


def pandera_schema(table: str, *, columns: Iterable[str] | None = None, dtypes: bool = True,
                   datetime_unit: str = "ns") -> pa.DataFrameSchema:
    """Build the pandera schema of a contract table.

    Parameters
    ----------
    table : str
        Contract table name, e.g. ``"customers"``.
    columns : iterable of str, optional
        Restrict the schema to these contract columns (default: all).
    dtypes : bool, default True
        Check pandas dtypes as :meth:`Dataset.table` returns them. Validation
        passes False because types are checked on the stored data in DuckDB.
    datetime_unit : {"ns", "us"}, default "ns"
        Unit expected of date and timestamp columns when `dtypes` is True.

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Non-strict (extra columns pass), with the rules ``not_null``,
        ``vocabulary``, ``range`` and ``unique`` of every column.

    Examples
    --------
    >>> import pandas as pd
    >>> schema = pandera_schema("products")
    >>> schema.validate(pd.DataFrame({"product": ["slots"], "payback": [0.94]})).shape
    (1, 2)
    """
    return _pandera_schema(table, None if columns is None else frozenset(columns), dtypes,
                           datetime_unit)


@lru_cache(maxsize=None)
def _pandera_schema(table: str, columns: frozenset[str] | None, dtypes: bool,
                    datetime_unit: str) -> pa.DataFrameSchema:
    import pandera.pandas as pa

    spec = TABLES[table]
    keep = set(spec.column_names if columns is None else columns)
    cols = {}
    for col in spec.columns:
        if col.name not in keep:
            continue
        cols[col.name] = pa.Column(
            _pandas_dtype(col, datetime_unit) if dtypes else None,
            checks=pandera_checks(col),
            nullable=col.nullable,
            unique=col.unique,
            required=not col.optional,
        )
    return pa.DataFrameSchema(cols, strict=False, name=table, coerce=False)


# --------------------------------------------------------------------------- SQL
def quote_ident(name: str) -> str:
    """Quote a SQL identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value, kind: str | None = None) -> str:
    """Render a Python value as a DuckDB literal (dates typed by `kind`)."""
    if isinstance(value, _dt.date):
        return f"{'TIMESTAMP' if kind == 'timestamp' else 'DATE'} '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


@dataclass(frozen=True)
class SqlCheck:
    """A set-based check on one table of the dataset's DuckDB views.

    Attributes
    ----------
    table, column, rule, expected : str
        Where the problem is reported and what was expected.
    kind : {"row", "unique", "foreign_key"}
        ``row``: `violation` is a predicate on one row, counted with
        ``count(*) FILTER (WHERE ...)`` in one scan together with the table's
        other row checks. ``unique``: duplicate values of `columns`.
        ``foreign_key``: values of `column` absent from `ref_table.ref_column`.
    columns : tuple of str
        Columns read by the check.
    violation : str
        For ``row`` checks, the SQL predicate true for an offending row.
    value_rule : bool
        Whether pandera implements the same rule for small tables.
    """

    table: str
    column: str
    rule: str
    expected: str
    kind: Literal["row", "unique", "foreign_key"]
    columns: tuple[str, ...]
    violation: str = ""
    ref_table: str = ""
    ref_column: str = ""
    value_rule: bool = False

    def offending_where(self, rel: Callable[[str], str]) -> str:
        """SQL ``WHERE`` body selecting offending rows.

        Parameters
        ----------
        rel : callable
            Maps a table name to the name of the relation to query for it.
        """
        if self.kind == "row":
            return self.violation
        me = rel(self.table)
        if self.kind == "unique":
            cols = ", ".join(quote_ident(c) for c in self.columns)
            notnull = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in self.columns)
            return (f"({cols}) IN (SELECT ({cols}) FROM {me} WHERE {notnull} "
                    f"GROUP BY ALL HAVING count(*) > 1)")
        c, rc = quote_ident(self.column), quote_ident(self.ref_column)
        return (f"{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rel(self.ref_table)} AS __ref "
                f"WHERE __ref.{rc} = {me}.{c})")

    def count_sql(self, rel: Callable[[str], str]) -> str:
        """A query returning the number of offending rows (see :meth:`offending_where`)."""
        me = rel(self.table)
        if self.kind == "unique":
            cols = ", ".join(quote_ident(c) for c in self.columns)
            notnull = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in self.columns)
            # every row that shares its key with another row, as pandera counts them
            return (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {me} "
                    f"WHERE {notnull} GROUP BY {cols} HAVING count(*) > 1)")
        return f"SELECT count(*) FROM {me} WHERE {self.offending_where(rel)}"

    def screen_sql(self, rel: Callable[[str], str]) -> str | None:
        """A cheaper query that is 0 only if the check passes (``unique`` checks only).

        Compares the row count with the number of distinct 64-bit hashes of the
        key; duplicates always share a hash, so 0 proves uniqueness and anything
        else sends the exact :meth:`count_sql` on its way.
        """
        if self.kind != "unique":
            return None
        cols = ", ".join(quote_ident(c) for c in self.columns)
        notnull = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in self.columns)
        return (f"SELECT count(*) - count(DISTINCT hash({cols})) FROM {rel(self.table)} "
                f"WHERE {notnull}")


def foreign_key_counts_sql(checks: list[SqlCheck], rel: Callable[[str], str]) -> str:
    """One query counting the offending rows of several foreign keys of one table.

    The child table is scanned once, joined to the distinct keys of each parent.
    Returns one count per check, in order.
    """
    if not checks or any(c.kind != "foreign_key" for c in checks):
        raise ValueError("foreign_key_counts_sql needs foreign_key checks")
    if len({c.table for c in checks}) != 1:
        raise ValueError("foreign_key_counts_sql needs checks on one table")
    joins, aggs = [], []
    for i, chk in enumerate(checks):
        c, alias = quote_ident(chk.column), f"__ref{i}"
        joins.append(f"LEFT JOIN (SELECT DISTINCT {quote_ident(chk.ref_column)} AS k "
                     f"FROM {rel(chk.ref_table)}) AS {alias} ON __t.{c} = {alias}.k")
        aggs.append(f"count(*) FILTER (WHERE __t.{c} IS NOT NULL AND {alias}.k IS NULL)")
    return (f"SELECT {', '.join(aggs)} FROM {rel(checks[0].table)} AS __t "
            + " ".join(joins))


def _column_row_checks(t: Table, col: Column) -> list[SqlCheck]:
    c = quote_ident(col.name)
    out = []

    def add(rule: str, violation: str, value_rule: bool = True) -> None:
        out.append(SqlCheck(t.name, col.name, rule, expected_text(col, rule), "row",
                            (col.name,), violation, value_rule=value_rule))

    if not col.nullable:
        add("not_null", f"{c} IS NULL")
    if col.kind == "float":
        # storage-level: pandas cannot tell NaN from null, so this one is SQL only
        add("finite", f"(isnan({c}) OR isinf({c}))", value_rule=False)
    if col.vocabulary is not None:
        values = ", ".join(sql_literal(v) for v in col.vocabulary)
        add("vocabulary", f"{c} NOT IN ({values})")
    bounds = []
    if col.min is not None:
        bounds.append(f"{c} < {sql_literal(col.min, col.kind)}")
    if col.max is not None:
        bounds.append(f"{c} > {sql_literal(col.max, col.kind)}")
    if bounds:
        # NaN and infinity are the finite rule's (DuckDB orders NaN above every number)
        guard = f"isfinite({c}) AND " if col.kind == "float" else ""
        add("range", f"({guard}(" + " OR ".join(bounds) + "))")
    return out


def sql_checks(table: str) -> list[SqlCheck]:
    """All set-based checks of a contract table, in report order.

    Parameters
    ----------
    table : str
        Contract table name.

    Returns
    -------
    list of SqlCheck
        Column checks (``not_null``, ``finite``, ``vocabulary``, ``range``,
        ``unique``) followed by the table's row rules, composite key and foreign
        keys. Checks with ``value_rule=True`` are the ones pandera also
        implements; :func:`~carecall_eval.contract.validate` runs them in SQL for
        large tables (or with ``engine="sql"``) and in pandera otherwise.
    """
    t = TABLES[table]
    out: list[SqlCheck] = []
    for col in t.columns:
        out.extend(_column_row_checks(t, col))
        if col.unique:
            out.append(SqlCheck(t.name, col.name, "unique", expected_text(col, "unique"),
                                "unique", (col.name,), value_rule=True))
    for rule in t.row_rules:
        out.append(SqlCheck(t.name, rule.column, rule.name, rule.expected, "row",
                            rule.columns, f"({rule.violation})"))
    if t.unique_together:
        key = ", ".join(t.unique_together)
        out.append(SqlCheck(t.name, key, "unique", f"one row per ({key})", "unique",
                            t.unique_together))
    for col in t.columns:
        if col.references:
            ref_table, ref_column = col.references
            out.append(SqlCheck(t.name, col.name, "foreign_key",
                                expected_text(col, "foreign_key"), "foreign_key",
                                (col.name,), ref_table=ref_table, ref_column=ref_column))
    return out


#: Screens of the cross-table rules of the large tables (:data:`~.spec.CROSS_RULES`), by rule name, for
#: validation's one aggregation by customer: ``(aggregate, predicate)``, the aggregate over the rows of a
#: customer (``{t}`` the table) and the predicate on it (``{a}``) and on the looked-up value (``{v}``),
#: TRUE for some customer exactly when the rule's violation is TRUE for some row (then the offending rows
#: are counted by the rule's own join).  ``play_after_closure``: a stake after the closure exists exactly
#: when the last day with a stake is after it.
CROSS_SCREENS: dict[str, tuple[str, str]] = {
    "play_after_closure": ("max({t}.date) FILTER (WHERE {t}.wagered > 0)", "{a} > {v}"),
}
