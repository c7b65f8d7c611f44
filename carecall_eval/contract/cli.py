"""``carecall-eval map init / show`` (registered by the main CLI), and ``--connection FILE`` for the commands
that read data (:func:`add_connection_argument`, :func:`data_from_args`)."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "add_connection_argument", "data_from_args", "describe_tables"]

CONNECTION_HELP = ("connection file (TOML: the ibis backend and its connect arguments, the table names, the "
                   "operator.toml; see docs/backends.md) instead of a data directory: the data stay on Spark or "
                   "the warehouse")


def add_connection_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--connection FILE`` to a subcommand that reads data."""
    parser.add_argument("--connection", metavar="FILE", help=CONNECTION_HELP)


def data_from_args(args: argparse.Namespace, *, flag: str = "DIR"):
    """The data a subcommand was given: the data directory, or the tables a ``--connection`` file opens.

    Raises
    ------
    InputError
        When neither or both are given.
    """
    from ..errors import InputError

    data, conn = getattr(args, "data", None), getattr(args, "connection", None)
    if bool(data) == bool(conn):
        raise InputError(f"give the data as {flag} or as --connection FILE (one of them)"
                         if not data else f"give the data as {flag} or as --connection FILE, not both")
    if conn:
        from .connection import open_connection

        return open_connection(conn)
    return data


def _dialect_text(src) -> str:
    if src.format == "parquet":
        return "Parquet"
    d = src.dialect
    if d is None:
        return "CSV (dialect detected by DuckDB)"
    delim = "detected" if d.delimiter is None else repr(d.delimiter)
    return f"CSV: delimiter {delim}, decimal {d.decimal!r}, encoding {d.encoding}"


def describe_tables(directory: str | Path, table: str | None = None, rows: int = 5) -> str:
    """Each table of a data folder as the pipeline reads it (through its mapping): source, columns, first rows."""
    import pandas as pd

    from .dataset import open_dataset
    from .schemas import quote_ident
    from .spec import TABLES

    if table is not None and table not in TABLES:
        from ..errors import InputError

        raise InputError(f"--table {table!r} is not a contract table; they are {', '.join(TABLES)}")
    ds, problems = open_dataset(directory)
    out = []
    try:
        m = ds.mapping
        zone = ds.config.timezone if ds.config is not None else None
        how = f"mapped by {m.path.name}" if m is not None else "no mapping (files read as they are)"
        head = f"{directory}: {how}"
        out.append(head + (f"; operator's time zone {zone}" if zone else "; no time zone set"))
        for prob in problems:
            if table is None or prob.table in (table, "mapping.toml", "operator.toml"):
                where = f"{prob.table}.{prob.column}" if prob.column else prob.table
                out.append(f"  problem: {where} [{prob.rule}]: {prob.examples}; expected {prob.expected}")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            for name in ([table] if table else list(TABLES)):
                if name not in ds.tables:
                    out.append(f"\n{name}: not found" + (" (optional table)" if not TABLES[name].required else ""))
                    continue
                src = ds.source(name)
                files = ", ".join(f.name for f in src.files[:4]) + (" ..." if len(src.files) > 4 else "")
                out.append(f"\n{name} <- {src.name} ({len(src.files)} file{'s' if len(src.files) != 1 else ''}: "
                           f"{files}; {_dialect_text(src)})")
                tm = m.table(name) if m is not None else None
                plans = ds.plan(name)
                for c, p in plans.items():
                    stored = tm.columns.get(c, c) if tm is not None else c
                    arrow = f"<- {stored}" if stored != c else "<- (same name)"
                    state = {"ok": p.column.duckdb_type, "cast": f"{p.column.duckdb_type} (cast from {p.stored_type})",
                             "bad": f"unusable type {p.stored_type}", "missing": "MISSING"}[p.status]
                    if p.status == "missing" and p.column.optional:
                        state = "absent (optional)"
                    vals = ""
                    if tm is not None and tm.values.get(c):
                        pairs = list(tm.values[c].items())
                        more = " ..." if len(pairs) > 6 else ""
                        vals = "; codes " + ", ".join(f"{k} -> {v}" for k, v in pairs[:6]) + more
                    out.append(f"  {c:<14} {arrow:<24} {state}{vals}")
                try:
                    frame = ds.con.sql(f"SELECT * FROM {quote_ident(name)} LIMIT {int(rows)}").df()
                    caption = f"  first {len(frame)} rows as the pipeline reads them:"
                except Exception as exc:  # noqa: BLE001 - a value the cast refuses: show the text as mapped
                    frame = ds.con.sql(f"SELECT * FROM {ds.source_sql(name)} LIMIT {int(rows)}").df()
                    caption = (f"  first {len(frame)} rows as mapped, before the contract's casts (the casts fail: "
                               f"{str(exc).splitlines()[0]}; run carecall-eval validate):")
                if rows > 0:
                    out.append(caption)
                    out.append("\n".join("    " + line for line in frame.to_string(index=False).splitlines()))
    finally:
        ds.close()
    return "\n".join(out)


def cmd_map_init(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..writer import write_text
    from .guess import starter_mapping
    from .mapping import MAPPING_FILE

    directory = Path(args.dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist")
    out = Path(args.out) if args.out else directory / MAPPING_FILE
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to replace it, or --out FILE to write elsewhere")
    text, todo = starter_mapping(directory)
    write_text(out, text, what="mapping file")
    print(f"Wrote {out}: a starter mapping with best guesses. Read it, then check it with "
          f"`carecall-eval map show {directory}` and `carecall-eval validate {directory}`.")
    if todo:
        print(f"To do ({len(todo)}):")
        for t in todo:
            print(f"  - {t}")
    return 0


def cmd_map_show(args: argparse.Namespace) -> int:
    print(describe_tables(args.dir, args.table, args.rows))
    return 0


def register(sub) -> None:
    """Add ``map init`` and ``map show`` to the ``carecall-eval`` parser."""
    p = sub.add_parser("map", help="map an operator's own export onto the data contract (mapping.toml)",
                       description="An export that differs from the data contract (file names, column names, codes, "
                                   "CSV dialect, time zone) is read through DIR/mapping.toml; the files are never "
                                   "rewritten. `map init` writes a starter mapping with best guesses, `map show` "
                                   "shows each table as mapped. See docs/mapping.md.")
    msub = p.add_subparsers(dest="map_command", metavar="ACTION")
    msub.required = True
    q = msub.add_parser("init", help="write a starter mapping.toml from the files' headers and values",
                        description="Guess for every file of DIR its contract table, CSV dialect (encoding, delimiter, "
                                    "decimal comma), column names and codes, and write them to DIR/mapping.toml with "
                                    "TODO comments where nothing could be guessed (the time zone is always left to "
                                    "you when dates and times carry offsets).")
    q.add_argument("dir", help="the export's folder")
    q.add_argument("--out", help="where to write (default DIR/mapping.toml)")
    q.add_argument("--force", action="store_true", help="replace an existing mapping file")
    q.set_defaults(func=cmd_map_init)
    q = msub.add_parser("show", help="show each table as mapped: source, columns, codes, first rows",
                        description="Open DIR through its mapping (without validating) and show, per contract "
                                    "table, the files read, each contract column's source column and type, the "
                                    "code maps and the first rows as the pipeline reads them.")
    q.add_argument("dir", help="the export's folder")
    q.add_argument("--table", help="only this contract table")
    q.add_argument("--rows", type=int, default=5, help="rows shown per table (default 5)")
    q.set_defaults(func=cmd_map_show)
