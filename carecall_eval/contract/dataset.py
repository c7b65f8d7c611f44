"""Open a data directory as a :class:`Dataset` of DuckDB views (:func:`open_dataset`; :func:`load`
in :mod:`.validation` opens and validates).

Every table is a DuckDB VIEW named exactly as the table over its Parquet or CSV
file, read through one connection (:attr:`Dataset.con`). Nothing is read into
memory until a query asks for it: the large tables (activity, deposits) are
meant to be aggregated in SQL (:meth:`Dataset.relation`), the small ones may be
fetched as pandas DataFrames (:meth:`Dataset.table`).

Stored types are mapped onto the contract's types once, here: a column stored
with a compatible type (a timestamp at midnight for a date, an integer for a
float, ISO text in a CSV) is cast in the view; an incompatible one is reported
by :func:`~carecall_eval.contract.validate`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from .config import CONFIG_FILE, OperatorConfig, load_operator_config
from .files import check_source
from .mapping import MAPPING_FILE, Dialect, Mapping, map_table, read_mapping, resolve_source
from .problems import Problem
from .schemas import quote_ident, sql_literal
from .spec import TABLES, Column
from .tables import TablesBase
from .timezones import OFFSET_PATTERN, announce_conversion, is_zoned_type

_INTS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
         "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}


def _family(duck_type: str) -> str:
    t = duck_type.upper()
    if t == "VARCHAR":
        return "text"
    if t.startswith("ENUM"):
        return "enum"
    if t in _INTS:
        return "int"
    if t in ("FLOAT", "DOUBLE") or t.startswith("DECIMAL"):
        return "float"
    if t == "DATE":
        return "date"
    if t in _TIMESTAMPS:
        return "timestamp"
    if t == "BOOLEAN":
        return "bool"
    if t in ('"NULL"', "NULL"):
        return "null"
    return "other"


# family of the stored column -> how it maps onto each contract kind:
# None = incompatible; "" = exact (or lossless) cast; otherwise a SQL predicate
# over {r} (the stored value, non-null) that is TRUE when the value cannot be
# converted exactly.
_NEVER_LOSSY = ""
_COMPAT: dict[str, dict[str, str | None]] = {
    "string": {"text": _NEVER_LOSSY, "enum": _NEVER_LOSSY, "int": _NEVER_LOSSY},
    "int": {"int": "TRY_CAST({r} AS BIGINT) IS NULL",
            "float": "(TRY_CAST({r} AS BIGINT) IS NULL OR {r} <> trunc({r}))",
            "text": "(TRY_CAST({r} AS BIGINT) IS NULL OR TRY_CAST({r} AS DOUBLE) <> "
                    "TRY_CAST({r} AS BIGINT))"},
    "float": {"float": _NEVER_LOSSY, "int": _NEVER_LOSSY,
              "text": "TRY_CAST({r} AS DOUBLE) IS NULL"},
    "date": {"date": _NEVER_LOSSY,
             "timestamp": "CAST({r} AS DATE) <> {r}",
             "text": "(TRY_CAST({r} AS DATE) IS NULL OR "
                     "TRY_CAST({r} AS TIMESTAMP) <> TRY_CAST({r} AS DATE))"},
    "timestamp": {"timestamp": _NEVER_LOSSY, "date": _NEVER_LOSSY,
                  "text": "TRY_CAST({r} AS TIMESTAMP) IS NULL"},
    # text booleans: true/false, t/f, 1/0 (any case); DuckDB would also take yes/no/y/n, which the contract refuses
    "bool": {"bool": _NEVER_LOSSY, "text": "lower(trim({r})) NOT IN ('true', 'false', 't', 'f', '1', '0')"},
}


@dataclass(frozen=True)
class ColumnPlan:
    """How a stored column is mapped onto its contract column.

    Attributes
    ----------
    column : Column
        The contract column.
    stored_type : str or None
        DuckDB type as stored; None if the column is missing.
    status : {"ok", "cast", "bad", "missing"}
        ``ok``: stored as the contract type. ``cast``: cast in the view.
        ``bad``: incompatible type. ``missing``: absent from the file.
    lossy : str
        For ``cast`` columns, a SQL predicate over ``{r}`` true when a stored
        value cannot be converted exactly ("" if that cannot happen).
    found_as : str or None
        For a missing column, a name that differs only in case.
    """

    column: Column
    stored_type: str | None
    status: Literal["ok", "cast", "bad", "missing"]
    lossy: str = ""
    found_as: str | None = None

    def view_expr(self, strict: bool = True) -> str | None:
        """Expression replacing the stored column in a view (None: keep as is)."""
        c, t = quote_ident(self.column.name), self.column.duckdb_type
        if self.status == "cast":
            return f"{'CAST' if strict else 'TRY_CAST'}({c} AS {t})"
        if self.status == "bad" and not strict:
            return f"CAST(NULL AS {t})"
        return None


def plan_column(col: Column, stored_type: str | None, found_as: str | None = None) -> ColumnPlan:
    """Decide how a stored column maps onto contract column `col`."""
    if stored_type is None:
        return ColumnPlan(col, None, "missing", found_as=found_as)
    fam = _family(stored_type)
    if stored_type.upper() == col.duckdb_type:
        return ColumnPlan(col, stored_type, "ok")
    if fam == "null":  # an all-null column written without a type
        return ColumnPlan(col, stored_type, "cast")
    lossy = _COMPAT[col.kind].get(fam)
    if lossy is None:
        return ColumnPlan(col, stored_type, "bad")
    return ColumnPlan(col, stored_type, "cast", lossy)


@dataclass(frozen=True)
class Source:
    """Where a table is stored.

    Attributes
    ----------
    table : str
        Contract table name.
    format : {"parquet", "csv"}
    files : tuple of Path
        The file, or the part files of a Parquet directory, sorted.
    name : str
        File or directory name inside the data directory (or the mapping's ``source``).
    dialect : Dialect or None
        How a CSV file is written, from ``mapping.toml`` (every column is then read as text);
        None: detected by DuckDB.
    view : str or None
        The DuckDB view presenting the file as mapped (:func:`~.mapping.map_table`), when
        there is a mapping or a time-zone conversion; None: the file is read directly.
    """

    table: str
    format: Literal["parquet", "csv"]
    files: tuple[Path, ...]
    name: str
    dialect: Dialect | None = None
    view: str | None = None

    def sql(self, csv_text_columns: tuple[str, ...] = ()) -> str:
        """The relation reading this source: the mapped view, or the DuckDB table function over the files."""
        if self.view is not None:
            return quote_ident(self.view)
        return self.file_sql(csv_text_columns)

    def file_sql(self, csv_text_columns: tuple[str, ...] = ()) -> str:
        """The DuckDB table function reading the files as stored."""
        files = ", ".join(sql_literal(str(f)) for f in self.files)
        if self.format == "parquet":
            return f"read_parquet([{files}])"
        if self.dialect is not None:
            return f"read_csv([{files}], {self.dialect.read_csv_options()})"
        # contract columns are read as text and cast in the view: explicit types,
        # never sniffed, and unparseable cells can be reported rather than fatal
        types = ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in csv_text_columns)
        opts = f", types = {{{types}}}" if types else ""
        return f"read_csv({files}, header = true{opts})"


def _mapped_source(path: Path, name: str, pattern: str, mapping: Mapping) -> tuple[Source | None, Problem | None]:
    files = resolve_source(path, pattern)
    if not files:
        return None, Problem(name, None, "missing_table", 0, f"no file matches source = {pattern!r} in {path}",
                             f"a file, folder of Parquet parts or glob under [tables.{name}] in {MAPPING_FILE}")
    kinds = {"parquet" if f.suffix.lower() == ".parquet" else "csv" for f in files}
    if len(kinds) > 1:
        return None, Problem(name, None, "ambiguous_file", 0, ", ".join(f.name for f in files[:6]),
                             f"source = {pattern!r} matching Parquet or CSV files, not both")
    fmt: Literal["parquet", "csv"] = "parquet" if kinds.pop() == "parquet" else "csv"
    return Source(name, fmt, files, pattern, mapping.dialect_of(name) if fmt == "csv" else None), None


def discover(path: Path, mapping: Mapping | None = None) -> tuple[dict[str, Source], list[Problem]]:
    """Find each contract table's file in data directory `path`.

    A table is ``<name>.parquet`` (a file, or a directory of Parquet part files),
    ``<name>/`` (a directory of Parquet part files) or ``<name>.csv``, unless
    `mapping` names its ``source`` (a file, folder or glob).

    Returns
    -------
    sources : dict of str to Source
    problems : list of Problem
        ``missing_table`` for an absent required table, ``ambiguous_file`` when
        a table has more than one file.
    """
    sources: dict[str, Source] = {}
    problems: list[Problem] = []
    for name, spec in TABLES.items():
        tm = mapping.table(name) if mapping is not None else None
        if mapping is not None and tm is not None and tm.source is not None:
            src, problem = _mapped_source(path, name, tm.source, mapping)
            if src is not None:
                sources[name] = src
            elif problem is not None:
                problems.append(problem)
            continue
        found: list[Source] = []
        for cand in (path / f"{name}.parquet", path / name):
            if cand.is_file():
                found.append(Source(name, "parquet", (cand,), cand.name))
            elif cand.is_dir():
                parts = tuple(sorted(cand.glob("*.parquet")))
                if parts:
                    found.append(Source(name, "parquet", parts, cand.name + "/"))
        csv = path / f"{name}.csv"
        if csv.is_file():
            found.append(Source(name, "csv", (csv,), csv.name,
                                mapping.dialect_of(name) if mapping is not None else None))
        if len(found) > 1:
            problems.append(Problem(name, None, "ambiguous_file", 0,
                                    ", ".join(s.name for s in found),
                                    f"exactly one of {name}.parquet or {name}.csv"))
        elif found:
            sources[name] = found[0]
        elif spec.required:
            problems.append(Problem(name, None, "missing_table", 0, f"no {name}.* in {path}",
                                    f"a file {name}.parquet or {name}.csv"))
    return sources, problems


class Dataset(TablesBase):
    """A data directory opened through one DuckDB connection.

    Create with :func:`~carecall_eval.contract.load`. Each present table is a DuckDB VIEW named as the
    table, with contract columns in contract types and extra columns kept.

    Attributes
    ----------
    path : pathlib.Path
        The data directory.
    con : duckdb.DuckDBPyConnection
        The connection holding the views; query it with SQL such as
        ``ds.con.sql("SELECT ... FROM activity JOIN products USING (product)")``.
    config : OperatorConfig
        Settings from ``operator.toml``.
    tables : tuple of str
        Names of the tables present, in contract order.
    """

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection,
                 config: OperatorConfig | None, sources: dict[str, Source],
                 plans: dict[str, dict[str, ColumnPlan]], problems: list[Problem],
                 config_path: Path, stored: dict[str, dict[str, str]] | None = None,
                 mapping: Mapping | None = None, backend=None):
        self.path = path
        self.mapping = mapping
        if backend is not None:
            self.__dict__["backend"] = backend      # the ibis backend that built the mapped views
        self.con = con
        self.config = config
        self.tables = tuple(t for t in TABLES if t in sources)
        self._sources = sources
        self._plans = plans
        self._stored = stored or {}  # table -> {stored column: stored DuckDB type}
        self._open_problems = problems
        self._config_path = config_path

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    @cached_property
    def backend(self):
        """The ibis backend over this dataset's DuckDB connection (the tables are its views)."""
        import ibis

        return ibis.duckdb.from_connection(self.con)

    def upload(self, name: str, table):
        """A pyarrow Table as a DuckDB temporary table `name` (see :meth:`TablesBase.upload`)."""
        view = f"_{name}_arrow"
        self.con.register(view, table)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS SELECT * FROM {quote_ident(view)}")
        finally:
            self.con.unregister(view)
        return self.backend.table(name)

    def drop_upload(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")

    def ibis_table(self, name: str):
        """Table `name` as an ibis expression: how the aggregation layer reads every backend."""
        self._check_present(name)
        return self.backend.table(name)

    def relation(self, name: str) -> duckdb.DuckDBPyRelation:
        """A lazy DuckDB relation over table `name`, for set-based queries.

        Use this for ``activity`` and ``deposits``: aggregate in DuckDB and fetch
        only the result, e.g.
        ``ds.relation("activity").aggregate("customer_id, sum(wagered) AS w").df()``.
        """
        self._check_present(name)
        return self.con.sql(f"SELECT * FROM {quote_ident(name)}")

    _large_hint = "aggregate it with dataset.ibis_table({name!r}), dataset.relation({name!r}) or dataset.con.sql(...)"

    def _fetch(self, name: str) -> pd.DataFrame:
        df = self.con.sql(f"SELECT * FROM {quote_ident(name)}").df()
        for col in df.columns:
            dtype = df[col].dtype
            if dtype.kind == "M" and getattr(dtype, "tz", None) is None and dtype != "datetime64[ns]":
                try:
                    df[col] = df[col].astype("datetime64[ns]")
                except (OverflowError, ValueError) as exc:
                    raise ValueError(
                        f"{name}.{col} holds dates outside what pandas can represent "
                        f"({exc}); run carecall_eval.contract.validate on {self.path}"
                    ) from exc
        return df

    def _count(self, name: str) -> int:
        return self.con.sql(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0][0]

    def _span(self):
        return self.con.sql("SELECT min(date), max(date) FROM activity").fetchall()[0]

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(b"carecall_eval data contract v1\0")
        entries = [(s.name, f) for t, s in self._sources.items() for f in s.files]
        entries.append((CONFIG_FILE, self._config_path))
        if self.mapping is not None and self.mapping.path.name == MAPPING_FILE:
            entries.append((MAPPING_FILE, self.mapping.path))
        for name, file in entries:
            h.update(f"{name}:{file.name}\0".encode())
            with open(file, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
        return h.hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the input files' bytes and ``operator.toml``.

        Stable across runs and machines for the same files; it changes when any
        byte, file name or the set of tables changes.
        """
        return self._fingerprint

    @property
    def open_problems(self) -> list[Problem]:
        """Problems found when opening: missing, ambiguous or unreadable files, ``operator.toml``."""
        return list(self._open_problems)

    def plan(self, name: str) -> dict[str, ColumnPlan]:
        """How each contract column of `name` is read (see :class:`ColumnPlan`)."""
        self._check_present(name)
        return dict(self._plans[name])

    def source(self, name: str) -> Source:
        """Where table `name` is stored (format and files)."""
        self._check_present(name)
        return self._sources[name]

    def stored_columns(self, name: str) -> dict[str, str]:
        """Every column of table `name` as stored (extra columns too), with its stored DuckDB type."""
        self._check_present(name)
        return dict(self._stored.get(name, {}))

    def source_sql(self, name: str) -> str:
        """The DuckDB table function reading table `name` as stored."""
        self._check_present(name)
        src = self._sources[name]
        text_cols = tuple(c for c, p in self._plans[name].items() if p.status != "missing") \
            if src.format == "csv" else ()
        return src.sql(text_cols)


#: DuckDB memory limit when neither ``memory_limit`` nor ``CARECALL_MEMORY_LIMIT`` is given.
DEFAULT_MEMORY_LIMIT = "4GB"


_SPILL_PREFIX = "carecall_duckdb_pid"


def _remove_stale_spill() -> None:
    """Spill folders of runs that were killed (SIGKILL: no finaliser ran) hold rows of the data: remove them."""
    base = Path(tempfile.gettempdir())
    try:
        entries = list(base.glob(f"{_SPILL_PREFIX}*_*"))
    except OSError:
        return
    for d in entries:
        try:
            pid = int(d.name[len(_SPILL_PREFIX):].split("_", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or not d.is_dir() or d.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


def _connect(memory_limit: str | None) -> tuple[duckdb.DuckDBPyConnection, str]:
    _remove_stale_spill()
    tmp = tempfile.mkdtemp(prefix=f"{_SPILL_PREFIX}{os.getpid()}_")
    limit = memory_limit or os.environ.get("CARECALL_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
    # bounded memory: joins and aggregations larger than the limit spill to the temporary directory; no
    # DuckDB progress bar (it writes to stdout, which a command's JSON or CSV output may be; progress is ours)
    config = {"temp_directory": tmp, "memory_limit": str(limit)}
    try:
        con = duckdb.connect(":memory:", config=config)
        con.execute("SET enable_progress_bar = false")
        # the memory a query frees goes back to the system as it runs, not when the allocator gets round to it:
        # 1M customers, the cohort's shared pass peaked at 3.0 GB instead of 3.9-4.2 GB
        con.execute("SET allocator_background_threads = true")
        return con, tmp
    except duckdb.Error as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"memory limit {limit!r} is not a DuckDB memory size such as '4GB' or '512MB' "
                         f"({exc})") from None


def _stored_columns(con: duckdb.DuckDBPyConnection, src: Source) -> dict[str, str]:
    if src.view is not None or src.format == "parquet":
        rel = con.sql(f"SELECT * FROM {src.sql()} LIMIT 0")
    elif src.dialect is not None:
        one = Source(src.table, src.format, src.files[:1], src.name, src.dialect)
        rel = con.sql(f"SELECT * FROM {one.file_sql()} LIMIT 0")
    else:
        rel = con.sql(f"SELECT * FROM read_csv({sql_literal(str(src.files[0]))}, header = true, "
                      f"all_varchar = true) LIMIT 0")
    return {c: str(t) for c, t in zip(rel.columns, rel.types)}


#: Rows of a converted column looked at to say which columns carry offsets (the conversion covers every row).
_PROBE_ROWS = 1000


def _operator_zone(config: OperatorConfig | None, mapping: Mapping | None
                   ) -> tuple[OperatorConfig | None, str | None, list[Problem]]:
    """The operator's time zone: ``operator.toml``'s ``timezone``, or the mapping's (they must agree)."""
    zone = config.timezone if config is not None else None
    if mapping is None or mapping.timezone is None:
        return config, zone, []
    if zone is not None and zone != mapping.timezone:
        return config, None, [Problem(MAPPING_FILE, "timezone", "timezone", 1,
                                      f"{CONFIG_FILE}: {zone!r}, {mapping.path.name}: {mapping.timezone!r}",
                                      "one time zone (set it in one of the two files)")]
    if config is not None:
        config = dataclasses.replace(config, timezone=mapping.timezone)
    return config, mapping.timezone, []


def _map_source(con, backend, name: str, src: Source, stored: dict[str, str], mapping: Mapping | None,
                zone: str | None) -> tuple[Source, list[Problem], list[str]]:
    """Present `src` through :func:`~.mapping.map_table` as a view; returns the source reading it."""
    import ibis

    text_cols = () if src.dialect is not None or src.format != "csv" else \
        tuple(c for c in stored if c in TABLES[name].column_names)
    raw_name = f"__raw_{name}"
    con.execute(f"CREATE OR REPLACE VIEW {quote_ident(raw_name)} AS SELECT * FROM {src.file_sql(text_cols)}")
    raw = backend.table(raw_name)
    tm = mapping.table(name) if mapping is not None else None
    dialect = mapping.dialect_of(name) if mapping is not None else None
    mapped, problems, converted = map_table(raw, name, tm, zone=zone, backend_name="duckdb", source=src.name,
                                            dialect=dialect)
    if mapped is raw:
        con.execute(f"DROP VIEW {quote_ident(raw_name)}")
        return src, problems, []
    view = f"__mapped_{name}"
    con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {ibis.to_sql(mapped, dialect='duckdb')}")
    announced = []
    for c in converted:
        stored_as = (tm.columns.get(c, c) if tm is not None else c)
        if is_zoned_type(stored.get(stored_as, "")):
            announced.append(f"{name}.{c}")
            continue
        n = con.sql(f"SELECT count(*) FROM (SELECT {quote_ident(stored_as)} AS v FROM {quote_ident(raw_name)} "
                    f"LIMIT {_PROBE_ROWS}) WHERE regexp_matches(v, {sql_literal(OFFSET_PATTERN)})").fetchall()[0][0]
        if n:
            announced.append(f"{name}.{c}")
    return dataclasses.replace(src, view=view), problems, announced


def _check_directory(path: Path) -> None:
    """A data directory that does not exist, is a file, or cannot be listed: an InputError naming it."""
    from ..errors import InputError, PathNotFoundError

    if not path.exists():
        raise PathNotFoundError(f"data directory {path} does not exist; give the folder that holds the tables")
    if not path.is_dir():
        raise InputError(f"data directory {path} is a file, not a folder; give the folder that holds the tables")
    try:
        next(iter(os.scandir(path)), None)
    except PermissionError:
        raise InputError(f"cannot read data directory {path}: permission denied; fix its permissions (the user "
                         "running carecall_eval must be able to list it and read its files)") from None


def open_dataset(path: str | Path, *, memory_limit: str | None = None
                 ) -> tuple[Dataset, list[Problem]]:
    """Open a data directory without validating its contents.

    Returns the dataset (with views for every readable table) and the problems
    that stop it from being used: missing or ambiguous files, unreadable files,
    a missing or malformed ``operator.toml`` or ``mapping.toml``, timestamps
    stored with a time zone when the operator's is not set.
    :func:`~carecall_eval.contract.load` raises on them;
    :func:`~carecall_eval.contract.validate` reports them with the rest.

    With a mapping (``mapping.toml`` beside ``operator.toml``, or its ``[mapping]``
    section), or with the operator's ``timezone`` set, each table is read through
    a view applying :func:`~carecall_eval.contract.mapping.map_table` (names,
    values, decimal separator, local time); the files are never rewritten.
    Converting offsets to local time is said once, with a
    :class:`~carecall_eval.errors.DataWarning`.
    """
    path = Path(path)
    _check_directory(path)
    con, tmp = _connect(memory_limit)
    config_path = path / CONFIG_FILE
    config, problems = load_operator_config(config_path)
    mapping, mapping_problems = read_mapping(path)
    problems += mapping_problems
    config, zone, zone_problems = _operator_zone(config, mapping)
    problems += zone_problems
    sources, found = discover(path, mapping)
    problems = found + problems
    plans: dict[str, dict[str, ColumnPlan]] = {}
    stored_types: dict[str, dict[str, str]] = {}
    backend = None
    converted: list[str] = []
    for name, src in list(sources.items()):
        bad = check_source(con, src)      # an empty, duplicated, ragged or unreadable file: named, table not read
        if bad:
            problems += bad
            del sources[name]
            continue
        try:
            stored = _stored_columns(con, src)
            zoned = any(is_zoned_type(t) for t in stored.values())
            if mapping is not None or zone is not None or zoned:
                if backend is None:
                    import ibis

                    backend = ibis.duckdb.from_connection(con)
                src, found, conv = _map_source(con, backend, name, src, stored, mapping, zone)
                problems += found
                converted += conv
                sources[name] = src
                stored = _stored_columns(con, src)
        except duckdb.Error as exc:
            problems.append(Problem(name, None, "unreadable_file", 0,
                                    f"{src.name}: {str(exc).splitlines()[0]}",
                                    "a readable Parquet file or CSV with a header row"
                                    + (f" as {MAPPING_FILE} describes it (delimiter, encoding)" if mapping else "")))
            del sources[name]
            continue
        if src.format == "csv":  # contract columns are read as text, then cast
            stored = {c: ("VARCHAR" if c in TABLES[name].column_names else t)
                      for c, t in stored.items()}
        stored_types[name] = stored
        lower = {c.lower(): c for c in stored}
        plans[name] = {
            col.name: plan_column(col, stored.get(col.name),
                                  None if col.name in stored else lower.get(col.name.lower()))
            for col in TABLES[name].columns
        }
        ds_cols = tuple(c for c, p in plans[name].items() if p.status != "missing")
        source_sql = src.sql(ds_cols if src.format == "csv" else ())
        replace = [f"{expr} AS {quote_ident(c)}" for c, p in plans[name].items()
                   if (expr := p.view_expr(strict=True)) is not None]
        select = f"* REPLACE ({', '.join(replace)})" if replace else "*"
        con.execute(f"CREATE VIEW {quote_ident(name)} AS SELECT {select} FROM {source_sql}")
    if converted and zone is not None:
        announce_conversion(converted, zone, str(path))
    ds = Dataset(path, con, config, sources, plans, problems, config_path, stored_types, mapping, backend)
    weakref.finalize(ds, shutil.rmtree, tmp, True)
    return ds, problems


__all__ = ["Dataset", "ColumnPlan", "Source", "open_dataset", "discover", "plan_column"]
