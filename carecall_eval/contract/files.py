"""Checks on the files themselves, before their values are read: each problem names the file.

* :func:`check_source` (when a data directory is opened): a CSV file of 0 bytes (``empty_file``), a column
  name written twice in a CSV header or inside a Parquet file (``duplicate_column``: the second copy would be
  renamed or ignored, even when it contradicts the first), CSV rows with more or fewer fields than the header
  (``malformed_row``, with the line numbers), and files the user cannot read (``unreadable_file``).  A table
  with such a problem is not opened at all, so one broken file gives one problem, not one per column.
* :func:`probe_readable` (when data are validated): every value of every column is read once, so a Parquet
  file whose header and footer are intact but whose data pages are damaged is reported as ``unreadable_file``
  naming the file, rather than failing inside a later query.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
from collections import Counter
from pathlib import Path

from .problems import Problem
from .schemas import quote_ident, sql_literal

__all__ = ["check_source", "probe_readable", "FILE_CHECK_RULES"]

#: Rules of this module (problems about a file as a whole).
FILE_CHECK_RULES = ("empty_file", "duplicate_column", "malformed_row", "unreadable_file")
#: Offending CSV lines shown per problem.
_N_LINES = 5
_DELIMITERS = (",", ";", "\t", "|")


def _unreadable(table: str, path: Path, exc: OSError) -> Problem:
    reason = exc.strerror or str(exc)
    return Problem(table, None, "unreadable_file", 0, f"{path.name}: {reason.lower()}",
                   f"a file the user running carecall_eval can read ({path}); fix its permissions")


def check_source(con, src) -> list[Problem]:
    """Problems with the files of one table's source that stop it from being read at all (empty list: none).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Used to scan a CSV file for malformed rows (set-based; nothing is loaded).
    src : carecall_eval.contract.dataset.Source
    """
    problems: list[Problem] = []
    for f in src.files:
        if not os.access(f, os.R_OK):
            try:
                with open(f, "rb"):
                    pass
            except OSError as exc:
                problems.append(_unreadable(src.table, f, exc))
    if problems:
        return problems
    if src.format == "parquet":
        return _check_parquet(src)
    return _check_csv(con, src)


def _check_parquet(src) -> list[Problem]:
    import pyarrow.parquet as pq

    f = src.files[0]
    try:
        names = pq.read_schema(f).names
    except Exception:  # noqa: BLE001 - DuckDB reports an unreadable file with its own message when opening
        return []
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if not dup:
        return []
    return [Problem(src.table, ", ".join(dup), "duplicate_column", 0,
                    f"{f.name} holds {len(names)} columns; written more than once: {', '.join(map(repr, dup))}",
                    "every column name once (a second copy would be ignored, even where it disagrees with the "
                    "first); write the file again with one column of each name")]


def _dialect(src) -> tuple[str, str | None]:
    """(encoding, delimiter or None for 'detect from the header') of a CSV source."""
    d = getattr(src, "dialect", None)
    if d is None:
        return "utf-8", None
    return (getattr(d, "encoding", None) or "utf-8"), getattr(d, "delimiter", None)


def _header(f: Path, encoding: str) -> tuple[str | None, str]:
    """The first line of ``f`` decoded (None if the file is empty) and a problem text ('' if none)."""
    with open(f, "rb") as fh:
        raw = fh.readline()
    if not raw:
        return None, ""
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return codecs.decode(raw, enc).rstrip("\r\n"), ""
    except (UnicodeDecodeError, LookupError) as exc:
        pos = getattr(exc, "start", 0)
        return None, f"the header is not {encoding} text (byte {raw[pos:pos + 1]!r} at position {pos})"


def _check_csv(con, src) -> list[Problem]:
    encoding, delim = _dialect(src)
    problems: list[Problem] = []
    for f in src.files:
        try:
            size = f.stat().st_size
            header, bad = _header(f, encoding)
        except OSError as exc:
            return [_unreadable(src.table, f, exc)]
        if size == 0 or (not bad and not (header or "").strip()):
            problems.append(Problem(src.table, None, "empty_file", 0, f"{f.name} is empty (0 bytes)"
                                    if size == 0 else f"{f.name} has no header line",
                                    "a header row naming the columns (then one row per record); export the table "
                                    "again"))
            continue
        if bad:
            problems.append(Problem(src.table, None, "unreadable_file", 0, f"{f.name}: {bad}",
                                    "a CSV file in UTF-8 (or the encoding mapping.toml names); save it as UTF-8"))
            continue
        d = delim or _guess_delimiter(header)
        names = next(csv.reader(io.StringIO(header or ""), delimiter=d), [])
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            problems.append(Problem(src.table, ", ".join(dup), "duplicate_column", 0,
                                    f"{f.name} header: {header[:200]!r}; written more than once: "
                                    f"{', '.join(map(repr, dup))}",
                                    "every column name once in the header (a second copy would be renamed and "
                                    "ignored, even where it disagrees with the first)"))
            continue
        ragged = _ragged_rows(con, f, names, d, encoding)
        if ragged is not None and ragged[1].startswith("not "):
            problems.append(Problem(src.table, None, "unreadable_file", 0, f"{f.name}: {ragged[1]}",
                                    f"a CSV file in {encoding} (the encoding mapping.toml names, UTF-8 by default); "
                                    "save it as UTF-8 or name its encoding in mapping.toml"))
        elif ragged is not None:
            problems.append(Problem(src.table, None, "malformed_row", ragged[0], f"{f.name}: {ragged[1]}",
                                    f"every row with the header's {len(names)} fields separated by {d!r} (a field "
                                    f"holding {d!r} or a line break must be quoted with \"); fix or re-export "
                                    "those lines"))
    return problems


def _guess_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _ragged_rows(con, f: Path, names: list[str], delim: str, encoding: str) -> tuple[int, str] | None:
    """(number of rejected lines, description of the first ones) of a CSV file read with a fixed dialect."""
    import duckdb

    cols = "{" + ", ".join(f"{sql_literal(n or f'column{i}')}: 'VARCHAR'" for i, n in enumerate(names)) + "}"
    tag = f"{abs(hash((str(f), os.getpid()))):x}"
    rej, scan = f"__rejects_{tag}", f"__rejects_scan_{tag}"
    opts = (f"header = true, auto_detect = false, delim = {sql_literal(delim)}, quote = '\"', escape = '\"', "
            f"columns = {cols}, encoding = {sql_literal(encoding)}, store_rejects = true, "
            f"rejects_table = {sql_literal(rej)}, rejects_scan = {sql_literal(scan)}")
    try:
        # every column read (a row hash), so that text which is not valid in the encoding is seen too
        con.sql(f"SELECT sum(hash(__r)) FROM read_csv({sql_literal(str(f))}, {opts}) AS __r").fetchall()
        # a line that is not valid text in the encoding cannot be fetched as text: only its number then
        rows = con.sql(f"SELECT line, error_type, CASE WHEN error_type = 'INVALID ENCODING' THEN NULL "
                       f"ELSE csv_line END FROM {quote_ident(rej)} ORDER BY line").fetchall()
    except duckdb.Error:
        return None        # the file is read as DuckDB detects it; anything it cannot read is reported there
    finally:
        for t in (rej, scan):
            try:
                con.execute(f"DROP TABLE IF EXISTS {quote_ident(t)}")
            except duckdb.Error:
                pass
    if not rows:
        return None
    lines = sorted({int(r[0]) for r in rows})
    if all(str(r[1]).upper() == "INVALID ENCODING" for r in rows):
        listed = ", ".join(map(str, lines[:_N_LINES])) + (" ..." if len(lines) > _N_LINES else "")
        return len(lines), f"not {encoding} text on line{'s' if len(lines) > 1 else ''} {listed}"
    rows = [r for r in rows if str(r[1]).upper() != "INVALID ENCODING"] or rows
    shown, seen = [], set()
    for line, kind, text in rows:
        if int(line) in seen or len(shown) >= _N_LINES:
            continue
        seen.add(int(line))
        n_fields = len(next(csv.reader(io.StringIO(text or ""), delimiter=delim), []))
        what = (f"{n_fields} fields, the header has {len(names)}" if str(kind).upper().startswith(("TOO", "MISSING"))
                else str(kind).lower())
        shown.append(f"line {int(line)} ({what}): {str(text)[:120]!r}")
    return len(lines), "; ".join(shown)


def probe_readable(con, table: str, src, columns) -> Problem | None:
    """Read every value of ``columns`` of one table once; a damaged file is an ``unreadable_file`` problem.

    ``src`` is the table's :class:`~carecall_eval.contract.dataset.Source`; when it has several part files the
    problem names the first that cannot be read.
    """
    import duckdb

    cols = [quote_ident(c) for c in columns]
    if not cols:
        return None
    expr = f"count(*) FILTER (WHERE hash({', '.join(cols)}) IS NULL)"
    try:
        con.sql(f"SELECT {expr} FROM {src.sql()}").fetchall()
        return None
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0].strip() or type(exc).__name__
    name = src.name
    if src.format == "parquet" and len(src.files) > 1:
        for f in src.files:
            try:
                con.sql(f"SELECT {expr} FROM read_parquet({sql_literal(str(f))})").fetchall()
            except duckdb.Error:
                name = f"{src.name}{f.name}" if src.name.endswith("/") else f.name
                break
    return Problem(table, None, "unreadable_file", 0, f"{name}: the data cannot be read ({first})",
                   "a readable file: its data pages are damaged although its header and footer are intact; "
                   "export the table again (and check the disk or the transfer that wrote it)")
