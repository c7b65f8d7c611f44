"""A starter ``mapping.toml`` from an export's files, with best guesses (:func:`starter_mapping`).

``carecall-eval map init DIR`` writes it.  For every file of the folder it guesses the contract
table (from the header and the file name), the CSV dialect (encoding, delimiter, decimal comma),
each contract column's name in the file (same name in another case, the same letters without
punctuation, a known synonym such as ``cust_id``, or the closest name), the codes of every
vocabulary column (``HIGH_LOSS`` -> ``high_loss``, ``PHONE`` -> ``phone``; booleans such as ``J``/``N``)
and whether dates and times carry UTC offsets.  What it cannot guess is written as a comment
marked ``TODO``; the operator's time zone is always left for a person to set.

The guesses are only guesses: read the file, then ``carecall-eval map show DIR`` and
``carecall-eval validate DIR``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .config import CONFIG_FILE
from .hints import close_match
from .mapping import MAPPING_FILE
from .schemas import quote_ident, sql_literal
from .spec import CONTRACT_VERSION, TABLES, Column
from .timezones import OFFSET_PATTERN

__all__ = ["starter_mapping", "FileGuess", "guess_files"]

#: Other names exports give contract columns (compared without case and punctuation).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": ("cust_id", "custid", "customer", "customer_no", "customer_number", "player_id", "player",
                    "account_id", "account", "kund_id", "kundnr", "user_id"),
    "case_id": ("case", "case_no", "case_number", "call_case_id", "ticket_id"),
    "date": ("day", "play_date", "activity_date", "game_date", "deposit_date", "dato", "datum"),
    "product": ("product_id", "product_code", "game", "game_type", "vertical"),
    "wagered": ("stake", "stakes", "turnover", "bet", "bets", "wager", "amount_wagered", "insats"),
    "won": ("win", "wins", "winnings", "payout", "paid_out", "vinst"),
    "amount": ("deposit", "deposit_amount", "deposited", "belopp"),
    "payback": ("rtp", "return_to_player", "payout_rate", "theoretical_payback"),
    "birth_year": ("year_of_birth", "yob", "born"),
    "gender": ("sex", "kon"),
    "registered_on": ("registered", "registration_date", "reg_date", "signup_date", "opened"),
    "closed_on": ("closed", "closure_date", "close_date"),
    "triggered_on": ("trigger_date", "signal_date", "fired_on", "date"),
    "trigger": ("trigger_type", "signal", "reason"),
    "value": ("trigger_value", "signal_value", "loss"),
    "opened_on": ("opened", "case_date", "open_date", "created_on", "created"),
    "channel": ("contact_channel", "planned_channel", "medium"),
    "arm": ("study_arm", "group", "allocation"),
    "attempted_at": ("attempt_time", "called_at", "call_time", "dialled_at", "timestamp", "ts"),
    "answered": ("is_answered", "reached", "connected"),
    "duration_s": ("duration", "duration_sec", "duration_seconds", "call_length", "seconds"),
    "agent_id": ("agent", "staff_id", "caller_id", "operator_id", "handler"),
    "outcome": ("result", "call_outcome"),
    "reception": ("customer_reception", "feedback", "sentiment"),
    "sent_at": ("sent", "send_time", "sms_time", "timestamp"),
    "kind": ("sms_kind", "type", "sms_type", "message_type"),
    "occurred_on": ("event_date", "date", "occurred"),
    "event": ("event_type", "action", "rg_event"),
    "via_call": ("during_call", "from_call", "call"),
}
#: Other names exports give contract tables (compared without case and punctuation).
TABLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "customers": ("customer", "players", "player", "accounts", "kunder"),
    "products": ("product", "games", "verticals"),
    "activity": ("daily_play", "play", "gaming", "bets", "turnover"),
    "deposits": ("deposit", "payments"),
    "triggers": ("trigger", "signals", "risk_signals", "alerts"),
    "call_cases": ("cases", "case", "contacts"),
    "call_attempts": ("attempts", "calls", "dials"),
    "sms": ("messages", "texts", "sms_log"),
    "rg_events": ("events", "rg", "responsible_gambling", "tools"),
}
#: Other codes exports use for vocabulary values (compared without case and punctuation).
VALUE_SYNONYMS: dict[str, dict[str, str]] = {
    "channel": {"tel": "phone", "telephone": "phone", "call": "phone", "outbound_call": "phone", "mail": "email",
                "e_mail": "email", "post": "letter", "brev": "letter", "telefon": "phone"},
    "gender": {"male": "M", "female": "F", "man": "M", "woman": "F", "kvinna": "F", "unknown": "U", "x": "U"},
}
_TRUE = {"1", "y", "yes", "j", "ja", "t"}
_FALSE = {"0", "n", "no", "nej", "f"}
_DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
_SAMPLE_ROWS = 5000
_MAX_CODES = 60


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@dataclass
class FileGuess:
    """What was guessed about one file (or folder of Parquet parts)."""

    path: Path
    format: str                              # "csv" or "parquet"
    columns: list[str]
    encoding: str = "utf-8"
    delimiter: str | None = None
    decimal: str | None = None              # None: no number seen that tells
    table: str | None = None
    score: float = 0.0
    notes: list[str] = field(default_factory=list)

    def relation(self) -> str:
        """DuckDB table function reading the file as text."""
        if self.format == "parquet":
            files = sorted(self.path.glob("*.parquet")) if self.path.is_dir() else [self.path]
            return "read_parquet([" + ", ".join(sql_literal(str(f)) for f in files) + "])"
        delim = f", delim = {sql_literal(self.delimiter)}" if self.delimiter else ""
        return (f"read_csv({sql_literal(str(self.path))}, header = true, all_varchar = true, "
                f"encoding = {sql_literal(self.encoding)}{delim})")


def _encoding(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    cut = raw.rfind(b"\n")
    try:
        (raw[:cut] if cut > 0 else raw).decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _sniff(path: Path) -> tuple[str, str | None, list[str]]:
    with path.open("rb") as fh:
        raw = fh.read(1 << 20)
    enc = _encoding(raw)
    text = raw.decode({"utf-16": "utf-16", "latin-1": "latin-1"}.get(enc, "utf-8-sig"), errors="replace")
    lines = text.splitlines()[:50]
    try:
        delim = csv.Sniffer().sniff("\n".join(lines), delimiters=";,\t|").delimiter
    except csv.Error:
        delim = None
    header = next(csv.reader(io.StringIO(lines[0] if lines else ""), delimiter=delim or ","), [])
    return enc, delim, [h.strip() for h in header]


def _candidates(directory: Path) -> list[Path]:
    out = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or p.name in (CONFIG_FILE, MAPPING_FILE, "truth.json"):
            continue
        if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES:
            out.append(p)
        elif p.is_dir() and any(p.glob("*.parquet")):
            out.append(p)
    return out


def match_columns(table: str, headers: list[str]) -> dict[str, str]:
    """Contract column -> header, one to one: same name, other case, same letters, a synonym, then the closest."""
    spec = TABLES[table]
    left = list(headers)
    out: dict[str, str] = {}

    def take(col: str, h: str) -> None:
        out[col] = h
        left.remove(h)

    for rule in ("exact", "case", "norm", "synonym"):
        for col in spec.columns:
            if col.name in out:
                continue
            for h in left:
                if (rule == "exact" and h == col.name) or (rule == "case" and h.lower() == col.name.lower()) \
                        or (rule == "norm" and _norm(h) == _norm(col.name)) \
                        or (rule == "synonym" and _norm(h) in {_norm(s) for s in SYNONYMS.get(col.name, ())}):
                    take(col.name, h)
                    break
    for col in spec.columns:
        if col.name not in out and left:
            near = close_match(col.name, left, cutoff=0.75)
            if near is not None:
                take(col.name, near)
    return out


def _table_score(table: str, g: FileGuess) -> float:
    found = match_columns(table, g.columns)
    required = [c for c in TABLES[table].columns if not c.optional]
    header = sum(1 for c in required if c.name in found) / len(required)
    extra = len([h for h in g.columns if h not in found.values()]) / max(len(g.columns), 1)
    stem = _norm(g.path.name.split(".")[0])
    name = 1.0 if _norm(table) in stem else (0.8 if any(_norm(s) in stem for s in TABLE_SYNONYMS[table]) else 0.0)
    return header + 0.5 * name - 0.25 * extra


def guess_files(directory: str | Path) -> list[FileGuess]:
    """Every data file of `directory` with its dialect and the contract table it most likely holds."""
    directory = Path(directory)
    guesses = []
    for p in _candidates(directory):
        if p.is_dir() or p.suffix.lower() == ".parquet":
            con = duckdb.connect()
            con.execute("SET enable_progress_bar = false")   # it writes to stdout
            files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
            try:
                cols = con.sql("SELECT * FROM read_parquet([" + ", ".join(sql_literal(str(f)) for f in files)
                               + "]) LIMIT 0").columns
            except duckdb.Error:
                continue
            finally:
                con.close()
            guesses.append(FileGuess(p, "parquet", list(cols)))
            continue
        enc, delim, header = _sniff(p)
        guesses.append(FileGuess(p, "csv", header, enc, delim))
    for g in guesses:
        scores = {t: _table_score(t, g) for t in TABLES}
        best = max(scores, key=lambda t: scores[t])
        if scores[best] >= 0.5:
            g.table, g.score = best, scores[best]
    return guesses


def _glob_of(paths: list[Path], directory: Path) -> str:
    names = [p.name for p in paths]
    if len(names) == 1:
        return os.path.relpath(paths[0], directory)
    pre = os.path.commonprefix(names)
    suf = os.path.commonprefix([n[::-1] for n in names])[::-1]
    if len(pre) + len(suf) > min(len(n) for n in names):
        suf = ""
    # cut at a separator, so that dwh_activity_2024.csv and ..._2025.csv give dwh_activity_*.csv
    m = re.match(r"^(.*[^A-Za-z0-9])", pre)
    pre = m.group(1) if m else ""
    m = re.search(r"([^A-Za-z0-9].*)$", suf)
    suf = m.group(1) if m else ""
    return f"{pre}*{suf}"


def _sample(con, g: FileGuess, cols: list[str], limit: int | None = _SAMPLE_ROWS) -> dict[str, list[str]]:
    if not cols:
        return {}
    sel = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in cols)
    lim = f" LIMIT {limit}" if limit else ""
    rows = con.sql(f"SELECT {sel} FROM {g.relation()}{lim}").fetchall()
    return {c: [r[i] for r in rows if r[i] is not None] for i, c in enumerate(cols)}


def _codes(con, g: FileGuess, col: str) -> list[str]:
    q = quote_ident(col)
    rows = con.sql(f"SELECT DISTINCT CAST({q} AS VARCHAR) FROM {g.relation()} WHERE {q} IS NOT NULL "
                   f"ORDER BY 1 LIMIT {_MAX_CODES + 1}").fetchall()
    return [r[0] for r in rows]


def guess_value(col: Column, value: str) -> str | None:
    """The contract value a code most likely stands for, None when there is no good guess."""
    if col.kind == "bool":
        v = value.strip().lower()
        return "true" if v in _TRUE else "false" if v in _FALSE else None
    vocab = col.vocabulary or ()
    if value in vocab:
        return value
    by_norm = {_norm(v): v for v in vocab}
    if _norm(value) in by_norm:
        return by_norm[_norm(value)]
    syn = VALUE_SYNONYMS.get(col.name, {})
    if _norm(value) in {_norm(k) for k in syn}:
        return next(v for k, v in syn.items() if _norm(k) == _norm(value))
    return close_match(value, vocab, cutoff=0.75)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _str(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


def starter_mapping(directory: str | Path) -> tuple[str, list[str]]:
    """A starter ``mapping.toml`` for the export in `directory`, and the points a person must check.

    Returns
    -------
    text : str
        The TOML document, with comments saying what was guessed and ``TODO`` where nothing was.
    todo : list of str
        One line per point left for a person (unmatched files, columns not found, codes without a
        guess, the time zone when dates and times carry offsets).
    """
    directory = Path(directory)
    guesses = guess_files(directory)
    by_table: dict[str, list[FileGuess]] = {}
    for g in guesses:
        if g.table:
            by_table.setdefault(g.table, []).append(g)
    csvs = [g for g in guesses if g.format == "csv" and g.table]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")   # it writes to stdout
    todo: list[str] = []
    offsets: dict[str, str] = {}
    # the decimal separator, from the numbers of each CSV file
    for g in csvs:
        name = str(g.table)
        cols = match_columns(name, g.columns)
        nums = [cols[c.name] for c in TABLES[name].columns if c.kind in ("float", "int") and c.name in cols]
        try:
            sample = _sample(con, g, nums + [cols[c.name] for c in TABLES[name].columns
                                             if c.kind in ("date", "timestamp") and c.name in cols])
        except duckdb.Error as exc:
            g.notes.append(f"could not be read as guessed ({str(exc).splitlines()[0]})")
            continue
        values = [v for c in nums for v in sample.get(c, [])]
        comma = sum(bool(re.fullmatch(r"-?\d+,\d+", v.strip())) for v in values)
        dot = sum(bool(re.fullmatch(r"-?\d+\.\d+", v.strip())) for v in values)
        g.decimal = "," if comma > dot else "." if dot else None
        for c in TABLES[name].columns:
            if c.kind in ("date", "timestamp") and c.name in cols:
                hit = next((v for v in sample.get(cols[c.name], []) if re.match(OFFSET_PATTERN, v)), None)
                if hit:
                    offsets[f"{g.table}.{c.name}"] = hit
    told = [g for g in csvs if g.decimal is not None] or csvs
    dialects = {(g.encoding, g.delimiter, g.decimal or ".") for g in told}
    shared = max(sorted(dialects, key=str),
                 key=lambda d: sum((g.encoding, g.delimiter, g.decimal or ".") == d for g in told)) \
        if dialects else None
    for g in csvs:
        if g.decimal is None and shared is not None:
            g.decimal = shared[2]

    lines = [f"# mapping.toml: how the export in this folder maps onto the carecall_eval data contract "
             f"(v{CONTRACT_VERSION}).",
             "# Written by `carecall-eval map init` from the files' headers and values: best guesses, to be read",
             "# and edited. Check with `carecall-eval map show DIR` and `carecall-eval validate DIR`.",
             "# [tables.NAME.columns]: contract column = column in the file; [tables.NAME.values.COLUMN]:",
             "# value in the file = contract value. The files themselves are never rewritten.", ""]
    zone_known = _configured_zone(directory)
    if offsets:
        seen = sorted({m.group(0) for v in offsets.values()
                       if (m := re.search(r"([Zz]|[+-]\d{2}(:?\d{2})?)\s*$", v))})
        example = next(iter(offsets.values()))
        lines += [f"# Dates and times in {', '.join(offsets)} carry UTC offsets (e.g. {example!r};",
                  f"# seen: {', '.join(seen)}). They are converted to the operator's local time, in its zone."]
        if zone_known:
            lines += [f"# {CONFIG_FILE} sets timezone = {zone_known!r}.", ""]
        else:
            lines += ["# TODO: set the operator's time zone (its IANA name) and remove the '#':",
                      '# timezone = "Europe/Stockholm"', ""]
            todo.append("set the operator's time zone (timezone = \"...\"): "
                        f"{', '.join(offsets)} carry UTC offsets")
    if shared is not None:
        enc, delim, dec = shared
        lines += ["[csv]    # how the CSV files are written (a table's own [tables.NAME.csv] overrides)"]
        if delim:
            lines.append(f"delimiter = {_str(delim)}")
        lines.append(f"decimal = {_str(dec)}")
        lines.append(f"encoding = {_str(enc)}")
        lines.append("")

    for table, spec in TABLES.items():
        files = by_table.get(table, [])
        if not files:
            what = "optional table" if not spec.required else "TODO: required"
            lines += [f"# [tables.{table}]  no file found ({what}); add source = \"...\" if it has another name", ""]
            if spec.required:
                todo.append(f"{table}: no file found")
            continue
        formats = {g.format for g in files}
        if len(formats) > 1:
            files = [g for g in files if g.format == "csv"]
        g0 = files[0]
        lines.append(f"[tables.{table}]")
        lines.append(f"source = {_str(_glob_of([g.path for g in files], directory))}")
        if g0.format == "csv" and shared is not None and (g0.encoding, g0.delimiter, g0.decimal) != shared:
            lines.append("csv = { " + ", ".join(
                [f"delimiter = {_str(g0.delimiter or '')}"] * bool(g0.delimiter)
                + [f"decimal = {_str(g0.decimal or '.')}", f"encoding = {_str(g0.encoding)}"]) + " }")
        cols = match_columns(table, g0.columns)
        lines.append(f"[tables.{table}.columns]")
        for col in spec.columns:
            if col.name in cols:
                if cols[col.name] != col.name:
                    lines.append(f"{col.name} = {_str(cols[col.name])}")
            elif col.optional:
                lines.append(f"# {col.name} = \"\"   # optional; not found in {g0.path.name}")
            else:
                near = close_match(col.name, [h for h in g0.columns if h not in cols.values()], cutoff=0.4)
                hint = f" (closest unmatched: {near!r})" if near else ""
                lines.append(f"# TODO: {col.name} = \"\"   # not found in {g0.path.name}{hint}")
                todo.append(f"{table}.{col.name}: no column of {g0.path.name} found for it{hint}")
        unmapped = [h for h in g0.columns if h not in cols.values()]
        if unmapped:
            lines.append(f"# extra columns kept as they are: {', '.join(unmapped)}")
        for col in spec.columns:
            if col.name not in cols or not (col.vocabulary or col.kind == "bool") or spec.large:
                continue
            try:
                codes = sorted({v for g in files for v in _codes(con, g, cols[col.name])})
            except duckdb.Error:
                continue
            entries, unknown = [], []
            for v in codes[:_MAX_CODES]:
                got = guess_value(col, v)
                if col.kind == "bool" and v.strip().lower() in ("true", "false"):
                    continue
                if got is None:
                    unknown.append(v)
                elif got != v:
                    entries.append(f"{_key(v)} = {_str(got)}")
            if entries or unknown:
                lines.append(f"[tables.{table}.values.{col.name}]")
                lines += entries
                allowed = ", ".join(col.vocabulary or ("true", "false"))
                for v in unknown:
                    lines.append(f"# TODO: {_key(v)} = \"\"   # no guess; one of {allowed}")
                    todo.append(f"{table}.{col.name}: no guess for the code {v!r} (one of {allowed})")
                if len(codes) > _MAX_CODES:
                    lines.append(f"# ... more than {_MAX_CODES} distinct codes; only the first are listed")
        lines.append("")
    unmatched = [g.path.name for g in guesses if g.table is None]
    if unmatched:
        lines.append(f"# files not matched to a contract table (left out): {', '.join(unmatched)}")
        todo.append(f"files not matched to a contract table: {', '.join(unmatched)}")
    con.close()
    return "\n".join(lines).rstrip() + "\n", todo


def _configured_zone(directory: Path) -> str | None:
    import tomllib

    try:
        with (directory / CONFIG_FILE).open("rb") as fh:
            z = tomllib.load(fh).get("timezone")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return z if isinstance(z, str) else None
