"""An operator's own export onto the data contract: ``mapping.toml`` (:func:`read_mapping`, :func:`map_table`).

A warehouse export rarely matches the contract as it is: other file names, upper-case headers,
``cust_id`` for ``customer_id``, ``;`` separators with decimal commas, ``HIGH_LOSS`` for
``high_loss``, timestamps with offsets.  ``mapping.toml`` beside ``operator.toml`` (or a
``[mapping]`` section of ``operator.toml``) says how to read it, and the data are read through it;
the operator's files are never rewritten::

    timezone = "Europe/Stockholm"        # the operator's zone (timestamps with offsets are converted)

    [csv]                                # how the CSV files are written (every table)
    delimiter = ";"
    decimal = ","
    encoding = "utf-8"

    [tables.call_cases]
    source = "dwh_cases_*.csv"           # a file, a folder of Parquet parts or a glob, relative to the folder
    [tables.call_cases.columns]          # contract column = column in the file
    customer_id = "CUST_ID"
    [tables.call_cases.values.trigger]   # value in the file = contract value
    HIGH_LOSS = "high_loss"

A table's own ``[tables.NAME.csv]`` overrides the shared ``[csv]`` settings.  Tables left out are
found as usual (``NAME.parquet``, ``NAME/`` or ``NAME.csv``) and still get the time-zone rule and
the shared CSV settings.

The mapping is applied by one function, :func:`map_table`, written as an ibis expression: on files
it is compiled into the DuckDB view of each table (:mod:`.dataset`), on Spark or a warehouse it is
part of the table expression (:func:`~carecall_eval.contract.connect`).  ``carecall-eval map init
DIR`` writes a starter mapping from the files (:mod:`.guess`); ``carecall-eval map show DIR`` shows
each table as mapped.
"""
from __future__ import annotations

import glob as _glob
import tomllib
from collections.abc import Mapping as Table
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .config import CONFIG_FILE
from .hints import close_match
from .problems import Problem
from .spec import TABLES
from .timezones import is_zoned_type, local_time_columns, offset_problem, to_local, zone_problem

__all__ = ["MAPPING_FILE", "Dialect", "TableMapping", "Mapping", "read_mapping", "parse_mapping", "map_table",
           "resolve_source"]

MAPPING_FILE = "mapping.toml"
_ENCODINGS = ("utf-8", "utf-16", "latin-1")
_DIALECT_KEYS = ("delimiter", "decimal", "thousands", "encoding", "header", "null")
_TABLE_KEYS = ("source", "columns", "values", "csv")


@dataclass(frozen=True)
class Dialect:
    """How a CSV file is written.

    Attributes
    ----------
    delimiter : str or None
        Field separator (``","``, ``";"``, ``"\\t"``, ``"|"``); None: detected by DuckDB.
    decimal : {".", ","}
        Decimal separator of numbers written as text.
    thousands : str
        Digit-group separator removed from numbers before they are read ("" for none).
    encoding : {"utf-8", "utf-16", "latin-1"}
    header : bool
        Whether the first line holds the column names (it must: the mapping names columns).
    null : tuple of str
        Cells read as missing (default: the empty cell).
    """

    delimiter: str | None = None
    decimal: str = "."
    thousands: str = ""
    encoding: str = "utf-8"
    header: bool = True
    null: tuple[str, ...] = ("",)

    def read_csv_options(self) -> str:
        """DuckDB ``read_csv`` options for this dialect (every column read as text)."""
        from .schemas import sql_literal

        opts = [f"header = {'true' if self.header else 'false'}", "all_varchar = true",
                f"encoding = {sql_literal(self.encoding)}"]
        if self.delimiter is not None:
            opts.append(f"delim = {sql_literal(self.delimiter)}")
        opts.append("nullstr = [" + ", ".join(sql_literal(v) for v in self.null) + "]")
        return ", ".join(opts)


@dataclass(frozen=True)
class TableMapping:
    """How one contract table is read from the export.

    Attributes
    ----------
    table : str
        Contract table name.
    source : str or None
        File, folder of Parquet parts or glob, relative to the data folder; None: the usual name.
    columns : Mapping of str to str
        Contract column -> column in the file (only those that differ).
    values : Mapping of str to Mapping of str to str
        Contract column -> {value in the file: contract value}; other values are kept as they are.
    dialect : Dialect
        The CSV dialect (the shared ``[csv]`` with this table's overrides).
    """

    table: str
    source: str | None = None
    columns: Table[str, str] = field(default_factory=dict)
    values: Table[str, Table[str, str]] = field(default_factory=dict)
    dialect: Dialect = Dialect()


@dataclass(frozen=True)
class Mapping:
    """A parsed ``mapping.toml`` (or ``[mapping]`` section of ``operator.toml``).

    Attributes
    ----------
    path : Path
        The file it was read from.
    timezone : str or None
        The operator's IANA time zone, if the mapping sets it.
    dialect : Dialect
        The shared CSV dialect.
    tables : Mapping of str to TableMapping
        Per contract table, those the mapping mentions.
    """

    path: Path
    timezone: str | None = None
    dialect: Dialect = Dialect()
    tables: Table[str, TableMapping] = field(default_factory=dict)

    def table(self, name: str) -> TableMapping | None:
        """The table's mapping, None when the mapping does not mention it."""
        return self.tables.get(name)

    def dialect_of(self, name: str) -> Dialect:
        """The CSV dialect of table `name` (its own, else the shared one)."""
        tm = self.tables.get(name)
        return tm.dialect if tm is not None else self.dialect


# ----------------------------------------------------------------------------- reading

def _where(section: str, *keys: str) -> str:
    return ".".join(k for k in (section, *keys) if k)


def _parse_dialect(values: Any, where: str, base: Dialect, problems: list[Problem], file: str) -> Dialect:
    def bad(key: str, found: Any, expected: str) -> None:
        problems.append(Problem(file, _where(where, key), "mapping", 1, f"{key} = {found!r}", expected))

    if not isinstance(values, dict):
        bad("", values, "a table of CSV settings (delimiter, decimal, thousands, encoding, header, null)")
        return base
    out: dict[str, Any] = {"delimiter": base.delimiter, "decimal": base.decimal, "thousands": base.thousands,
           "encoding": base.encoding, "header": base.header, "null": base.null}
    for key, v in values.items():
        if key not in _DIALECT_KEYS:
            near = close_match(key, _DIALECT_KEYS)
            bad(key, v, f"one of {', '.join(_DIALECT_KEYS)}" + (f" (did you mean {near!r}?)" if near else ""))
        elif key == "delimiter":
            if not isinstance(v, str) or len(v) != 1:
                bad(key, v, 'one character, such as ";" or "\\t"')
            else:
                out[key] = v
        elif key == "decimal":
            if v not in (".", ","):
                bad(key, v, '"." or ","')
            else:
                out[key] = v
        elif key == "thousands":
            if not isinstance(v, str) or len(v) > 1:
                bad(key, v, 'one character such as "." or " ", or "" for none')
            else:
                out[key] = v
        elif key == "encoding":
            enc = str(v).lower().replace("_", "-")
            enc = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1", "utf16": "utf-16"}.get(enc, enc)
            if enc not in _ENCODINGS:
                bad(key, v, f"one of {', '.join(_ENCODINGS)} (convert other encodings first, e.g. with iconv)")
            else:
                out[key] = enc
        elif key == "header":
            if v is not True:
                bad(key, v, "true: the mapping names the columns of the header line")
        elif key == "null":
            vals = [v] if isinstance(v, str) else v
            if not isinstance(vals, list) or not all(isinstance(x, str) for x in vals):
                bad(key, v, 'a string or a list of strings read as missing, e.g. ["", "NULL"]')
            else:
                out[key] = tuple(vals)
    d = Dialect(**out)
    if d.delimiter is not None and d.delimiter == d.decimal:
        bad("decimal", d.decimal, f"a decimal separator other than the delimiter {d.delimiter!r}")
    return d


def _str_table(values: Any, where: str, file: str, problems: list[Problem], what: str) -> dict[str, str]:
    if not isinstance(values, dict):
        problems.append(Problem(file, where, "mapping", 1, repr(values), f"a table of {what}"))
        return {}
    out = {}
    for k, v in values.items():
        if not isinstance(v, str):
            problems.append(Problem(file, _where(where, k), "mapping", 1, f"{k} = {v!r}", "a quoted string"))
        else:
            out[str(k)] = v
    return out


def parse_mapping(values: Table[str, Any], path: str | Path, *,
                  section: str = "") -> tuple[Mapping | None, list[Problem]]:
    """Check a parsed mapping document and build a :class:`Mapping`.

    Parameters
    ----------
    values : Mapping
        The TOML document (or the ``[mapping]`` table of ``operator.toml``).
    path : str or Path
        The file it came from (named in problems).
    section : str
        ``"mapping"`` when it is a section of ``operator.toml`` (problems name ``mapping.KEY``).

    Returns
    -------
    mapping : Mapping or None
        None when any problem was found.
    problems : list of Problem
        Table ``mapping.toml`` (or ``operator.toml``), column the key's dotted path, rule ``mapping``
        (or ``timezone``).
    """
    file = Path(path).name
    problems: list[Problem] = []
    known = ("timezone", "csv", "tables")
    for key in values:
        if key not in known:
            hint = (f"tables.{key}" if key in TABLES else close_match(key, known))
            problems.append(Problem(file, _where(section, key), "mapping", 1, f"[{_where(section, key)}]",
                                    f"one of {', '.join(known)}" + (f" (did you mean {hint!r}?)" if hint else "")))
    zone = values.get("timezone")
    if zone is not None and (p := zone_problem(file, zone)) is not None:
        problems.append(p._replace(column=_where(section, "timezone")))
    dialect = _parse_dialect(values.get("csv", {}), _where(section, "csv"), Dialect(), problems, file)
    tables: dict[str, TableMapping] = {}
    raw_tables = values.get("tables", {})
    if not isinstance(raw_tables, dict):
        problems.append(Problem(file, _where(section, "tables"), "mapping", 1, repr(raw_tables),
                                "[tables.NAME] sections, one per contract table"))
        raw_tables = {}
    for name, spec in raw_tables.items():
        where = _where(section, "tables", name)
        if name not in TABLES:
            near = close_match(name, TABLES)
            problems.append(Problem(file, where, "mapping", 1, f"[{where}]",
                                    f"a contract table ({', '.join(TABLES)})"
                                    + (f"; did you mean {near!r}?" if near else "")))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(file, where, "mapping", 1, repr(spec),
                                    "a table with source, columns, values"))
            continue
        for key in spec:
            if key not in _TABLE_KEYS:
                near = close_match(key, _TABLE_KEYS)
                hint = f" (did you mean {near!r}?)" if near else ""
                problems.append(Problem(file, _where(where, key), "mapping", 1, key,
                                        f"one of {', '.join(_TABLE_KEYS)}{hint}"))
        source = spec.get("source")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            problems.append(Problem(file, _where(where, "source"), "mapping", 1, repr(source),
                                    "a file name, folder or glob relative to the data folder"))
            source = None
        columns = _str_table(spec.get("columns", {}), _where(where, "columns"), file, problems,
                             "contract column = column in the file")
        contract_cols = TABLES[name].column_names
        for c in list(columns):
            if c not in contract_cols:
                near = close_match(c, contract_cols)
                problems.append(Problem(file, _where(where, "columns", c), "mapping", 1, f"{c} = {columns[c]!r}",
                                        f"a contract column of {name} ({', '.join(contract_cols)})"
                                        + (f"; did you mean {near!r}?" if near else "")))
                del columns[c]
        dup = {v for v in columns.values() if list(columns.values()).count(v) > 1}
        for v in sorted(dup):
            problems.append(Problem(file, _where(where, "columns"), "mapping", 1, f"{v!r} named twice",
                                    "each column of the file mapped to one contract column"))
        vals: dict[str, dict[str, str]] = {}
        raw_vals = spec.get("values", {})
        if not isinstance(raw_vals, dict):
            problems.append(Problem(file, _where(where, "values"), "mapping", 1, repr(raw_vals),
                                    "[tables.NAME.values.COLUMN] tables of value in the file = contract value"))
            raw_vals = {}
        for c, m in raw_vals.items():
            cw = _where(where, "values", c)
            if c not in contract_cols:
                near = close_match(c, contract_cols)
                problems.append(Problem(file, cw, "mapping", 1, f"[{cw}]", f"a contract column of {name}"
                                        + (f"; did you mean {near!r}?" if near else "")))
                continue
            col = TABLES[name].column(c)
            got = _str_table(m, cw, file, problems, "value in the file = contract value")
            allowed = col.vocabulary or (("true", "false") if col.kind == "bool" else None)
            for k, v in got.items():
                if allowed is not None and v not in allowed:
                    near = close_match(v, allowed)
                    problems.append(Problem(file, _where(cw, k), "mapping", 1, f"{k!r} = {v!r}",
                                            f"one of {', '.join(repr(a) for a in allowed)}"
                                            + (f" (did you mean {near!r}?)" if near else "")))
            vals[c] = got
        dial = _parse_dialect(spec["csv"], _where(where, "csv"), dialect, problems, file) if "csv" in spec else dialect
        tables[name] = TableMapping(name, source.strip() if source else None, MappingProxyType(columns),
                                    MappingProxyType({k: MappingProxyType(v) for k, v in vals.items()}), dial)
    if problems:
        return None, problems
    return Mapping(Path(path), zone.strip() if isinstance(zone, str) else None, dialect,
                   MappingProxyType(tables)), []


def read_mapping(directory: str | Path) -> tuple[Mapping | None, list[Problem]]:
    """The mapping of a data folder: ``mapping.toml``, or the ``[mapping]`` section of ``operator.toml``.

    Returns ``(None, [])`` when there is neither; problems (not exceptions) for an unreadable or
    malformed mapping, or for both at once.
    """
    directory = Path(directory)
    file = directory / MAPPING_FILE
    section = None
    config = directory / CONFIG_FILE
    if config.is_file():
        try:
            with config.open("rb") as fh:
                section = tomllib.load(fh).get("mapping")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            section = None          # operator.toml's own problems are reported by config.py
    if file.is_file() and section is not None:
        return None, [Problem(MAPPING_FILE, None, "ambiguous_file", 1, f"{MAPPING_FILE} and a [mapping] section "
                              f"in {CONFIG_FILE}", "one mapping: the file or the section")]
    if section is not None:
        if not isinstance(section, dict):
            return None, [Problem(CONFIG_FILE, "mapping", "mapping", 1, repr(section), "a [mapping] table")]
        return parse_mapping(section, config, section="mapping")
    if not file.is_file():
        return None, []
    try:
        with file.open("rb") as fh:
            values = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(MAPPING_FILE, None, "unreadable_file", 1, f"{file}: {exc}", "valid TOML")]
    except UnicodeDecodeError as exc:
        return None, [Problem(MAPPING_FILE, None, "unreadable_file", 1,
                              f"{file}: byte at position {exc.start} is not UTF-8",
                              "a TOML file saved as UTF-8 (TOML is always UTF-8); re-save it as UTF-8")]
    except OSError as exc:
        return None, [Problem(MAPPING_FILE, None, "unreadable_file", 1, f"{file}: {exc.strerror}",
                              "a mapping.toml the user running carecall_eval can read")]
    return parse_mapping(values, file)


def resolve_source(directory: Path, pattern: str) -> tuple[Path, ...]:
    """Files a mapping's ``source`` names (a file, a folder of Parquet parts or a glob), sorted."""
    p = directory / pattern
    if any(ch in pattern for ch in "*?["):
        found = sorted(Path(f) for f in _glob.glob(str(p), recursive=True))
        return tuple(f for f in found if f.is_file())
    if p.is_dir():
        return tuple(sorted(p.glob("*.parquet")))
    return (p,) if p.is_file() else ()


# ----------------------------------------------------------------------------- applying

def map_table(expr, table: str, tm: TableMapping | None, *, zone: str | None, backend_name: str,
              source: str = "", dialect: Dialect | None = None):
    """Contract table `table` as mapped: renamed columns, mapped values, numbers, local times.

    The one implementation of a mapping, an ibis expression over the stored table: compiled into
    the DuckDB view on the file route, part of the table expression on the ibis route.

    Parameters
    ----------
    expr : ibis table
        The table as stored (on files: every column read as text).
    table : str
        Contract table name.
    tm : TableMapping or None
        The table's mapping (None: only the number and time-zone rules).
    zone : str or None
        The operator's time zone; None: columns stored with a time zone are refused.
    backend_name : str
        The ibis backend's name (the time-zone function differs).
    source : str
        Where the table is stored, for messages.
    dialect : Dialect, optional
        Decimal and thousands separators of numbers stored as text; default the table mapping's
        (a table the mapping does not mention gets the shared ``[csv]`` settings from the caller).

    Returns
    -------
    expr : ibis table
        Contract names, mapped values, ``.`` decimals, local times; extra columns kept.
    problems : list of Problem
        A mapped column absent from the source (with the closest name), a value map on a
        column that is not text, a column with a time zone and no zone configured.
    converted : list of str
        Columns given the time-zone conversion.
    """
    problems: list[Problem] = []
    where = source or table
    stored = list(expr.columns)
    renames: dict[str, str] = {}
    if tm is not None:
        for contract, src in tm.columns.items():
            if src == contract:
                continue
            if src not in stored:
                near = close_match(src, stored)
                problems.append(Problem(MAPPING_FILE, f"tables.{table}.columns.{contract}", "mapping", 1,
                                        f"{contract} = {src!r}: no column {src!r} in {where}",
                                        "a column of the file" + (f" (closest: {near!r})" if near else
                                                                  f"; its columns are {', '.join(stored)}")))
                continue
            renames[contract] = src
        clash = {c: f"{c}__stored" for c in renames if c in stored and c not in renames.values()}
        if clash:
            expr = expr.rename({new: old for old, new in clash.items()})
        if renames:
            expr = expr.rename(renames)
    schema = expr.schema()
    types = dict(zip(schema.names, schema.types))
    spec = TABLES[table]
    changes = {}
    if tm is not None:
        for c, m in tm.values.items():
            if c not in types or not m:
                continue
            if not types[c].is_string():
                problems.append(Problem(MAPPING_FILE, f"tables.{table}.values.{c}", "mapping", 1,
                                        f"{c} stored as {types[c]}", "a value map on a text column only"))
                continue
            changes[c] = expr[c].substitute(dict(m))
    d = dialect if dialect is not None else (tm.dialect if tm is not None else Dialect())
    dec, thousands = d.decimal, d.thousands
    for col in spec.columns:
        if col.kind in ("float", "int") and col.name in types and types[col.name].is_string():
            if not thousands and dec == ".":
                continue
            v = changes.get(col.name, expr[col.name])
            if thousands:
                v = v.replace(thousands, "")
            if dec == ",":
                v = v.replace(",", ".")
            changes[col.name] = v
    converted = []
    for c in local_time_columns(table, schema):
        if zone is not None:
            changes[c] = to_local(changes.get(c, expr[c]), zone, backend_name)
            converted.append(c)
        elif is_zoned_type(types[c]):
            problems.append(offset_problem(table, c, 0, f"{c} stored as {types[c]} in {where}", zoned_type=True))
    if changes:
        expr = expr.mutate(**changes)
    return expr, problems, converted
