"""Hints for problems with data: the closest name (:func:`close_match`), and problems with one cause
told once (:func:`causes`).

A warehouse export that differs from the contract in a few systematic ways (upper-case headers,
decimal commas, upper-case codes, timestamps with offsets) fails dozens of rules.  Listed one by
one they hide the few things to fix, so :func:`~carecall_eval.contract.format_problems` states each
cause once ("every column of 9 tables differs from the contract only in case") and lists the
problems that have no common cause.  The problems themselves are unchanged (one row per table,
column and rule in ``ValidationReport.problems``).

>>> close_match("customer_id", ["CUST_ID", "BIRTH_YEAR"])
'CUST_ID'
>>> close_match("trigger", ["amount"]) is None
True
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from .spec import TABLES

__all__ = ["close_match", "column_hint", "Cause", "causes"]

_MAP_HINT = "map them in mapping.toml (`carecall-eval map init DIR` writes a starter mapping from the files)"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def close_match(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to `name` (ignoring case and punctuation), or None when none is close."""
    cands = list(dict.fromkeys(str(c) for c in candidates))
    if not cands:
        return None
    for c in cands:
        if c.lower() == str(name).lower():
            return c
    by_norm: dict[str, str] = {}
    for c in cands:
        by_norm.setdefault(c.lower(), c)
    got = difflib.get_close_matches(str(name).lower(), list(by_norm), n=1, cutoff=cutoff)
    if got:
        return by_norm[got[0]]
    norm: dict[str, str] = {}
    for c in cands:
        norm.setdefault(_norm(c), c)
    got = difflib.get_close_matches(_norm(name), list(norm), n=1, cutoff=cutoff)
    return norm[got[0]] if got else None


def column_hint(column: str, stored: Iterable[str]) -> str:
    """What was found instead of contract column `column`: a name differing only in case, the closest one,
    or every column found."""
    stored = list(stored)
    lower = {c.lower(): c for c in stored}
    if column.lower() in lower:
        return f"found {lower[column.lower()]!r}: names are case-sensitive"
    near = close_match(column, stored)
    listed = "columns found: " + (", ".join(stored) or "(none)")
    return f"no column {column!r}; closest: {near!r} ({listed})" if near else listed


@dataclass(frozen=True)
class Cause:
    """One cause behind several problems: what it is and how to fix it, and the problems it explains."""

    text: str
    rows: tuple[int, ...]

    @property
    def collapses(self) -> bool:
        """Whether the problems it explains are told by it alone (two or more); one problem stays listed."""
        return len(self.rows) >= 2

    @property
    def line(self) -> str:
        """The cause as one line of a message."""
        return self.text + (f" ({len(self.rows)} of the problems)" if self.collapses else "")


_CASE_ONLY = re.compile(r"found '([^']*)': names are case-sensitive|a column '([^']*)' \(names are case-sensitive\)")


def _values(examples: str, column: str) -> list[str]:
    return re.findall(rf"(?:^|, |; ){re.escape(column)}='((?:[^'\\]|\\.)*)'", examples or "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listing(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def causes(problems: pd.DataFrame) -> list[Cause]:
    """Causes shared by several problems of a report, each with the rows of `problems` it explains.

    Recognised: column names that differ from the contract only in case; a column missing from
    several tables with the same closest name; numbers written with decimal commas; codes that
    differ from the contract's vocabulary only in case; dates and times with UTC offsets and no
    time zone configured.  A cause explaining two or more problems tells them alone
    (:attr:`Cause.collapses`); one explaining a single problem is a hint beside it.
    """
    out: list[Cause] = []
    if problems is None or problems.empty:
        return out
    p = problems.reset_index(drop=True)

    # column names differing only in case
    case_rows: list[int] = []
    by_table: dict[str, list[tuple[str, str]]] = {}
    for i, r in p[p["rule"] == "required_column"].iterrows():
        m = _CASE_ONLY.search(str(r["examples"]))
        if m:
            case_rows.append(i)
            by_table.setdefault(r["table"], []).append((r["column"], m.group(1) or m.group(2)))
    if len(case_rows) >= 2:
        missing = p[p["rule"] == "required_column"].groupby("table").size()
        full = [t for t, cols in by_table.items() if len(cols) == missing.get(t, 0)
                and len(cols) == len([c for c in TABLES[t].columns if not getattr(c, "optional", False)])
                if t in TABLES]
        part = [t for t in by_table if t not in full]
        t0 = next(iter(by_table))
        col, found = by_table[t0][0]
        if full and not part:
            head = f"every column of {_plural(len(full), 'table')} differs from the contract only in case"
        elif full:
            n_part = sum(len(by_table[t]) for t in part)
            head = (f"every column of {_plural(len(full), 'table')}, and {_plural(n_part, 'column')} of "
                    f"{len(part)} more, differ from the contract only in case")
        else:
            head = (f"{_plural(len(case_rows), 'column')} of {_plural(len(by_table), 'table')} differ from the "
                    "contract only in case")
        out.append(Cause(f"{head} (e.g. {t0}: {found!r} for {col!r}; names are case-sensitive): {_MAP_HINT}",
                         tuple(case_rows)))

    # one contract column missing from several tables, with the same close match in each
    near: dict[tuple[str, str], list[int]] = {}
    for i, r in p[p["rule"] == "required_column"].iterrows():
        if i in case_rows:
            continue
        m = re.search(r"closest: '([^']*)'", str(r["examples"]))
        if m:
            near.setdefault((r["column"], m.group(1)), []).append(i)
    for (col, found), rows in near.items():
        if len(rows) >= 2:
            tables = [p.loc[i, "table"] for i in rows]
            out.append(Cause(f"{col!r} is missing from {_plural(len(rows), 'table')} ({_listing(tables)}), where "
                             f"{found!r} is the closest column: map it ({col} = {found!r} under "
                             "[tables.TABLE.columns] in mapping.toml)", tuple(rows)))

    # decimal commas
    dec_rows, dec_cols, example = [], [], None
    for i, r in p[p["rule"] == "type"].iterrows():
        t, c = r["table"], r["column"]
        if t not in TABLES or c not in TABLES[t].column_names or TABLES[t].column(c).kind not in ("float", "int"):
            continue
        vals = _values(r["examples"], c)
        if vals and all(re.fullmatch(r"\s*-?[\d.\s]*\d,\d+\s*", v) for v in vals):
            dec_rows.append(i)
            dec_cols.append(f"{t}.{c}")
            example = example or vals[0]
    if dec_rows:
        out.append(Cause(f"numbers in {_listing(dec_cols)} look like decimal commas (e.g. {example!r}): set "
                         'decimal = "," under [csv] in mapping.toml', tuple(dec_rows)))

    # vocabulary codes differing only in case (or in spaces and dashes)
    voc_rows, voc_cols, pair = [], [], None
    for i, r in p[p["rule"] == "vocabulary"].iterrows():
        t, c = r["table"], r["column"]
        if t not in TABLES or c not in TABLES[t].column_names:
            continue
        vocab = TABLES[t].column(c).vocabulary or ()
        norm = {_norm(v): v for v in vocab}
        vals = _values(r["examples"], c)
        if vals and all(_norm(v) in norm for v in vals):
            voc_rows.append(i)
            voc_cols.append(f"{t}.{c}")
            pair = pair or (vals[0], norm[_norm(vals[0])])
    if voc_rows and pair is not None:
        out.append(Cause(f"codes in {_listing(voc_cols)} differ from the contract's only in case or punctuation "
                         f"(e.g. {pair[0]!r} for {pair[1]!r}): map the values under [tables.TABLE.values.COLUMN] "
                         "in mapping.toml (`carecall-eval map init DIR` writes the guesses)", tuple(voc_rows)))

    # offsets without a zone
    tz = p.index[p["rule"] == "timezone"].tolist()
    tz = [i for i in tz if p.loc[i, "table"] in TABLES]
    if len(tz) >= 2:
        cols = [f"{p.loc[i, 'table']}.{p.loc[i, 'column']}" for i in tz]
        out.append(Cause(f"dates and times in {_listing(cols)} carry UTC offsets and no time zone is configured: "
                         + str(p.loc[tz[0], "expected"]).split("; ", 1)[-1], tuple(tz)))
    return out
