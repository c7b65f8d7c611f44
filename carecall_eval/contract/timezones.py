"""Time zones: one rule for dates and times that carry a UTC offset, on every route.

The contract's dates and times are the operator's local ones, without a zone (a care call at
``2025-03-01 10:15`` is a quarter past ten on the operator's clock).  An export often writes them
with an offset (``2025-03-01 10:15:00+01:00``, ``2025-03-01T09:15:00Z``) or stores them as a
timestamp *with* a time zone.  The rule, the same for files (:func:`~carecall_eval.contract.load`)
and for Spark or a warehouse (:func:`~carecall_eval.contract.connect`):

* with the operator's time zone configured (``timezone = "Europe/Stockholm"`` in ``operator.toml``
  or ``mapping.toml``), every value carrying an offset, and every column stored with a time zone,
  is converted to wall-clock time in that zone; values without an offset are taken as local
  already.  The conversion is said once (a :class:`~carecall_eval.errors.DataWarning`);
* with no zone configured, such values are refused (rule ``timezone``) with a message saying how
  to set it: dropping the offset (what a plain cast does) would silently shift the times.

The conversion is written once, as an ibis expression (:func:`to_local`), and runs where the data
are: the file route compiles it into its DuckDB views (:mod:`.mapping`), the ibis route puts it in
the table expressions.  Only the name of the backend's conversion function differs
(:data:`LOCAL_TIME_FUNCTIONS`).
"""
from __future__ import annotations

import warnings
import zoneinfo
from functools import lru_cache

from ..errors import DataWarning
from .problems import Problem
from .spec import TABLES

__all__ = ["OFFSET_PATTERN", "LOCAL_TIME_FUNCTIONS", "TIMEZONE_HOW", "check_zone", "zone_problem",
           "carries_offset", "to_local", "local_time_columns", "offset_problem", "announce_conversion",
           "is_zoned_type"]

#: A date and time followed by a UTC offset (``Z``, ``+02``, ``+0200``, ``+02:00``), as text.
OFFSET_PATTERN = (r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*"
                  r"([Zz]|[+-]\d{2}(:?\d{2})?)\s*$")

#: How to configure the zone, for every message that refuses offsets.
TIMEZONE_HOW = ('set the operator\'s time zone: a line timezone = "Europe/Stockholm" (its IANA name) '
                "in operator.toml or mapping.toml")

#: Backend -> (function converting an instant to wall-clock time in a zone, type the text is parsed as).
#: ``timezone(zone, timestamptz)`` on DuckDB and PostgreSQL; Spark SQL's ``convert_timezone(zone, ts)``
#: (Spark 3.4+, Databricks) reads a parsed instant in the session zone and returns the zone's wall clock.
LOCAL_TIME_FUNCTIONS = {
    "duckdb": ("timezone", "timestamptz"),
    "postgres": ("timezone", "timestamptz"),
    "pyspark": ("convert_timezone", "timestamp"),
    "databricks": ("convert_timezone", "timestamp"),
}
_TRY_CAST = {"duckdb", "pyspark", "databricks"}   # backends where ibis' try_cast compiles


def check_zone(value) -> str:
    """An IANA time zone name as given, or raise ValueError saying what is expected."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"timezone = {value!r}: expected an IANA time zone name such as \"Europe/Stockholm\"")
    try:
        zoneinfo.ZoneInfo(value.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone = {value!r} is not a known IANA time zone name (such as \"Europe/Stockholm\", "
                         "\"Europe/Oslo\" or \"Europe/Helsinki\")") from None
    return value.strip()


def zone_problem(where: str, value) -> Problem | None:
    """None if `value` is a known time zone, else a ``timezone`` problem against file `where`."""
    try:
        check_zone(value)
    except ValueError as exc:
        return Problem(where, "timezone", "timezone", 1, f"timezone = {value!r}", str(exc).split(": ", 1)[-1])
    return None


def is_zoned_type(dtype) -> bool:
    """Whether an ibis data type (or a DuckDB type name) is a timestamp with a time zone."""
    if isinstance(dtype, str):
        return dtype.upper() in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")
    return dtype.is_timestamp() and dtype.timezone is not None


def carries_offset(text):
    """Boolean ibis expression: the text value is a date and time with a UTC offset."""
    return text.re_search(OFFSET_PATTERN)


@lru_cache(maxsize=None)
def _function(name: str, arg_type: str):
    import ibis
    import ibis.expr.datatypes as dt

    ts = dt.Timestamp(timezone="UTC") if arg_type == "timestamptz" else dt.Timestamp()

    @ibis.udf.scalar.builtin(name=name, signature=((dt.string, ts), dt.Timestamp()))
    def local_time(zone, instant):  # pragma: no cover - never called in Python
        """The backend's own conversion of an instant to wall-clock time in `zone`."""

    return local_time, ts


def to_local(expr, zone: str, backend_name: str):
    """Wall-clock time in `zone` of a value with an offset (an ibis expression).

    Parameters
    ----------
    expr : ibis string or timestamp-with-time-zone expression
        Text is returned as text: values carrying an offset are replaced by their local time
        (``YYYY-MM-DD HH:MM:SS``), every other value is kept as it is, so that the contract's
        casts (and validation's checks of unparseable text) apply as for any text.  A
        timestamp with a time zone is returned as a timestamp without one.
    zone : str
        IANA time zone name (:func:`check_zone`).
    backend_name : str
        ``backend.name`` of the ibis backend the expression runs on.

    Raises
    ------
    ValueError
        For a backend whose conversion function is not known here.
    """
    if backend_name not in LOCAL_TIME_FUNCTIONS:
        raise ValueError(f"converting timestamps with a UTC offset to local time is not implemented on the "
                         f"{backend_name!r} backend (known: {', '.join(sorted(LOCAL_TIME_FUNCTIONS))}); convert "
                         "them to the operator's local time in a view on the backend and map that view")
    import ibis

    fn, ts_type = _function(*LOCAL_TIME_FUNCTIONS[backend_name])
    if expr.type().is_string():
        parsed = expr.try_cast(ts_type) if backend_name in _TRY_CAST else expr.cast(ts_type)
        return ibis.ifelse(carries_offset(expr), fn(zone, parsed).cast("string"), expr)
    return fn(zone, expr)


def local_time_columns(table: str, schema) -> list[str]:
    """Contract date and timestamp columns of `table` whose stored values may carry an offset.

    Text columns (the values decide) and columns stored with a time zone.
    """
    names = dict(zip(schema.names, schema.types))
    out = []
    for col in TABLES[table].columns:
        dtype = names.get(col.name)
        if col.kind in ("date", "timestamp") and dtype is not None and (dtype.is_string() or is_zoned_type(dtype)):
            out.append(col.name)
    return out


def offset_problem(table: str, column: str, n: int, examples: str, zoned_type: bool = False) -> Problem:
    """The refusal of values with an offset when no zone is configured (rule ``timezone``)."""
    what = ("stored as a timestamp with a time zone" if zoned_type
            else "carrying a UTC offset")
    return Problem(table, column, "timezone", n, examples,
                   f"local date and time without an offset ({what}: the offset cannot be dropped); "
                   + TIMEZONE_HOW)


def announce_conversion(columns: list[str], zone: str, where: str) -> None:
    """Say once that `columns` (``table.column``) carry offsets and were converted to `zone` local time."""
    if not columns:
        return
    listed = ", ".join(columns)
    warnings.warn(f"{where}: {listed} carry UTC offsets; converted to local time in {zone} (the operator's "
                  "time zone), as the data contract's dates and times are local", DataWarning, stacklevel=3)
