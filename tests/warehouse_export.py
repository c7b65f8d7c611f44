"""A warehouse export of data/sample as an analyst would receive it (for the mapping and time-zone tests).

Every difference the mapping file exists for: upper-case headers, ``CUST_ID`` for ``customer_id``,
``;`` separators with decimal commas, upper-case codes (``HIGH_LOSS``, ``PHONE``), timestamps written
with a UTC offset, other file names and the activity split over two files.  Written with DuckDB from
the sample's Parquet files, so every number is the sample's own (DOUBLE -> VARCHAR is the shortest
round-trip text) and the local times are recoverable exactly from the offsets.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
ZONE = "Europe/Stockholm"             # the simulated operator's clock

#: contract table -> file name in the export ("dwh" names) and in a contract-named export.
DWH_NAMES = {"customers": "dwh_customers.csv", "products": "dwh_products.csv", "deposits": "dwh_deposits.csv",
             "triggers": "dwh_triggers.csv", "call_cases": "dwh_cases.csv", "call_attempts": "dwh_call_attempts.csv",
             "sms": "dwh_sms.csv", "rg_events": "dwh_rg_events.csv"}
UPPER_CODES = {"triggers": ("trigger",), "call_cases": ("trigger", "channel")}
TIMESTAMPS = {"call_attempts": "attempted_at", "sms": "sent_at"}


def _offset_text(col: str, offset: str | None) -> str:
    """SQL writing naive local time `col` (the operator's clock) with `offset`: None, "UTC" (Z) or "+02:00"."""
    instant = f"timezone('{ZONE}', {col})"
    if offset is None:
        return f"strftime({col}, '%Y-%m-%d %H:%M:%S')"
    if offset == "UTC":
        return f"strftime(timezone('UTC', {instant}), '%Y-%m-%d %H:%M:%S') || 'Z'"
    if offset == "local":   # the operator's own offsets: +01:00 in winter, +02:00 in summer
        return f"strftime({col}, '%Y-%m-%dT%H:%M:%S') || strftime({instant}, '%z') || ':00'"
    sign, hh, mm = offset[0], int(offset[1:3]), int(offset[4:6])
    assert mm == 0, "whole hours only"
    etc = f"Etc/GMT{'-' if sign == '+' else '+'}{hh}"       # Etc/GMT-2 is UTC+2
    return f"strftime(timezone('{etc}', {instant}), '%Y-%m-%dT%H:%M:%S') || '{offset}'"


def write_export(dst: Path, *, offset: str | None = "+02:00", names: str = "dwh", timezone: str | None = None,
                 upper: bool = True, cust_id: bool = True, decimal_comma: bool = True, delimiter: str = ";",
                 upper_codes: bool = True, only: tuple[str, ...] | None = None) -> Path:
    """Write the export of data/sample into `dst` (created) and return it.

    Parameters
    ----------
    offset : {None, "UTC", "local", "+02:00", ...}
        How timestamps are written: naive local time, UTC with ``Z``, the operator's own offsets, or
        every value at one fixed offset.
    names : {"dwh", "contract"}
        ``dwh_*.csv`` names with activity in two files (``dwh_activity_2024.csv``, ``..._2025.csv``),
        or the contract's ``<table>.csv``.
    timezone : str, optional
        Written into the copied ``operator.toml`` when given.
    only : tuple of str, optional
        Write only these tables.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    # the simulated operator is in Stockholm: make the naive times mean that clock, whatever the machine's zone
    con.execute(f"SET TimeZone = '{ZONE}'")
    for f in sorted(SAMPLE.glob("*.parquet")):
        name = f.stem
        if only is not None and name not in only:
            continue
        rel = con.sql(f"SELECT * FROM read_parquet('{f}')")
        cols = []
        for c, t in zip(rel.columns, rel.types):
            t = str(t)
            q = f'"{c}"'
            if c == TIMESTAMPS.get(name):
                e = _offset_text(q, offset)
            elif t in ("DOUBLE", "FLOAT"):
                e = f"replace(CAST({q} AS VARCHAR), '.', ',')" if decimal_comma else f"CAST({q} AS VARCHAR)"
            elif upper_codes and c in UPPER_CODES.get(name, ()):
                e = f"upper({q})"
            else:
                e = f"CAST({q} AS VARCHAR)"
            out = "CUST_ID" if (cust_id and c == "customer_id") else (c.upper() if upper else c)
            cols.append(f'{e} AS "{out}"')
        select = f"SELECT {', '.join(cols)} FROM read_parquet('{f}')"
        opts = f"(HEADER, DELIMITER '{delimiter}')"
        if names == "dwh" and name == "activity":
            for year in (2024, 2025):
                con.execute(f"COPY ({select} WHERE year(date) {'<=' if year == 2024 else '>='} {year}) "
                            f"TO '{dst / f'dwh_activity_{year}.csv'}' {opts}")
        else:
            target = dst / (DWH_NAMES[name] if names == "dwh" else f"{name}.csv")
            con.execute(f"COPY ({select}) TO '{target}' {opts}")
    con.close()
    text = (SAMPLE / "operator.toml").read_text()
    if timezone:
        text += f'timezone = "{timezone}"\n'
    (dst / "operator.toml").write_text(text)
    return dst


def copy_sample(dst: Path) -> Path:
    """data/sample's Parquet files and operator.toml in `dst` (for editing a copy)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in SAMPLE.glob("*.parquet"):
        shutil.copy(f, dst / f.name)
    shutil.copy(SAMPLE / "operator.toml", dst / "operator.toml")
    return dst
