"""Open the data contract tables on any ibis backend: Spark, or a warehouse.

:func:`load` opens Parquet or CSV files through an embedded DuckDB connection.
:func:`connect` opens the same tables where they already live, on any
`ibis <https://ibis-project.org>`_ backend (``ibis.pyspark.connect(spark)``,
``ibis.postgres.connect(...)``, ``ibis.snowflake.connect(...)``,
``ibis.bigquery.connect(...)``, ``ibis.databricks.connect(...)``, ...), and
returns an :class:`IbisDataset` with the interface the analysis pipeline uses:
:meth:`~IbisDataset.has`, :attr:`~IbisDataset.tables`,
:meth:`~IbisDataset.table`, :meth:`~IbisDataset.ibis_table`,
:meth:`~IbisDataset.n_rows`, :attr:`~IbisDataset.data_start`,
:attr:`~IbisDataset.data_end`, :meth:`~IbisDataset.fingerprint`,
:attr:`~IbisDataset.config` and :attr:`~IbisDataset.path`.

What runs where: every aggregation of the large tables (``activity``,
``deposits``) and of ``rg_events`` is an ibis expression
(:mod:`carecall_eval.cohorts.windows`) executed by the backend; only one row
per cohort key (or per group and week) comes back. The small tables
(customers, products, triggers, call_cases, call_attempts, sms, rg_events) are
fetched whole into pandas by :meth:`IbisDataset.table`, as with files.

Opening checks the contract cheaply, from the tables' schemas only (no data
are scanned): required tables present, contract columns present, and stored
types the contract accepts. Compatible stored types are cast in the ibis
expression (see :func:`connect`). The full contract (vocabularies, ranges,
keys, foreign keys, row rules) is checked on files by
:func:`carecall_eval.contract.validate`: export an extract to Parquet and
validate that (``docs/backends.md``). The aggregation does not need it.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .config import OperatorConfig, read_operator_config
from .problems import ContractError, Problem, ValidationReport
from .spec import CONTRACT_VERSION, TABLES, Column, expected_text
from .tables import TablesBase

#: ibis type of each contract kind, as exposed by :meth:`IbisDataset.ibis_table`.
IBIS_TYPES: dict[str, str] = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "date": "date",
    "timestamp": "timestamp",
    "bool": "boolean",
}

_NO_CON = ("an IbisDataset has no DuckDB connection ({what}): aggregate with "
           "dataset.ibis_table(name) on dataset.backend. Full contract validation runs on files: "
           "export an extract to Parquet and run carecall_eval.contract.validate(DIR) "
           "(see docs/backends.md).")


# ----------------------------------------------------------------------------- types

def _family(dtype) -> str:
    """Family of an ibis data type, for matching against the contract kinds."""
    if dtype.is_null():
        return "null"
    if dtype.is_boolean():
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_floating() or dtype.is_decimal():
        return "float"
    if dtype.is_string():
        return "text"
    if dtype.is_date():
        return "date"
    if dtype.is_timestamp():
        return "timestamptz" if dtype.timezone is not None else "timestamp"
    return "other"


#: contract kind -> stored families cast to the contract type (the contract's own type is kept).
_CASTABLE: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "int", "null"}),
    "int": frozenset({"int", "float", "text", "null"}),
    "float": frozenset({"float", "int", "text", "null"}),
    "date": frozenset({"date", "timestamp", "timestamptz", "text", "null"}),
    "timestamp": frozenset({"timestamp", "timestamptz", "date", "text", "null"}),
    "bool": frozenset({"bool", "text", "null"}),
}


def _is_contract_type(col: Column, dtype) -> bool:
    if col.kind == "timestamp":   # any precision, no time zone
        return _family(dtype) == "timestamp"
    import ibis

    return dtype.copy(nullable=True) == ibis.dtype(IBIS_TYPES[col.kind])


def _conform(name: str, expr) -> tuple[Any, list[Problem]]:
    """Check `expr`'s schema against contract table `name` and cast compatible columns.

    Returns the expression (contract columns in contract types, extra columns
    kept as stored) and the problems found (``required_column``, ``type``).
    """
    spec = TABLES[name]
    schema = expr.schema()
    stored = dict(zip(schema.names, schema.types))
    lower = {c.lower(): c for c in stored}
    problems: list[Problem] = []
    casts = {}
    for col in spec.columns:
        dtype = stored.get(col.name)
        if dtype is None and col.optional:
            continue                       # an optional column may be absent
        if dtype is None:
            near = lower.get(col.name.lower())
            found = f"a column {near!r} (names are case-sensitive)" if near else \
                f"columns {', '.join(stored) or '(none)'}"
            problems.append(Problem(name, col.name, "required_column", 0, found,
                                    expected_text(col, "required_column")))
        elif _is_contract_type(col, dtype):
            continue
        elif _family(dtype) in _CASTABLE[col.kind]:
            casts[col.name] = expr[col.name].cast(IBIS_TYPES[col.kind])
        else:
            problems.append(Problem(name, col.name, "type", 0, f"stored as {dtype}",
                                    expected_text(col, "type")))
    if casts and not problems:
        expr = expr.mutate(**casts)   # replaces the columns in place, keeps the column order
    return expr, problems


# ----------------------------------------------------------------------------- the dataset

class IbisDataset(TablesBase):
    """The data contract tables on an ibis backend (Spark or a warehouse).

    Create with :func:`connect`. Implements the interface of
    :class:`~carecall_eval.contract.Dataset` that the analysis pipeline uses,
    so ``build_cohort``, the matching and the outcome estimators run
    unchanged; the large-table aggregation is executed by the backend.

    Attributes
    ----------
    backend : ibis.backends.BaseBackend
        The ibis backend the tables live on. It belongs to the caller:
        :meth:`close` leaves it open.
    config : OperatorConfig
        The operator's settings (``operator.toml``).
    tables : tuple of str
        Names of the contract tables present, in contract order.
    path : str
        A readable label, ``"<backend>:<name>"`` (e.g. ``"pyspark:default"``);
        it is not a file path.

    Notes
    -----
    There is no DuckDB connection: :attr:`con`, :meth:`relation` and
    :meth:`validate` raise. Full contract validation runs on files with
    :func:`carecall_eval.contract.validate`; export an extract to Parquet to
    validate it. Opening checked the tables' schemas only.
    """

    def __init__(self, backend, exprs: Mapping[str, Any], config: OperatorConfig, label: str):
        self.backend = backend
        self.config = config
        self.path = label
        self.tables = tuple(t for t in TABLES if t in exprs)
        self._exprs = dict(exprs)

    _large_hint = "aggregate it with dataset.ibis_table({name!r}) on the backend"

    def close(self) -> None:
        """Drop cached frames; the backend is the caller's and stays open."""
        self._frames.clear()

    # ----------------------------------------------------------------- refused
    @property
    def con(self):
        """Not available: an IbisDataset has no DuckDB connection (raises AttributeError)."""
        raise AttributeError(_NO_CON.format(what=".con"))

    def relation(self, name: str):
        """Not available (DuckDB relations exist only for files): use :meth:`ibis_table`."""
        raise NotImplementedError(_NO_CON.format(what=f".relation({name!r})"))

    def validate(self, *args, **kwargs):
        """Not available: validate an extract exported to Parquet (see :func:`connect`)."""
        raise NotImplementedError(_NO_CON.format(what="validation"))

    # ----------------------------------------------------------------- access
    def ibis_table(self, name: str):
        """Table `name` as an ibis expression on :attr:`backend`, contract columns in contract types."""
        self._check_present(name)
        return self._exprs[name]

    def _fetch(self, name: str) -> pd.DataFrame:
        # normalised as Dataset.table does: datetime64[ns] dates, None for missing text
        expr = self._exprs[name]
        return _normalise(expr.to_pandas(), expr.schema(), name, self.path)

    def _count(self, name: str) -> int:
        return self._exprs[name].count().to_pyarrow().as_py()

    def _span(self):
        a = self._exprs["activity"]
        row = a.aggregate(lo=a.date.min(), hi=a.date.max()).to_pyarrow().to_pylist()[0]
        return row["lo"], row["hi"]

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(b"carecall_eval data contract v1 on an ibis backend\0")
        h.update(f"backend:{self.backend.name}\0label:{self.path}\0".encode())
        cfg = {"operator": self.config.operator, "currency": self.config.currency,
               "sms_policy_start": self.config.sms_policy_start,
               "small_cell_threshold": self.config.small_cell_threshold,
               "extra": dict(self.config.extra)}
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode() + b"\0")
        for name in self.tables:
            summary = self._checksum(name)
            self._counts[name] = int(summary["n"])
            h.update(f"{name}:{json.dumps(summary, sort_keys=True, default=str)}\0".encode())
        return h.hexdigest()

    def _checksum(self, name: str) -> dict:
        """One aggregate over table `name`: row count, exact sums of numbers, date ranges."""
        t = self._exprs[name]
        aggs = {"n": t.count()}
        for col in TABLES[name].columns:
            c = t[col.name]
            if col.kind in ("float", "int"):
                aggs[f"sum_{col.name}"] = c.cast("decimal(38, 4)").sum()
            elif col.kind in ("date", "timestamp"):
                aggs[f"min_{col.name}"] = c.min()
                aggs[f"max_{col.name}"] = c.max()
        return t.aggregate(**aggs).to_pyarrow().to_pylist()[0]

    def fingerprint(self) -> str:
        """SHA-256 (hex) of a summary of the tables, computed on the backend.

        Hashes the backend name, :attr:`path`, the operator settings, the
        tables present and, per table, one aggregate: the row count, the sum
        of every numeric contract column (as an exact decimal) and the first
        and last value of every date and timestamp column.

        Notes
        -----
        This is weaker than :meth:`Dataset.fingerprint
        <carecall_eval.contract.Dataset.fingerprint>`, which hashes every byte
        of the files: a change that keeps the counts, sums and date ranges
        (e.g. a swapped customer id or product) goes unnoticed, and the same
        data give different fingerprints on different backends. It costs one
        scan of each table.
        """
        return self._fingerprint


def _normalise(df: pd.DataFrame, schema, name: str, label: str) -> pd.DataFrame:
    """Dtypes as :meth:`Dataset.table` gives them: datetime64[ns] dates, None for missing text.

    Column kinds come from the ibis `schema` of the fetched expression, so no
    value is inspected in Python.
    """
    for col, dtype in zip(schema.names, schema.types):
        s = df[col]
        if dtype.is_string():
            df[col] = s.astype(object).where(s.notna(), None)
        elif dtype.is_date() or (dtype.is_timestamp() and dtype.timezone is None):
            if s.dtype == "datetime64[ns]":
                continue
            try:
                df[col] = pd.to_datetime(s).astype("datetime64[ns]")
            except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime) as exc:
                raise ValueError(
                    f"{name}.{col} holds dates outside what pandas can represent ({exc}); "
                    f"export {name} from {label} and run carecall_eval.contract.validate on it"
                ) from exc
    return df


# ----------------------------------------------------------------------------- connect

def connect(backend, tables: Mapping[str, Any] | None = None, *,
            config: OperatorConfig | str | os.PathLike | None = None,
            name: str | None = None) -> IbisDataset:
    """Open the data contract tables on an ibis backend.

    Parameters
    ----------
    backend : ibis.backends.BaseBackend
        A connected ibis backend, e.g. ``ibis.pyspark.connect(spark)`` or
        ``ibis.postgres.connect(...)``. It stays the caller's:
        :meth:`IbisDataset.close` does not close it.
    tables : mapping of str to (str or ibis.expr.types.Table), optional
        Contract table name -> the backend's table name, or an ibis table
        expression built on `backend` (a qualified table such as
        ``backend.table("activity_daily", database=("cat", "rg"))``, or a
        view-like expression that renames columns). Default: every contract
        table under its own name (``customers``, ``products``, ``activity``,
        ``deposits`` (optional), ``triggers``, ``call_cases``,
        ``call_attempts``, ``sms``, ``rg_events``). Contract tables missing
        from the mapping are looked up under their own name.
    config : OperatorConfig or path, required
        The operator's settings: an :class:`OperatorConfig`, or the path of
        an ``operator.toml`` (or of the directory holding it).
    name : str, optional
        Label for :attr:`IbisDataset.path` (``"<backend>:<name>"``); default
        the backend's current database, if it has one.

    Returns
    -------
    IbisDataset

    Raises
    ------
    ContractError
        Listing every problem found from the schemas: a required table that
        is absent (``missing_table``), a contract column that is absent
        (``required_column``, by table and column), or stored with a type the
        contract does not accept (``type``). An absent optional table
        (``deposits``) is not a problem: ``has("deposits")`` is False.
    TypeError
        If `config` is missing or of the wrong type, or a `tables` value is
        neither a name nor an ibis table.
    ValueError
        If `tables` names a table outside the contract, or an expression is
        bound to another backend.

    Notes
    -----
    Only the schemas are read: no data are scanned. A contract column stored
    with another compatible type is cast in the expression, as the DuckDB
    views cast stored files:

    ========= ==================================================================
    contract  cast from
    ========= ==================================================================
    string    integers
    int       other integer widths, floats and decimals, text
    float     float32, decimals, integers, text
    date      timestamps (with or without time zone), ISO text
    timestamp timestamps with a time zone (to the session's wall-clock time), dates, ISO text
    bool      text (``true``/``false``)
    ========= ==================================================================

    A cast does not check values: a timestamp with a time of day becomes its
    date, and unparseable text is null or an error depending on the backend
    (Spark 4 with ANSI mode raises). Run the full checks of
    :func:`carecall_eval.contract.validate` on a Parquet export to find such
    values. On Spark, set ``spark.sql.session.timeZone`` to the operator's
    time zone if timestamps are stored with a time zone.

    Examples
    --------
    >>> import ibis
    >>> from carecall_eval.contract import connect
    >>> ds = connect(ibis.pyspark.connect(spark), config="operator.toml")  # doctest: +SKIP
    >>> ds = connect(ibis.postgres.connect(host="db", database="rg"),      # doctest: +SKIP
    ...              tables={"activity": "daily_play"}, config="operator.toml", name="rg")
    >>> cohort = carecall_eval.build_cohort(ds)                              # doctest: +SKIP
    """
    import ibis
    from ibis.common.exceptions import TableNotFound

    if config is None:
        raise TypeError("connect(..., config=...) is required: an OperatorConfig or the path "
                        "of an operator.toml (operator, currency, sms_policy_start, ...)")
    if isinstance(config, (str, os.PathLike)):
        config = read_operator_config(Path(config))
    elif not isinstance(config, OperatorConfig):
        raise TypeError(f"config must be an OperatorConfig or a path to operator.toml, "
                        f"not {type(config).__name__}")
    mapping = dict(tables or {})
    unknown = sorted(set(mapping) - set(TABLES))
    if unknown:
        raise ValueError(f"tables: {unknown} are not contract tables; "
                         f"the contract tables are {list(TABLES)}")
    label = f"{backend.name}:{name or _database_label(backend)}"

    problems: list[Problem] = []
    exprs: dict[str, Any] = {}
    for tname, spec in TABLES.items():
        source = mapping.get(tname, tname)
        if isinstance(source, ibis.expr.types.Table):
            owner = source.get_backend()
            if owner is not backend:
                raise ValueError(f"tables[{tname!r}]: the expression is bound to another backend "
                                 f"({owner.name}); build it from the backend passed to connect()")
            expr = source
        elif isinstance(source, str):
            try:
                expr = backend.table(source)
            except TableNotFound:
                if spec.required:
                    given = f"tables[{tname!r}] = {source!r}" if tname in mapping else \
                        f"a table {source!r}"
                    problems.append(Problem(tname, None, "missing_table", 0,
                                            f"no table {source!r} on {label}",
                                            f"{given} (or map it with connect(..., tables="
                                            f"{{{tname!r}: 'your_table'}}))"))
                continue
        else:
            raise TypeError(f"tables[{tname!r}] must be a table name or an ibis table expression, "
                            f"not {type(source).__name__}")
        exprs[tname], found = _conform(tname, expr)
        problems += found
    if problems:
        _raise(label, problems)
    return IbisDataset(backend, exprs, config, label)


def _raise(label: str, problems: list[Problem]) -> None:
    """Raise :class:`ContractError` listing schema problems (with a ValidationReport attached)."""
    report = ValidationReport.from_problems(label, problems)
    n = len(report.problems)
    lines = [f"{label} does not meet the data contract (v{CONTRACT_VERSION}), checked from the "
             f"table schemas: {n} problem{'s' if n != 1 else ''}."]
    for p in report.problems.itertuples(index=False):
        where = f"{p.table}.{p.column}" if p.column else p.table
        lines.append(f"  - {where} [{p.rule}]: found {p.examples}; expected {p.expected}")
    lines.append("Map the contract tables with connect(..., tables={...}) or fix the tables "
                 "(see docs/backends.md and docs/data-contract.md).")
    raise ContractError("\n".join(lines), report=report)


def _database_label(backend) -> str:
    try:
        db = backend.current_database
    except Exception:  # not every backend has databases  # noqa: BLE001
        db = None
    return str(db) if db else "default"


__all__ = ["IBIS_TYPES", "IbisDataset", "connect"]
