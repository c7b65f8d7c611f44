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

Opening checks the contract where the data are: from the tables' schemas,
required tables present, contract columns present, and stored types the
contract accepts (compatible stored types are cast in the ibis expression, see
:func:`connect`); then, with a few aggregate queries on the small tables
(customers, products, triggers, call_cases, call_attempts, sms, rg_events),
their vocabularies, ranges, required values, unique keys and the keys between
them, and dates and times carrying a UTC offset (:mod:`.timezones`).  The large
tables are not scanned.  A mapping (:mod:`.mapping`: column names, codes,
decimal commas, the operator's time zone) is applied to the table expressions
first, exactly as on files.  The rest of the contract (the large tables' values
and keys, row rules) is checked on files by
:func:`carecall_eval.contract.validate`: export an extract to Parquet and
validate that (``docs/backends.md``). The aggregation does not need it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .config import OperatorConfig, read_operator_config
from .hints import causes, column_hint
from .mapping import Mapping as ExportMapping
from .mapping import map_table, read_mapping
from .problems import FILE_RULES, ContractError, Problem, ValidationReport
from .spec import CONTRACT_VERSION, SMALL_TABLES, TABLES, Column, expected_text
from .tables import TablesBase
from .timezones import announce_conversion, carries_offset

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
            found = f"a column {near!r} (names are case-sensitive)" if near else column_hint(col.name, stored)
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
    mapping : carecall_eval.contract.mapping.Mapping or None
        The mapping applied to the tables, if any.
    checks : ValidationReport
        What :func:`connect` checked where the data are (rows per small table;
        engine ``"ibis"`` for the small tables' value checks, ``"schema"`` for
        the large tables).
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

    def __init__(self, backend, exprs: Mapping[str, Any], config: OperatorConfig, label: str,
                 mapping: ExportMapping | None = None, checks: ValidationReport | None = None):
        self.backend = backend
        self.config = config
        self.path = label
        self.tables = tuple(t for t in TABLES if t in exprs)
        self._exprs = dict(exprs)
        self.mapping = mapping
        #: What :func:`connect` checked (no problems: it raises otherwise): rows per small table, how.
        self.checks = checks if checks is not None else ValidationReport.from_problems(label, [])

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
        if self.config.timezone is not None:        # what the data mean depends on these (absent: as before)
            h.update(f"timezone:{self.config.timezone}\0".encode())
        if self.mapping is not None and self.mapping.path.is_file():
            h.update(b"mapping:" + self.mapping.path.read_bytes() + b"\0")
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
            if col.name not in t.columns:      # an optional column that is absent
                continue
            c = t[col.name]
            if col.kind in ("float", "int"):
                aggs[f"sum_{col.name}"] = c.cast("decimal(38, 4)").sum()
            elif col.kind in ("date", "timestamp"):
                aggs[f"min_{col.name}"] = c.min()
                aggs[f"max_{col.name}"] = c.max()
        return t.aggregate(**aggs).to_pyarrow().to_pylist()[0]

    def fingerprint(self) -> str:
        """SHA-256 (hex) of a summary of the tables, computed on the backend.

        Hashes the backend name, :attr:`path`, the operator settings (with
        the time zone and the mapping file, when there are), the tables
        present and, per table, one aggregate: the row count, the sum
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
            name: str | None = None, mapping: ExportMapping | str | os.PathLike | None = None,
            check_values: bool = True) -> IbisDataset:
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
    mapping : Mapping or path, optional
        How the tables differ from the contract (``mapping.toml``, see
        :mod:`carecall_eval.contract.mapping`): column names, codes, decimal
        commas, the operator's time zone.  A path is a ``mapping.toml`` or the
        folder holding it (or its ``operator.toml`` with a ``[mapping]``
        section).  Default: when `config` is a path, the mapping beside it, if
        any.  The mapping's ``source`` and CSV settings other than the decimal
        separator concern files and are not used here.
    check_values : bool, default True
        Check the small tables' values with aggregate queries (vocabularies,
        ranges, required values, unique keys, keys between the small tables,
        offsets without a time zone); False checks the schemas only.

    Returns
    -------
    IbisDataset

    Raises
    ------
    ContractError
        Listing every problem found: a required table that is absent
        (``missing_table``), a contract column that is absent
        (``required_column``, by table and column, with the closest name), or
        stored with a type the contract does not accept (``type``); then, in
        the small tables, ``not_null``, ``vocabulary``, ``range``, ``unique``
        and ``foreign_key`` failures with the failing rows and examples, and
        dates and times with a UTC offset when no time zone is configured
        (``timezone``).  An absent optional table (``deposits``) is not a
        problem: ``has("deposits")`` is False.
    TypeError
        If `config` is missing or of the wrong type, or a `tables` value is
        neither a name nor an ibis table.
    ValueError
        If `tables` names a table outside the contract, or an expression is
        bound to another backend.

    Notes
    -----
    A contract column stored with another compatible type is cast in the
    expression, as the DuckDB views cast stored files:

    ========= ==================================================================
    contract  cast from
    ========= ==================================================================
    string    integers
    int       other integer widths, floats and decimals, text
    float     float32, decimals, integers, text
    date      timestamps, ISO text
    timestamp dates, ISO text
    bool      text (``true``/``false``)
    ========= ==================================================================

    Dates and times with a UTC offset (text such as ``2025-03-01 10:15:00+01:00``,
    or a timestamp type with a time zone) are converted to the operator's local
    time (``timezone`` in ``operator.toml`` or the mapping) and refused without
    it, as on files (:mod:`carecall_eval.contract.timezones`).  On Spark, the
    session time zone is the wall clock of its ``TIMESTAMP`` columns: set
    ``spark.sql.session.timeZone`` to the operator's zone when timestamps are
    stored as such.

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
    config_dir = None
    if isinstance(config, (str, os.PathLike)):
        config_dir = Path(config) if Path(config).is_dir() else Path(config).parent
        config = read_operator_config(Path(config))
    elif not isinstance(config, OperatorConfig):
        raise TypeError(f"config must be an OperatorConfig or a path to operator.toml, "
                        f"not {type(config).__name__}")
    mapping = _read_mapping_arg(mapping, config_dir)
    zone = config.timezone
    if mapping is not None and mapping.timezone is not None:
        if zone is not None and zone != mapping.timezone:
            raise ContractError(f"two time zones: {zone!r} in operator.toml and {mapping.timezone!r} in "
                                f"{mapping.path.name}; set it in one of them")
        zone = mapping.timezone
        config = dataclasses.replace(config, timezone=zone)
    table_map = dict(tables or {})
    unknown = sorted(set(table_map) - set(TABLES))
    if unknown:
        raise ValueError(f"tables: {unknown} are not contract tables; "
                         f"the contract tables are {list(TABLES)}")
    label = f"{backend.name}:{name or _database_label(backend)}"

    problems: list[Problem] = []
    exprs: dict[str, Any] = {}
    converted: list[tuple[str, str, Any]] = []
    mapped: dict[str, Any] = {}
    for tname, spec in TABLES.items():
        source = table_map.get(tname, tname)
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
                    given = f"tables[{tname!r}] = {source!r}" if tname in table_map else \
                        f"a table {source!r}"
                    problems.append(Problem(tname, None, "missing_table", 0,
                                            f"no table {source!r} on {label}",
                                            f"{given} (or map it with connect(..., tables="
                                            f"{{{tname!r}: 'your_table'}}))"))
                continue
        else:
            raise TypeError(f"tables[{tname!r}] must be a table name or an ibis table expression, "
                            f"not {type(source).__name__}")
        tm = mapping.table(tname) if mapping is not None else None
        stored = expr
        expr, found, conv = map_table(expr, tname, tm, zone=zone, backend_name=backend.name,
                                      source=source if isinstance(source, str) else tname,
                                      dialect=mapping.dialect_of(tname) if mapping is not None else None)
        problems += found
        converted += [(tname, c, stored[tm.columns.get(c, c) if tm is not None else c]) for c in conv]
        mapped[tname] = expr
        exprs[tname], found = _conform(tname, expr)
        problems += found
    if problems:
        _raise(label, problems)
    n_rows: dict[str, int] = {}
    if check_values:
        problems += _value_problems(exprs, n_rows)
        if zone is None:
            problems += _offset_problems(mapped)
    if problems:
        _raise(label, problems, values=True)
    if zone is not None:
        _announce(converted, zone, label)
    engines = {t: ("ibis" if check_values and t in SMALL_TABLES else "schema") for t in exprs}
    checks = ValidationReport.from_problems(label, [], n_rows, engines)
    return IbisDataset(backend, exprs, config, label, mapping, checks)


def _read_mapping_arg(mapping, config_dir: Path | None) -> ExportMapping | None:
    if isinstance(mapping, ExportMapping):
        return mapping
    if mapping is None and config_dir is None:
        return None
    if mapping is None:
        assert config_dir is not None
        folder = config_dir
    else:
        p = Path(mapping)
        folder = p if p.is_dir() else p.parent
        if not p.exists():
            raise FileNotFoundError(f"mapping {p} does not exist")
    found, problems = read_mapping(folder)
    if problems:
        raise ContractError(f"the mapping in {folder} cannot be used:\n"
                            + "\n".join(f"  - {p.table}: {p.column or ''} [{p.rule}]: {p.examples}; expected "
                                         f"{p.expected}" for p in problems),
                            report=ValidationReport.from_problems(folder, problems))
    if mapping is not None and found is None:
        raise FileNotFoundError(f"no mapping.toml (or [mapping] section of operator.toml) in {folder}")
    return found


# ----------------------------------------------------------------------------- checks on the small tables

#: Offending rows shown per problem (as validation shows them).
_N_EXAMPLES = 5
#: Rows of a large table looked at for dates written with a UTC offset.
_PROBE_ROWS = 10_000


def _show(v) -> str:
    import datetime as _dt

    if v is None:
        return "null"
    if isinstance(v, _dt.datetime):
        return v.date().isoformat() if v.time() == _dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, _dt.date):
        return v.isoformat()
    return repr(v) if isinstance(v, str) else str(v)


def _examples(t, pred, cols: list[str]) -> str:
    rows = t.filter(pred).select(*cols).limit(_N_EXAMPLES).to_pyarrow().to_pylist()
    return "; ".join(", ".join(f"{c}={_show(r[c])}" for c in cols) for r in rows)


def _literal(col: Column, bound):
    import datetime as _dt

    import ibis

    if isinstance(bound, _dt.date):
        return ibis.timestamp(bound.isoformat() + " 00:00:00") if col.kind == "timestamp" else ibis.date(bound)
    return bound


def _value_problems(exprs: dict, n_rows: dict) -> list[Problem]:
    """Vocabulary, range, not-null, unique and foreign-key problems of the small tables (aggregate queries)."""
    problems: list[Problem] = []
    for name in [t for t in SMALL_TABLES if t in exprs]:
        t, spec = exprs[name], TABLES[name]
        checks = []
        for col in spec.columns:
            if col.name not in t.columns:
                continue
            c = t[col.name]
            if not col.nullable:
                checks.append((col, "not_null", c.isnull()))
            if col.vocabulary is not None:
                checks.append((col, "vocabulary", c.notnull() & ~c.isin(list(col.vocabulary))))
            bounds = []
            if col.min is not None:
                bounds.append(c < _literal(col, col.min))
            if col.max is not None:
                bounds.append(c > _literal(col, col.max))
            if bounds:
                pred = bounds[0] if len(bounds) == 1 else (bounds[0] | bounds[1])
                checks.append((col, "range", c.notnull() & pred))
        aggs = {f"c{i}": pred.ifelse(1, 0).sum() for i, (_, _, pred) in enumerate(checks)}
        aggs["n"] = t.count()
        row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        n_rows[name] = int(row["n"])
        key = [k for k in spec.key if k in t.columns]
        for i, (col, rule, pred) in enumerate(checks):
            n = int(row[f"c{i}"] or 0)
            if n:
                show = list(dict.fromkeys([*key, col.name]))
                problems.append(Problem(name, col.name, rule, n, _examples(t, pred, show),
                                        expected_text(col, rule)))
        uniques: list[tuple[tuple[str, ...], str, str]] = [
            ((col.name,), expected_text(col, "unique"), col.name) for col in spec.columns if col.unique]
        if spec.unique_together:
            k = ", ".join(spec.unique_together)
            uniques.append((spec.unique_together, f"one row per ({k})", k))
        for cols, expected, where in uniques:
            notnull = t.filter([t[c].notnull() for c in cols])
            dup = notnull.group_by(list(cols)).aggregate(_k=notnull.count()).filter(lambda d: d._k > 1)
            n = dup.aggregate(n=dup._k.sum()).to_pyarrow().to_pylist()[0]["n"] or 0
            if n:
                ex = "; ".join(", ".join(f"{c}={_show(r[c])}" for c in cols)
                               for r in dup.limit(_N_EXAMPLES).to_pyarrow().to_pylist())
                problems.append(Problem(name, where, "unique", int(n), ex, expected))
        for col in spec.columns:
            if not col.references or col.name not in t.columns:
                continue
            ref_table, ref_col = col.references
            if ref_table not in exprs or ref_table not in SMALL_TABLES:
                continue
            parent = exprs[ref_table].select(_ref=exprs[ref_table][ref_col]).distinct()
            orphans = t.filter(t[col.name].notnull()).anti_join(parent, t[col.name] == parent._ref)
            n = orphans.count().to_pyarrow().as_py()
            if n:
                show = list(dict.fromkeys([*key, col.name]))
                rows = orphans.select(*show).limit(_N_EXAMPLES).to_pyarrow().to_pylist()
                ex = "; ".join(", ".join(f"{c}={_show(r[c])}" for c in show) for r in rows)
                problems.append(Problem(name, col.name, "foreign_key", int(n), ex, expected_text(col, "foreign_key")))
    return problems


def _text_time_columns(t, name: str) -> list[str]:
    schema = t.schema()
    return [c.name for c in TABLES[name].columns if c.kind in ("date", "timestamp") and c.name in schema
            and schema[c.name].is_string()]


def _offset_problems(mapped: dict) -> list[Problem]:
    """Dates and times written with a UTC offset, no time zone configured: refused (``timezone``).

    Looked for before the contract's casts, in the text the backend holds (`mapped`: each table as
    mapped, before the casts; small tables whole, the first rows of the large ones).
    """
    from .timezones import offset_problem

    problems = []
    for name, raw in mapped.items():
        cols = _text_time_columns(raw, name)
        if not cols:
            continue
        rel = raw.limit(_PROBE_ROWS) if TABLES[name].large else raw
        row = rel.aggregate(**{f"c{i}": carries_offset(rel[c]).ifelse(1, 0).sum()
                               for i, c in enumerate(cols)}).to_pyarrow().to_pylist()[0]
        key = [k for k in TABLES[name].key if k in raw.columns]
        for i, c in enumerate(cols):
            n = int(row[f"c{i}"] or 0)
            if n:
                problems.append(offset_problem(name, c, n, _examples(rel, carries_offset(rel[c]),
                                                                      list(dict.fromkeys([*key, c])))))
    return problems


def _announce(converted: list, zone: str, label: str) -> None:
    """Say once which columns carried offsets (the first rows of each converted column are looked at)."""
    from .timezones import is_zoned_type

    said = []
    for tname, col, stored in converted:
        if is_zoned_type(stored.type()):
            said.append(f"{tname}.{col}")
            continue
        probe = stored.name("v").as_table().limit(1000)
        if probe.filter(carries_offset(probe.v)).count().to_pyarrow().as_py():
            said.append(f"{tname}.{col}")
    announce_conversion(said, zone, label)


def _raise(label: str, problems: list[Problem], values: bool = False) -> None:
    """Raise :class:`ContractError` listing the problems (with a ValidationReport attached)."""
    report = ValidationReport.from_problems(label, problems)
    n = len(report.problems)
    how = ("the table schemas and the small tables' values" if values else "the table schemas")
    lines = [f"{label} does not meet the data contract (v{CONTRACT_VERSION}), checked from {how}: "
             f"{n} problem{'s' if n != 1 else ''}."]
    found = causes(report.problems)
    covered = {i for c in found if c.collapses for i in c.rows}
    lines += [f"  * {c.line}." for c in found if c.collapses]
    for i, p in enumerate(report.problems.itertuples(index=False)):
        if i in covered:
            continue
        where = f"{p.table}.{p.column}" if p.column else p.table
        count = f"{p.n_failing:,} failing rows; " if p.rule not in FILE_RULES and p.n_failing else ""
        lines.append(f"  - {where} [{p.rule}]: {count}found {p.examples}; expected {p.expected}")
    lines += [f"  hint: {c.line}." for c in found if not c.collapses]
    lines.append("Map the contract tables with connect(..., tables={...}) and the names and codes with a "
                 "mapping (mapping=...), or fix the tables (see docs/backends.md, docs/mapping.md and "
                 "docs/data-contract.md).")
    raise ContractError("\n".join(lines), report=report)


def _database_label(backend) -> str:
    try:
        db = backend.current_database
    except Exception:  # not every backend has databases  # noqa: BLE001
        db = None
    return str(db) if db else "default"


__all__ = ["IBIS_TYPES", "IbisDataset", "connect"]
