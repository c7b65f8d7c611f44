"""Bad input, faults and privacy (issue 13): every failure a named error, nothing lost or half-written, no
suppressed count recoverable.

A table-driven suite, as a careless operator would try things: copies of a small dataset in the contract
(``tests/contract_helpers.py``; a few copies of ``data/sample``) corrupted one way each, awkward output
paths, tampered bundles, degenerate data, killed processes, and the report's tables and sentences scanned for
small counts.  Each CLI case runs ``carecall_eval.cli.main`` in this process and asserts the exit code (2 for
bad input, 1 otherwise), the words of the one message, that no traceback is printed, and that nothing is left
behind: the working folder lists exactly what it listed before (no output, no partial output, no lock, no
saved figures).  Processes are started only to be killed (SIGTERM, SIGKILL) or to drop root privileges for
the permission cases.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_helpers import OPERATOR_TOML, add_row, broken, set_value, write_dataset

from carecall_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
PY = sys.executable
D, T = dt.date, dt.datetime


# ----------------------------------------------------------------------------- helpers
def listing(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones too), relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_refused(code, err, expected_code, words, *, before=None, root=None):
    assert code == expected_code, err
    assert "Traceback" not in err
    assert err.count("error:") == 1, err           # one message
    low = err.lower()
    for w in words:
        assert w.lower() in low, f"{w!r} not in: {err}"
    if root is not None:
        after = listing(root)
        assert after == before, f"left behind: {sorted(after - before)}; removed: {sorted(before - after)}"


def tiny(root: Path, tables=None, *, fmt="parquet", config=OPERATOR_TOML) -> Path:
    return write_dataset(root, tables, fmt=fmt, config=config)


def sample_copy(root: Path, replace: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """data/sample with its files linked, and some replaced by corrupted copies."""
    root.mkdir(parents=True)
    for f in SAMPLE.iterdir():
        if f.name in (replace or {}):
            replace[f.name](root / f.name)
        else:
            (root / f.name).symlink_to(f)
    return root


def _csv_edit(table: str, edit: Callable[[list[str]], list[str]]):
    def build(root: Path) -> Path:
        d = tiny(root, fmt="csv")
        f = d / f"{table}.csv"
        f.write_text("\n".join(edit(f.read_text().splitlines())) + "\n")
        return d
    return build


def _raw_csv(table: str, content: bytes):
    def build(root: Path) -> Path:
        d = tiny(root, fmt="csv")
        (d / f"{table}.csv").write_bytes(content)
        return d
    return build


def _tables(tables, fmt="parquet", config=OPERATOR_TOML):
    return lambda root: tiny(root, tables, fmt=fmt, config=config)


def _config(text: bytes | None):
    def build(root: Path) -> Path:
        d = tiny(root, config=None)
        if text is not None:
            (d / "operator.toml").write_bytes(text)
        return d
    return build


def _parquet_with_duplicate(table: str, column: str, values):
    def build(root: Path) -> Path:
        d = tiny(root)
        t = pq.read_table(d / f"{table}.parquet")
        t = pa.Table.from_arrays(t.columns + [pa.array(values)], names=t.column_names + [column])
        pq.write_table(t, d / f"{table}.parquet")
        return d
    return build


def _corrupt_pages(dst: Path) -> None:
    """call_attempts of the sample with bytes flipped inside a data page (header and footer intact)."""
    src = SAMPLE / "call_attempts.parquet"
    b = bytearray(src.read_bytes())
    meta = pq.ParquetFile(src).metadata
    off = meta.row_group(0).column(1).data_page_offset + 40
    for i in range(off, off + 200):
        b[i] ^= 0x5A
    dst.write_bytes(bytes(b))


def _corrupt_activity_pages(column: int):
    """activity of the sample with bytes flipped inside one column's data page: the large table is read
    through by its aggregate scan (not probed first), whose failure must still be the named problem."""
    def corrupt(dst: Path) -> None:
        src = SAMPLE / "activity.parquet"
        b = bytearray(src.read_bytes())
        off = pq.ParquetFile(src).metadata.row_group(0).column(column).data_page_offset + 40
        for i in range(off, off + 200):
            b[i] ^= 0x5A
        dst.write_bytes(bytes(b))
    return corrupt


def _truncated(dst: Path) -> None:
    b = (SAMPLE / "sms.parquet").read_bytes()
    dst.write_bytes(b[: len(b) // 2])


def _offset_csv(root: Path, config: str = OPERATOR_TOML) -> Path:
    d = tiny(root, fmt={"call_attempts": "csv"}, config=config)
    f = d / "call_attempts.csv"
    f.write_text(f.read_text().replace("2024-01-03 10:00:00", "2024-01-03 10:00:00+01:00"))
    return d


def _extra_play(row):
    return broken("activity", add_row(row))


# ----------------------------------------------------------------------------- 1. bad data at the door
# id -> (build(root) -> data dir, words of the message); `evaluate DIR --out ...` must exit 2 and write nothing
BAD_DATA = {
    # files
    "csv_empty_0_bytes": (_raw_csv("sms", b""), ["sms", "empty_file", "sms.csv is empty (0 bytes)"]),
    "csv_header_line_missing": (_raw_csv("sms", b"\n"), ["sms", "empty_file", "no header"]),
    "csv_ragged_row_extra_field": (_csv_edit("call_cases", lambda t: t[:2] + [t[2] + ",extra"] + t[3:]),
                                   ["call_cases", "malformed_row", "line 3", "7 fields, the header has 6"]),
    "csv_ragged_row_missing_field": (_csv_edit("triggers", lambda t: t[:1] + [t[1].rsplit(",", 1)[0]] + t[2:]),
                                     ["triggers", "malformed_row", "line 2", "3 fields, the header has 4"]),
    "csv_unterminated_quote": (_csv_edit("triggers", lambda t: t[:1] + ['"' + t[1]] + t[2:]),
                               ["triggers", "malformed_row", "line 2"]),
    "csv_duplicate_header": (_csv_edit("customers", lambda t: [t[0].replace("segment", "gender")] + t[1:]),
                             ["customers", "gender", "duplicate_column", "written more than once"]),
    "csv_duplicate_header_contradicting": (
        _csv_edit("customers", lambda t: [t[0] + ",gender"] + [r + ",X" for r in t[1:]]),
        ["customers", "gender", "duplicate_column"]),
    "parquet_duplicate_column": (_parquet_with_duplicate("customers", "gender", ["X", "Y", "Z", "W"]),
                                 ["customers", "gender", "duplicate_column", "customers.parquet"]),
    "parquet_duplicate_key_column": (_parquet_with_duplicate("call_cases", "case_id", ["k9", "k8", "k7", "k6"]),
                                     ["call_cases", "case_id", "duplicate_column"]),
    "csv_not_utf8_value": (lambda root: _latin1_csv(root), ["customers", "unreadable_file", "not utf-8 text",
                                                            "line"]),
    "parquet_corrupt_data_pages": (lambda root: sample_copy(root, {"call_attempts.parquet": _corrupt_pages}),
                                   ["call_attempts", "unreadable_file", "call_attempts.parquet",
                                    "data cannot be read", "export the table again"]),
    "parquet_corrupt_activity_key": (lambda root: sample_copy(root, {"activity.parquet": _corrupt_activity_pages(0)}),
                                     ["activity", "unreadable_file", "activity.parquet", "data cannot be read"]),
    "parquet_corrupt_activity_amount": (lambda root: sample_copy(root, {"activity.parquet": _corrupt_activity_pages(4)}),
                                        ["activity", "unreadable_file", "activity.parquet", "data cannot be read"]),
    "parquet_truncated": (lambda root: sample_copy(root, {"sms.parquet": _truncated}),
                          ["sms", "unreadable_file", "sms.parquet"]),
    "parquet_zero_bytes": (lambda root: sample_copy(root, {"rg_events.parquet": lambda p: p.write_bytes(b"")}),
                           ["rg_events", "unreadable_file", "rg_events.parquet"]),
    # booleans
    "bool_yes_no": (_csv_edit("call_attempts", lambda t: [r.replace("False", "no").replace("True", "yes")
                                                          for r in t]),
                    ["call_attempts.answered", "type", "answered='no'", "not yes/no"]),
    "bool_y_n": (_csv_edit("rg_events", lambda t: [r.replace(",True", ",Y").replace(",False", ",N") for r in t]),
                 ["rg_events.via_call", "type", "'y'"]),
    "bool_stored_as_number": (_tables(broken("rg_events", lambda df: df.assign(via_call=[1, 0]))),
                              ["rg_events.via_call", "type", "BIGINT"]),
    # amounts outside the exact-decimal range
    "amount_1e15": (_tables(broken("activity", set_value("wagered", 0, 1e15))),
                    ["activity.wagered", "range", "999,999,999,999", "wagered=1000000000000000.0"]),
    "amount_1e300": (_tables(broken("activity", set_value("won", 2, 1e300))),
                     ["activity.won", "range", "won=1e+300"]),
    "deposit_1e13": (_tables(broken("deposits", set_value("amount", 1, 1e13))),
                     ["deposits.amount", "range", "amount=10000000000000.0"]),
    "amount_negative": (_tables(broken("activity", set_value("wagered", 1, -1.0))),
                        ["activity.wagered", "range", "wagered=-1.0"]),
    "amount_missing": (_tables(broken("deposits", set_value("amount", 0, None))),
                       ["deposits.amount", "not_null", "amount=null"]),
    "amount_infinite_one_problem": (_tables(broken("activity", set_value("won", 0, float("inf")))),
                                    ["activity.won", "finite", "1 problem"]),
    "sample_amount_1e15": (lambda root: sample_copy(root, {"deposits.parquet": _huge_deposit}),
                           ["deposits.amount", "range", "amount=1000000000000000.0", "231,689"]),
    # rows that disagree across tables
    "attempt_before_case_opened": (_tables(broken("call_attempts", set_value("attempted_at", 0, T(2024, 1, 1, 9)))),
                                   ["call_attempts.attempted_at", "attempt_before_case",
                                    "call_cases.opened_on=2024-01-03", "case_id='k1'"]),
    "sms_before_any_attempt": (_tables(broken("sms", set_value("sent_at", 0, T(2024, 1, 3, 9)))),
                               ["sms.sent_at", "sms_before_attempt", "first attempt=2024-01-03 10:00:00"]),
    "sms_for_case_without_attempts": (_tables(broken("sms", add_row({"case_id": "k2", "sent_at": T(2024, 1, 7, 9),
                                                                      "kind": "missed_call_followup"}))),
                                      ["sms.sent_at", "sms_before_attempt", "case_id='k2'"]),
    "play_after_closure": (_tables(_extra_play({"customer_id": "c2", "date": D(2024, 3, 5), "product": "slots",
                                                "wagered": 5.0, "won": 0.0})),
                           ["activity.date", "play_after_closure", "customers.closed_on=2024-03-01",
                            "customer_id='c2'"]),
    "case_before_registration": (_tables(broken("customers", set_value("registered_on", 0, D(2024, 1, 4)))),
                                 ["call_cases.opened_on", "case_before_registration",
                                  "customers.registered_on=2024-01-04"]),
    # operator.toml
    "toml_latin1_byte": (_config('operator = "Sm\xe5spel"\ncurrency = "SEK"\n'.encode("latin-1")),
                         ["operator.toml", "unreadable_file", "not utf-8", "line 1", "re-save"]),
    "toml_malformed": (_config(b'operator = "Demo"\ncurrency = SEK\n'),
                       ["operator.toml", "unreadable_file", "line 2", "valid toml"]),
    "toml_missing": (_config(None), ["operator.toml", "missing_file"]),
    "toml_missing_currency": (_config(b'operator = "Demo"\n'), ["operator.toml.currency", "required_key"]),
    "toml_bad_threshold": (_config(b'operator = "Demo"\ncurrency = "SEK"\nsmall_cell_threshold = 0\n'),
                           ["small_cell_threshold", "whole number >= 1"]),
    # the classics still named
    "missing_required_column": (_tables(broken("activity", lambda df: df.drop(columns=["won"]))),
                                ["activity.won", "required_column", "columns found"]),
    "column_name_case": (_tables(broken("customers", lambda df: df.rename(columns={"gender": "Gender"}))),
                         ["customers.gender", "required_column", "gender"]),
    "vocabulary_case": (_tables(broken("call_cases", set_value("trigger", 0, "High_loss"))),
                        ["call_cases.trigger", "vocabulary", "'High_loss'"]),
    "duplicate_key": (_tables(broken("call_cases", set_value("case_id", 1, "k1"))),
                      ["call_cases.case_id", "unique"]),
    "foreign_key": (_tables(broken("sms", set_value("case_id", 0, "k99"))), ["sms.case_id", "foreign_key", "k99"]),
    "date_placeholder_9999": (_tables(broken("customers", set_value("closed_on", 0, D(9999, 12, 31)))),
                              ["customers.closed_on", "range", "9999-12-31"]),
    "timestamp_offset_without_zone": (lambda root: _offset_csv(root),
                                      ["call_attempts.attempted_at", "timezone", "+01:00"]),
}


def _latin1_csv(root: Path) -> Path:
    d = tiny(root, fmt="csv")
    f = d / "customers.csv"
    f.write_bytes(f.read_bytes().replace(b"Demo Spel", b"Sm\xe5 Spel"))
    return d


def _huge_deposit(dst: Path) -> None:
    t = pq.read_table(SAMPLE / "deposits.parquet").to_pandas()
    t.loc[3, "amount"] = 1e15
    t.to_parquet(dst, index=False)


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_named_refusal_and_nothing_is_written(case, tmp_path, capsys):
    build, words = BAD_DATA[case]
    data = build(tmp_path / "data")
    before = listing(tmp_path)
    code, _, err = run(["evaluate", data, "--out", tmp_path / "out" / "metrics.json", "--quiet"], capsys)
    assert_refused(code, err, 2, [str(data)] + words + ["does not meet the data contract"], before=before,
                   root=tmp_path)


@pytest.mark.parametrize("case, rule", [("csv_ragged_row_extra_field", "malformed_row"),
                                        ("csv_duplicate_header", "duplicate_column"), ("amount_1e15", "range"),
                                        ("attempt_before_case_opened", "attempt_before_case"),
                                        ("toml_latin1_byte", "unreadable_file"), ("csv_empty_0_bytes", "empty_file")])
def test_validate_lists_the_same_problem_as_a_table(case, rule, tmp_path, capsys):
    build, _ = BAD_DATA[case]
    data = build(tmp_path / "data")
    before = listing(tmp_path)
    code, out, err = run(["validate", data], capsys)
    assert code == 1 and "Traceback" not in err
    assert "FAILED" in out and "1 problem" in out and rule in out
    assert listing(tmp_path) == before


# ----------------------------------------------------------------------------- 2. unusual but valid data
VALID = {
    "sms_other_kind_before_attempt": _tables(broken("sms", set_value("sent_at", 1, T(2024, 1, 2, 9)))),
    "winnings_after_closure_no_stake": _tables(_extra_play({"customer_id": "c2", "date": D(2024, 3, 5),
                                                            "product": "slots", "wagered": 0.0, "won": 40.0})),
    "attempt_on_the_opening_day": _tables(broken("call_attempts", set_value("attempted_at", 0, T(2024, 1, 3, 0, 1)))),
    "bool_text_true_false_any_case": _csv_edit("call_attempts", lambda t: [r.replace("False", "FALSE") for r in t]),
    "bool_text_t_f_1_0": _csv_edit("rg_events", lambda t: [t[0], t[1].replace("True", "t"),
                                                           t[2].replace("False", "0")]),
    "amount_just_inside_the_range": _tables(broken("activity", set_value("wagered", 0, 999_999_999_999.0))),
    "csv_crlf_line_ends": lambda root: _crlf(root),
    "csv_semicolons": lambda root: _semicolons(root),
    "toml_utf8_bom": lambda root: _bom(root),
    "csv_header_only_sms": _raw_csv("sms", b"case_id,sent_at,kind\n"),
    "timestamp_offset_with_zone": lambda root: _offset_csv(root, OPERATOR_TOML + 'timezone = "Europe/Stockholm"\n'),
}


def _crlf(root):
    d = tiny(root, fmt="csv")
    for f in d.glob("*.csv"):
        f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    return d


def _semicolons(root):
    d = tiny(root, fmt="csv")
    for f in d.glob("*.csv"):
        f.write_text(f.read_text().replace(",", ";"))
    return d


def _bom(root):
    d = tiny(root, config=None)
    (d / "operator.toml").write_bytes(b"\xef\xbb\xbf" + OPERATOR_TOML.encode())
    return d


@pytest.mark.parametrize("case", list(VALID))
def test_unusual_but_valid_data_pass(case, tmp_path, capsys):
    data = VALID[case](tmp_path / "data")
    code, out, err = run(["validate", data], capsys)
    assert code == 0, out + err
    assert "conform" in out and "Traceback" not in err


# ----------------------------------------------------------------------------- 3. bad arguments and files
def _design(text: str, name: str = "design.toml"):
    def make(tmp: Path) -> Path:
        p = tmp / name
        p.write_text(text)
        return p
    return make


DESIGNS = {
    "design_not_toml": (_design("pre_window = [\n"), ["design.toml", "not valid toml"]),
    "design_not_json": (_design('{"pre_window": 84,', "design.json"), ["design.json", "not valid json", "line 1"]),
    "design_unknown_field": (_design("pre_windw = 84\n"), ["design.toml", "unknown field", "pre_windw"]),
    "design_bad_value": (_design('pre_window = "x"\n'), ["design.toml", "pre_window", "'x'"]),
    "design_bad_matching_field": (_design("[matching]\nratio5 = 2\n"), ["design.toml", "matching", "ratio5"]),
    "design_not_a_table": (_design("[1, 2]", "design.json"), ["design.json", "expected a table"]),
    "design_latin1": (lambda tmp: _write_bytes(tmp / "design.toml", b"contact = \"r\xe9ached\"\n"),
                      ["design.toml", "not utf-8"]),
    "design_missing": (lambda tmp: tmp / "nowhere.toml", ["nowhere.toml", "does not exist"]),
    "design_wrong_extension": (_design("x: 1\n", "design.yaml"), ["design.yaml", ".toml or .json"]),
}


def _write_bytes(p: Path, b: bytes) -> Path:
    p.write_bytes(b)
    return p


@pytest.mark.parametrize("case", list(DESIGNS))
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_malformed_design_file_names_the_file(case, command, tmp_path, capsys):
    make, words = DESIGNS[case]
    design = make(tmp_path)
    before = listing(tmp_path)
    argv = (["evaluate", SAMPLE, "--out", tmp_path / "m.json"] if command == "evaluate" else
            ["export", "--data", SAMPLE, "--out", tmp_path / "bundle"]) + ["--design", design, "--quiet"]
    code, _, err = run(argv, capsys)
    assert_refused(code, err, 2, words, before=before, root=tmp_path)


ARGS = {
    "quarter_malformed": (["report", "--data", SAMPLE, "--quarter", "2025Q7"], ["2025Q7", "e.g. 2025Q3"]),
    "quarter_outside_data": (["report", "--data", SAMPLE, "--quarter", "2023Q2"], ["outside the data",
                                                                                    "2024Q1 to 2025Q4"]),
    "pool_quarters_zero": (["report", "--data", SAMPLE, "--quarter", "2025Q4", "--pool-quarters", "0"],
                           ["pool_quarters must be at least 1, got 0"]),
    "pool_quarters_negative": (["report", "--data", SAMPLE, "--quarter", "2025Q4", "--pool-quarters", "-1"],
                               ["pool_quarters must be at least 1, got -1"]),
    "timeout_zero": (["report", "--data", SAMPLE, "--quarter", "2025Q4", "--timeout", "0"],
                     ["timeout must be at least 1"]),
    "report_data_missing": (["report", "--data", "/nonexistent/data", "--quarter", "2025Q4"],
                            ["/nonexistent/data", "does not exist"]),
    "evaluate_data_missing": (["evaluate", "/nonexistent/data", "--out", "{tmp}/m.json"],
                              ["/nonexistent/data", "does not exist"]),
    "evaluate_data_is_a_file": (["evaluate", SAMPLE / "operator.toml", "--out", "{tmp}/m.json"],
                                ["operator.toml", "is a file, not a folder"]),
    "validate_data_missing": (["validate", "/nonexistent/data"], ["/nonexistent/data", "does not exist"]),
    "export_threshold_lowered": (["export", "--data", SAMPLE, "--out", "{tmp}/b", "--threshold", "5"],
                                 ["threshold 5", "below the operator's small_cell_threshold 10"]),
    "export_threshold_zero": (["export", "--data", SAMPLE, "--out", "{tmp}/b", "--threshold", "0"],
                              ["small-cell threshold must be a whole number >= 1"]),
    "export_quarter_malformed": (["export", "--data", SAMPLE, "--out", "{tmp}/b", "--quarter", "Q3 2025"],
                                 ["e.g. 2025Q3"]),
    "simulate_no_customers": (["simulate", "{tmp}/sim", "--customers", "0"], ["customers", ">= 1"]),
    "evaluate_out_not_json_or_csv": (["evaluate", SAMPLE, "--out", "{tmp}/m.parquet"],
                                     ["must end in .json or .csv", ".parquet"]),
    "compare_one_bundle": (["compare", "{tmp}", "--out", "{tmp}/cmp"], ["no manifest.json"]),
    "pseudonymise_src_missing": (["pseudonymise", "/nonexistent/data", "{tmp}/p"], ["/nonexistent/data"]),
}


@pytest.mark.parametrize("case", list(ARGS))
def test_bad_arguments_are_one_message_with_exit_2(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CARECALL_PSEUDONYM_KEY", "k" * 32)
    argv, words = ARGS[case]
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in argv] + ["--quiet"] * (argv[0] in ("report",
                                                                                                "evaluate",
                                                                                                "export"))
    before = listing(tmp_path)
    code, _, err = run(argv, capsys)
    assert_refused(code, err, 2, words, before=before, root=tmp_path)


def test_usage_errors_exit_2_without_traceback(capsys):
    assert main(["no-such-command"]) == 2
    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
    assert main(["--help"]) == 0


def test_debug_shows_the_traceback_and_only_then(tmp_path, capsys):
    code, _, err = run(["evaluate", "/nonexistent", "--out", tmp_path / "m.json", "--quiet"], capsys)
    assert code == 2 and "Traceback" not in err
    code, _, err = run(["--debug", "evaluate", "/nonexistent", "--out", tmp_path / "m.json", "--quiet"], capsys)
    assert code == 2 and "Traceback (most recent call last)" in err and "PathNotFoundError" in err
    code, _, err = run(["evaluate", "/nonexistent", "--out", tmp_path / "m.json", "--quiet", "--debug"], capsys)
    assert "Traceback" in err


def test_an_internal_error_is_exit_1_with_a_hint(monkeypatch, tmp_path, capsys):
    import importlib

    ev_module = importlib.import_module("carecall_eval.evaluate")   # the module (the package's name is the function)

    def boom(*a, **k):
        raise KeyError("some_column")

    monkeypatch.setattr(ev_module, "evaluate", boom)
    code, _, err = run(["evaluate", SAMPLE, "--out", tmp_path / "m.json", "--quiet"], capsys)
    assert code == 1 and "internal error (KeyError" in err and "--debug" in err and "Traceback" not in err


def test_the_cli_stays_lazy():
    """carecall-eval --help imports no numpy, pandas, duckdb or statsmodels (it stays well under a second)."""
    code = ("import sys, carecall_eval.cli as c; p = c.build_parser(); p.format_help(); "
            "bad = [m for m in ('numpy', 'pandas', 'duckdb', 'statsmodels', 'pyarrow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([PY, "-c", code], check=True, cwd=ROOT)


# ----------------------------------------------------------------------------- 4. output paths
def _afile(tmp: Path) -> Path:
    (tmp / "afile").write_text("not a folder")
    return tmp / "afile"


def _user_folder(tmp: Path, name="mine", files=("notes.txt",)) -> Path:
    d = tmp / name
    d.mkdir()
    for f in files:
        (d / f).write_text("the user's own file")
    return d


def _simulated(tmp: Path) -> Path:
    from carecall_eval.simulate import simulate

    simulate(tmp / "sim", customers=30, seed=2)
    return tmp / "sim"


OUTPUTS = {
    # (make the awkward target, argv given the target, words)
    "evaluate_out_is_a_folder": (lambda tmp: _user_folder(tmp), lambda t: ["evaluate", SAMPLE, "--out", t],
                                 ["existing folder"]),
    "evaluate_out_through_a_file": (lambda tmp: _afile(tmp) / "m.json",
                                    lambda t: ["evaluate", SAMPLE, "--out", t], ["afile is a file, not a folder"]),
    "export_out_is_users_folder_with_manifest": (
        lambda tmp: _user_folder(tmp, files=("manifest.json", "notes.txt")),
        lambda t: ["export", "--data", SAMPLE, "--out", t], ["refusing to replace", "not written by carecall_eval"]),
    "export_out_through_a_file": (lambda tmp: _afile(tmp) / "bundle",
                                  lambda t: ["export", "--data", SAMPLE, "--out", t], ["is a file, not a folder"]),
    "export_out_over_simulated_data": (_simulated, lambda t: ["export", "--data", SAMPLE, "--out", t],
                                       ["holds carecall_eval simulated data, not bundle"]),
    "export_out_is_a_file": (lambda tmp: _afile(tmp), lambda t: ["export", "--data", SAMPLE, "--out", t],
                             ["a file of that name exists"]),
    "simulate_over_unrelated_files": (lambda tmp: _user_folder(tmp, files=("thesis.docx", "data.csv")),
                                      lambda t: ["simulate", t, "--customers", "30"],
                                      ["refusing to replace", "not written by carecall_eval"]),
    "simulate_through_a_file": (lambda tmp: _afile(tmp) / "sim", lambda t: ["simulate", t, "--customers", "30"],
                                ["is a file, not a folder"]),
    "compare_out_is_users_folder": (lambda tmp: _user_folder(tmp),
                                    lambda t: ["compare", SAMPLE, SAMPLE, "--out", t], ["refusing to replace"]),
    "compare_out_through_a_file": (lambda tmp: _afile(tmp) / "cmp",
                                   lambda t: ["compare", SAMPLE, SAMPLE, "--out", t], ["is a file, not a folder"]),
    "pseudonymise_dst_is_users_folder": (lambda tmp: _user_folder(tmp),
                                         lambda t: ["pseudonymise", SAMPLE, t], ["refusing to replace"]),
    "pseudonymise_dst_inside_src": (lambda tmp: tmp / "data" / "copy",
                                    lambda t: ["pseudonymise", t.parent, t], ["is the data directory", "inside it"]),
    "pseudonymise_dst_is_src": (lambda tmp: tmp / "data", lambda t: ["pseudonymise", t, t],
                                ["is the data directory"]),
    "report_out_through_a_file": (lambda tmp: _afile(tmp) / "reports",
                                  lambda t: ["report", "--data", SAMPLE, "--quarter", "2025Q4", "--out", t],
                                  ["is a file, not a folder"]),
    "report_folder_is_users_folder": (lambda tmp: _user_folder(tmp / "reports" / "Demo_Spel", name="2024Q1"),
                                      lambda t: ["report", "--data", t.parents[2] / "data", "--quarter", "2024Q1",
                                                 "--out", t.parents[1]], ["refusing to replace", "2024Q1"]),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_unusable_output_paths_are_refused_before_any_work(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CARECALL_PSEUDONYM_KEY", "k" * 32)
    make, argv, words = OUTPUTS[case]
    tiny(tmp_path / "data")
    if case == "report_folder_is_users_folder":
        (tmp_path / "reports" / "Demo_Spel").mkdir(parents=True)
    target = make(tmp_path)
    before = listing(tmp_path)
    t0 = time.perf_counter()
    code, _, err = run(argv(target) + ["--quiet"] * (argv(target)[0] in ("evaluate", "export", "report")), capsys)
    assert_refused(code, err, 2, words, before=before, root=tmp_path)
    assert time.perf_counter() - t0 < 60          # refused before the data are evaluated


def _drop_root_cmd(argv: list[str]) -> list[str]:
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-m", "carecall_eval.cli",
            *map(str, argv)]


def _unprivileged_available() -> bool:
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


def _as_user(argv, *, tmp: Path) -> subprocess.CompletedProcess:
    """Run the CLI as an unprivileged user (root reads and writes through any permission)."""
    env = {**os.environ, "CARECALL_CACHE": "0", "HOME": str(tmp), "PYTHONPATH": str(ROOT),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = _drop_root_cmd(argv) if os.geteuid() == 0 else [PY, "-m", "carecall_eval.cli", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp), timeout=300)


@pytest.fixture
def open_tmp():
    """A working folder any user can enter (pytest's own are private to root)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="carecall-test-perm-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(d, ignore_errors=True)


def _open_up(d: Path) -> None:
    for p in d.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


PERMISSIONS = {
    # (build, restrict, argv, exit code, words)
    "data_file_unreadable": (lambda d: tiny(d / "data"), lambda d: (d / "data" / "customers.parquet").chmod(0),
                             lambda d: ["validate", d / "data"], 1, ["customers", "unreadable_file",
                                                                     "permission denied"]),
    "data_dir_unreadable": (lambda d: tiny(d / "data"), lambda d: (d / "data").chmod(0),
                            lambda d: ["validate", d / "data"], 2, ["cannot read data directory",
                                                                    "permission denied"]),
    "operator_toml_unreadable": (lambda d: tiny(d / "data"), lambda d: (d / "data" / "operator.toml").chmod(0),
                                 lambda d: ["validate", d / "data"], 1, ["operator.toml", "permission denied"]),
    "evaluate_out_not_writable": (lambda d: (tiny(d / "data"), (d / "ro").mkdir()), lambda d: (d / "ro").chmod(0o555),
                                  lambda d: ["evaluate", d / "data", "--out", d / "ro" / "m.json"], 2,
                                  ["not writable"]),
    "export_out_not_writable": (lambda d: (tiny(d / "data"), (d / "ro").mkdir()), lambda d: (d / "ro").chmod(0o555),
                                lambda d: ["export", "--data", d / "data", "--out", d / "ro" / "b"], 2,
                                ["not writable"]),
    "simulate_out_not_writable": (lambda d: (d / "ro").mkdir(), lambda d: (d / "ro").chmod(0o555),
                                  lambda d: ["simulate", d / "ro" / "sim", "--customers", "20"], 2,
                                  ["not writable"]),
    "report_out_not_writable": (lambda d: (tiny(d / "data"), (d / "ro").mkdir()), lambda d: (d / "ro").chmod(0o555),
                                lambda d: ["report", "--data", d / "data", "--quarter", "2024Q1", "--out",
                                           d / "ro" / "reports"], 2, ["not writable"]),
}


@pytest.mark.skipif(not _unprivileged_available(), reason="running as root without setpriv: permissions "
                                                           "cannot stop root, so these cases cannot be tried")
@pytest.mark.parametrize("case", list(PERMISSIONS))
def test_permission_problems_are_named(case, open_tmp):
    build, restrict, argv, code, words = PERMISSIONS[case]
    build(open_tmp)
    _open_up(open_tmp)
    restrict(open_tmp)
    before = listing(open_tmp) if case != "data_dir_unreadable" else None
    r = _as_user(argv(open_tmp), tmp=open_tmp)
    assert r.returncode == code, r.stdout + r.stderr
    text = (r.stdout + r.stderr).lower()
    assert "traceback" not in text
    for w in words:
        assert w.lower() in text, text
    if before is not None:
        assert listing(open_tmp) == before


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path, capsys):
    from carecall_eval.writer import _Lock

    target = tmp_path / "sim"
    with _Lock(target, "simulated data"):
        code, _, err = run(["simulate", target, "--customers", "20"], capsys)
    assert_refused(code, err, 2, ["another carecall-eval run is writing", str(target)])
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == []        # the lock file went with the first run


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path):
    from carecall_eval.writer import write_text

    dead = 2 ** 22 + 12345                       # no such process
    stale = tmp_path / f".m.json.carecall-partial-{dead}-abcd1234"
    stale.write_text("{half")
    write_text(tmp_path / "m.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                        (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    from carecall_eval.writer import output_dir, write_text

    old = os.umask(umask)
    try:
        write_text(tmp_path / "m.json", "{}")
        with output_dir(tmp_path / "folder", kind="demo") as d:
            (d / "a.csv").write_text("x")
            (d / "sub").mkdir()
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "folder" / "a.csv").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "folder" / "sub").stat().st_mode & 0o777 == dir_mode


def test_simulate_replaces_an_earlier_simulation_and_adopts_an_unmarked_one(tmp_path, capsys):
    sim = _simulated(tmp_path)
    assert main(["simulate", str(sim), "--customers", "25", "--seed", "3"]) == 0
    old = tmp_path / "old_sample"
    shutil.copytree(sim, old)
    (old / ".carecall-output").unlink()          # as data/sample was written before markers existed
    assert main(["simulate", str(old), "--customers", "25"]) == 0
    assert (old / ".carecall-output").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    capsys.readouterr()


def test_a_failed_output_leaves_no_parent_folders_it_created(tmp_path, capsys):
    from carecall_eval.errors import InputError
    from carecall_eval.writer import output_dir

    with pytest.raises(RuntimeError):
        with output_dir(tmp_path / "a" / "b" / "c", kind="demo") as d:
            (d / "x").write_text("half")
            raise RuntimeError("the computation failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="not written by carecall_eval"):
        with output_dir(_user_folder(tmp_path), kind="demo"):
            pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's own file"


# ----------------------------------------------------------------------------- 5. tampered bundles
def _bundle(path: Path, operator="A") -> Path:
    from carecall_eval.compare.bundle import TABLES, write_bundle

    tables = {name: pd.DataFrame({"x": [1, 2]}) for name in TABLES}
    manifest = {"format": "carecall_eval.bundle", "format_version": 1, "operator": operator, "definitions": {},
                "small_cell_threshold": 10, "period": {}, "suppression": {}}
    return write_bundle(path, manifest, tables)


def _edit_manifest(fn):
    def tamper(b: Path):
        m = json.loads((b / "manifest.json").read_text())
        fn(m)
        (b / "manifest.json").write_text(json.dumps(m))
    return tamper


TAMPERED = {
    "manifest_not_json": (lambda b: (b / "manifest.json").write_text('{"format": '), ["manifest.json",
                                                                                        "not valid json"]),
    "manifest_not_utf8": (lambda b: (b / "manifest.json").write_bytes(b'{"operator": "\xe5"}'),
                          ["manifest.json", "not utf-8"]),
    "manifest_a_list": (lambda b: (b / "manifest.json").write_text("[]"), ["manifest.json", "json object"]),
    "manifest_missing": (lambda b: (b / "manifest.json").unlink(), ["no manifest.json"]),
    "manifest_field_missing": (_edit_manifest(lambda m: m.pop("operator")), ["manifest.json", "operator",
                                                                             "missing"]),
    "manifest_wrong_format": (_edit_manifest(lambda m: m.update(format="something.else")),
                              ["format is 'something.else'"]),
    "manifest_newer_version": (_edit_manifest(lambda m: m.update(format_version=99)), ["version 99", "upgrade"]),
    "manifest_table_entry_broken": (_edit_manifest(lambda m: m["tables"].update(km={"file": "../x.csv"})),
                                    ["manifest.json", "km", "malformed"]),
    "table_changed_after_export": (lambda b: (b / "metrics.csv").write_text("x\n1\n3\n"),
                                   ["metrics.csv", "sha-256", "changed after export"]),
    "table_missing": (lambda b: (b / "flow.csv").unlink(), ["flow.csv", "missing"]),
    "bundle_is_a_file": (lambda b: (shutil.rmtree(b), b.write_text("x")), ["is a file, not a folder"]),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_bundle_is_refused_naming_the_file(case, tmp_path, capsys):
    from carecall_eval.compare.bundle import read_bundle

    a, b = _bundle(tmp_path / "a"), _bundle(tmp_path / "b", "B")
    read_bundle(a)                                     # untouched, it reads
    tamper, words = TAMPERED[case]
    tamper(a)
    before = listing(tmp_path)
    code, _, err = run(["compare", a, b, "--out", tmp_path / "cmp"], capsys)
    assert_refused(code, err, 2, words, before=before, root=tmp_path)


# ----------------------------------------------------------------------------- 6. degenerate but valid data
@pytest.fixture(scope="module")
def degenerate(tmp_path_factory, simulated):
    """A small simulated operator, and copies with no reached customer, no phone case, and empty tables."""
    base, _ = simulated(customers=800, seed=5)
    root = tmp_path_factory.mktemp("degenerate")
    out = {}

    def variant(name, fn):
        d = root / name
        shutil.copytree(base, d)
        (d / ".carecall-output").unlink()
        fn(d)
        out[name] = d

    def noreach(d):
        a = pd.read_parquet(d / "call_attempts.parquet")
        a = a.assign(answered=False, duration_s=None, outcome=None, reception=None)
        a.to_parquet(d / "call_attempts.parquet", index=False)

    def nophone(d):
        c = pd.read_parquet(d / "call_cases.parquet")
        c.assign(channel="letter").to_parquet(d / "call_cases.parquet", index=False)

    def empty(d):
        for f in d.glob("*.parquet"):
            if f.name != "products.parquet":
                t = pq.read_table(f)
                pq.write_table(t.slice(0, 0), f)

    variant("noreach", noreach)
    variant("nophone", nophone)
    variant("empty", empty)
    return out


DEGENERATE = {
    "no_reached_customer_evaluate": ("noreach", lambda d, t: ["evaluate", d, "--out", t / "m.json"], 1,
                                     ["no phone case in the cohort was reached", "0 reached",
                                      "cannot be computed"]),
    "no_reached_customer_export": ("noreach", lambda d, t: ["export", "--data", d, "--out", t / "b"], 1,
                                   ["no phone case in the cohort was reached"]),
    "no_phone_cases": ("nophone", lambda d, t: ["evaluate", d, "--out", t / "m.json"], 2,
                       ["no call_cases with channel 'phone'", "'letter'"]),
    "empty_tables_evaluate": ("empty", lambda d, t: ["evaluate", d, "--out", t / "m.json"], 1,
                              ["no rows", "nothing to evaluate"]),
    "empty_tables_quarter_latest": ("empty", lambda d, t: ["report", "--data", d, "--quarter", "latest", "--out",
                                                           t / "r"], 2,
                                    ["--quarter latest", "no activity rows", "no complete quarter"]),
    "empty_tables_named_quarter": ("empty", lambda d, t: ["report", "--data", d, "--quarter", "2025Q1", "--out",
                                                          t / "r"], 2, ["no activity rows"]),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_degenerate_data_give_one_named_refusal_and_no_files(case, degenerate, tmp_path, capsys):
    name, argv, code, words = DEGENERATE[case]
    before = listing(tmp_path)
    got, _, err = run(argv(degenerate[name], tmp_path) + ["--quiet"], capsys)
    assert_refused(got, err, code, words, before=before, root=tmp_path)


def test_no_reached_customer_report_has_every_figure_not_available(degenerate, tmp_path):
    """The report's content for the same data: complete metrics files, each figure 'not available: reason'."""
    from carecall_eval.report.context import build_quarterly

    rep = build_quarterly(degenerate["noreach"], "2025Q4", placebo=False, pool_quarters=1,
                          selfcheck_replicates=0)
    assert rep.evaluation is None and "no phone case in the cohort was reached" in rep.missing["evaluation"]
    written = rep.write_metrics(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]
    doc = json.loads(written[0].read_text())
    na = [m for m in doc["metrics"] if m["estimator"] == "evaluation"]
    assert {"spending", "retention", "reach", "actions"} <= {m["metric"] for m in na}
    assert all(m["estimate"] is None and m["note"].startswith("not available: evaluate: no phone case")
               for m in na)
    assert doc["settings"]["not_available"]["evaluation"].startswith("evaluate: no phone case")
    csv = pd.read_csv(written[1])
    assert len(csv) == len(doc["metrics"])
    people = rep.for_people()                        # the notebook's view works without an evaluation
    assert people.evaluation is None and "reach_rate" in " ".join(people.kpis["metric"])


# ----------------------------------------------------------------------------- 7. killed processes
def _cli(argv, **kw) -> subprocess.Popen:
    env = {**os.environ, "CARECALL_CACHE": "0", "PYTHONPATH": str(ROOT)}
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.Popen([PY, "-m", "carecall_eval.cli", *map(str, argv)], env=env, text=True, **kw)


def _wait_for(cond, timeout=120.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = cond()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _partials(root: Path):
    return [p for p in root.rglob("*") if ".carecall-partial-" in p.name]


def test_sigterm_while_simulating_leaves_nothing(tmp_path):
    out = tmp_path / "sim"
    p = _cli(["simulate", out, "--customers", "30000"])
    _wait_for(lambda: _partials(tmp_path))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leaves_no_worker_process_behind(tmp_path):
    """The self-check's forked workers end with their parent, even one killed by SIGKILL (no clean-up ran)."""
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:
        p = _cli(["selfcheck", SAMPLE, "--replicates", "40", "--jobs", "2"], stderr=fh)

        def workers():
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            return kids if len(kids) >= 2 else None

        kids = _wait_for(workers, timeout=300)           # killed while (at least) two workers run
        p.kill()
        p.communicate(timeout=60)
    assert len(kids) >= 2
    _wait_for(lambda: not [k for k in kids if Path(f"/proc/{k}").exists()], timeout=30)


def test_sigkill_while_simulating_is_cleaned_up_by_the_next_run(tmp_path):
    from carecall_eval.simulate import simulate

    out = tmp_path / "sim"
    p = _cli(["simulate", out, "--customers", "30000"])
    _wait_for(lambda: _partials(tmp_path))
    p.kill()
    p.communicate(timeout=60)
    left = _partials(tmp_path)
    assert left and not out.exists()                   # what SIGKILL leaves: hidden, not a result
    assert all(x.name.startswith(".") for x in tmp_path.iterdir())
    simulate(out, customers=20)
    assert not _partials(tmp_path) and (out / ".carecall-output").is_file()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sim"]


def test_sigterm_while_exporting_leaves_the_earlier_bundle_as_it_was(tmp_path):
    """SIGTERM while the export's self-check runs (the bundle is written at the end): exit 143, the
    earlier bundle byte for byte as it was, no partial or hidden folder."""
    earlier = _bundle(tmp_path / "bundle")
    before = {f.name: f.read_bytes() for f in earlier.iterdir()}
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:
        p = _cli(["export", "--data", SAMPLE, "--out", earlier, "--no-placebo"], stderr=fh)
        # the last estimator before the self-check has reported: the self-check's replicates run now
        _wait_for(lambda: "sensitivity:" in log.read_text(), timeout=300)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)
    err = log.read_text()
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert {f.name: f.read_bytes() for f in earlier.iterdir()} == before
    log.unlink()
    assert not _partials(tmp_path) and not [x for x in tmp_path.iterdir() if x.name.startswith(".")]


@pytest.mark.slow
def test_sigterm_while_the_report_notebook_runs_leaves_nothing(tmp_path, simulated):
    """A report killed while its notebook runs: no staging folder, no saved figures (they hold ids) anywhere."""
    data, _ = simulated(customers=800, seed=5)
    out = tmp_path / "reports"
    tmp_before = set(Path("/tmp").iterdir())
    p = _cli(["report", "--data", data, "--quarter", "latest", "--out", out, "--fast", "--quiet"])
    pickle_file = _wait_for(lambda: next(iter(out.rglob("context.pickle")), None), timeout=600)
    assert (pickle_file.stat().st_mode & 0o777) in (0o600, 0o644) and pickle_file.parent.stat().st_mode & 0o077 == 0
    time.sleep(5)                                      # the kernel is starting or running cells
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 143, err
    assert not list(out.rglob("*.pickle")) and not _partials(tmp_path)
    assert not [x for x in out.rglob("*") if x.is_file()]
    # no private folder of saved figures outside the output either (the old renderer's carecall_report_*)
    new = [x for x in set(Path("/tmp").iterdir()) - tmp_before
           if x.name.startswith(("carecall_report_", "carecall-private-"))]
    assert not new


# ----------------------------------------------------------------------------- 8. privacy of what people read
def _flow(contact, comparison, steps=("tenure under 84 days", "self-excluded", "later index")):
    """A cohort flow from candidates and exclusions per step (as build_cohort makes it)."""
    rows, rem = [], {"contact": contact[0], "comparison": comparison[0]}
    rows.append({"step": "candidates", "excluded_contact": 0, "remaining_contact": rem["contact"],
                 "excluded_comparison": 0, "remaining_comparison": rem["comparison"]})
    for i, s in enumerate(steps):
        rem = {"contact": rem["contact"] - contact[i + 1], "comparison": rem["comparison"] - comparison[i + 1]}
        rows.append({"step": s, "excluded_contact": contact[i + 1], "remaining_contact": rem["contact"],
                     "excluded_comparison": comparison[i + 1], "remaining_comparison": rem["comparison"]})
    rows.append({"step": "eligible", "excluded_contact": 0, "remaining_contact": rem["contact"],
                 "excluded_comparison": 0, "remaining_comparison": rem["comparison"]})
    return pd.DataFrame(rows)


def _numbers(cells) -> list[int]:
    return [int(str(c).replace(",", "")) for c in cells if str(c).replace(",", "").isdigit()]


@pytest.mark.parametrize("contact, comparison", [
    ((741, 41, 15, 37), (440, 7, 0, 20)),       # the case: 440 then 433 gave the 7 back
    ((500, 3, 0, 0), (300, 0, 0, 0)),           # one small exclusion and nothing to pair it with
    ((120, 4, 5, 0), (80, 9, 1, 0)),            # several small cells
    ((12, 2, 0, 0), (9, 0, 0, 0)),              # small groups: totals withheld too
])
def test_cohort_flow_table_gives_no_count_back_by_subtraction(contact, comparison):
    from carecall_eval.report.display import flow_table

    t = 10
    shown = flow_table(_flow(contact, comparison), t)
    assert "remaining" not in " ".join(shown.columns)            # the running counts would give each step back
    for grp, parts in (("contact", contact), ("comparison", comparison)):
        cells = list(shown[grp])
        values = _numbers(cells)
        assert not any(0 < v < t for v in values), cells
        total, rest = cells[0], cells[1:]
        hidden = [v for v, c in zip(list(parts[1:]) + [parts[0] - sum(parts[1:])], rest) if c == "withheld"]
        if total != "withheld" and hidden:
            # what subtraction from the total recovers is the sum of the withheld cells: 0 or >= threshold,
            # and never a single cell
            assert len(hidden) >= 2 and (sum(hidden) == 0 or sum(hidden) >= t), cells


def _kpis(rows):
    base = {"group": "quarter=2025Q3", "quarter": "2025Q3", "ci_low": np.nan, "ci_high": np.nan, "method": "x"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_headline_shares_whose_complement_is_small_are_withheld():
    from carecall_eval.report.quarters import kpi_table

    kp = _kpis([{"metric": "kpi.phone_cases", "estimate": 84.0, "n": 84},
                {"metric": "kpi.reach_rate", "estimate": 83 / 84, "n": 84, "count": 83},     # 98.8% of 84: one left
                {"metric": "kpi.cases_opened", "estimate": 90.0, "n": 90}])
    kp["count"] = pd.array(kp["count"], dtype="Int64")
    table = kpi_table(kp, threshold=10)
    assert table.loc["Reach rate (phone cases answered)", "2025Q3"] == "<10"
    assert "98.8%" not in table.to_string()
    # 90 cases opened, 84 phone cases: the 6 others are a subtraction away, so the 84 is withheld
    assert table.loc["Phone cases with at least one attempt", "2025Q3"] == "withheld"


def test_outcome_shares_of_a_quarter_are_a_partition():
    from carecall_eval.compare.suppress import suppress_kpis

    n = 100
    kp = _kpis([{"metric": f"kpi.outcome.{o}", "estimate": k / n, "n": n, "count": k}
                for o, k in (("limit_set", 40), ("pause", 3), ("no_action", 45), ("declined", 12))])
    s = suppress_kpis(kp, 10).set_index("metric")
    assert pd.isna(s.loc["kpi.outcome.pause", "estimate"])                  # 3 people
    withheld = s["estimate"].isna()
    assert withheld.sum() >= 2 and kp.set_index("metric").loc[withheld, "count"].sum() >= 10


def test_a_quarter_with_a_single_case_is_not_quoted():
    from carecall_eval.compare.suppress import redact_text, suppress_metrics, withheld_tokens
    from carecall_eval.narrative.reach import text

    rows = pd.DataFrame([
        {"metric": "reach.overall", "group": "all", "estimate": 0.52, "ci_low": 0.47, "ci_high": 0.57, "n": 400},
        {"metric": "reach.quarter", "group": "2025Q1", "estimate": 0.51, "ci_low": 0.4, "ci_high": 0.6, "n": 399},
        {"metric": "reach.quarter", "group": "2025Q2", "estimate": 1.0, "ci_low": 0.2, "ci_high": 1.0, "n": 1}])
    said = text(rows, {"level": 0.95, "policy_start": None, "sms_after_attempts": 2})
    assert "100%" in said                                                    # the extreme is the one case
    supp, _ = suppress_metrics(rows, 10)
    assert pd.isna(supp.loc[2, "estimate"]) and pd.isna(supp.loc[1, "estimate"])   # and the 399, by subtraction
    people = redact_text(said, withheld_tokens(rows, supp), 10)
    assert "100%" not in people and "withheld" in people


def test_retention_sentence_quoting_98_8_percent_of_84_is_withheld():
    from carecall_eval.compare.suppress import redact_text, suppress_metrics, withheld_tokens

    rows = pd.DataFrame([
        {"metric": "retention.account_12m", "group": "contact", "estimate": 83 / 84, "n": 84},
        {"metric": "retention.account_12m", "group": "comparison", "estimate": 0.9, "n": 300},
        {"metric": "retention.account_12m", "group": "difference", "estimate": 83 / 84 - 0.9, "n": 384}])
    said = "98.8% of 84 reached customers were still customers a year later. The comparison shows 90.0%."
    supp, _ = suppress_metrics(rows, 10)
    assert supp["estimate"].isna().tolist() == [True, False, True]
    people = redact_text(said, withheld_tokens(rows, supp), 10)
    assert "98.8%" not in people and "90.0%" in people


def test_small_counts_quoted_in_sentences_become_fewer_than_the_threshold():
    from carecall_eval.compare.suppress import redact_text

    said = "Hazard ratio 2.48, based on 8 customers who left. 36 treated units were dropped; 3 units were not."
    out = redact_text(said, [], 10)
    assert "8 customers" not in out and "fewer than 10 customers" in out and "3 units" not in out
    assert "36 treated units" in out


def test_censoring_table_shows_no_small_difference_between_windows():
    from carecall_eval.report.display import censoring_table

    table = pd.DataFrame({"contact": [1] * 100 + [0] * 60,
                          "followup_28": [True] * 100 + [True] * 60,
                          "followup_84": [True] * 97 + [False] * 3 + [True] * 48 + [False] * 12,
                          "followup_365": [True] * 70 + [False] * 30 + [True] * 30 + [False] * 30})
    shown = censoring_table(table, (28, 84, 365), 10)
    reached = shown[shown["group"] == "reached"]
    assert reached["censored by the data end"].tolist() == ["0", "withheld", "30"]
    unreached = shown[shown["group"] == "not reached"]
    assert unreached["censored by the data end"].tolist() == ["0", "12", "30"]
    for col in ("complete", "censored by the data end"):
        assert not any(0 < v < 10 for v in _numbers(shown[col]))


@pytest.fixture(scope="module")
def people_report(simulated):
    """The report's numbers on a small simulated operator, as the notebook shows them (threshold 10)."""
    from carecall_eval.report.context import build_quarterly

    data, _ = simulated(customers=1500, seed=11)
    rep = build_quarterly(data, "2025Q4", placebo=False, pool_quarters=2, selfcheck_replicates=0)
    return rep, rep.for_people()


def test_every_metric_row_people_read_follows_the_bundle_rules(people_report):
    from carecall_eval.compare.export import build_tables

    rep, people = people_report
    t = rep.config.small_cell_threshold
    shown = people.evaluation.summary
    # one implementation: the figures withheld in the report are the ones withheld in the bundle, row for row
    _, tables = build_tables(rep.evaluation, threshold=t)
    metrics = tables["metrics"]
    assert len(metrics) == len(shown) > 50
    assert (shown["estimate"].isna().to_numpy() == metrics["estimate"].isna().to_numpy()).all()
    assert shown["estimate"].isna().sum() > 0                  # a small operator: something is withheld
    # no published count of people is small
    n = pd.to_numeric(shown["n"], errors="coerce")
    assert not ((n > 0) & (n < t)).any()


def test_people_flow_kpis_and_texts_hold_no_small_count(people_report):
    from carecall_eval.report.display import flow_table
    from carecall_eval.report.quarters import kpi_table

    rep, people = people_report
    t = rep.config.small_cell_threshold
    ev = people.evaluation
    flow = flow_table(ev.cohort.flow, t)
    for grp in ("contact", "comparison"):
        assert not any(0 < v < t for v in _numbers(flow[grp]))
    kt = kpi_table(people.kpis, threshold=t)
    assert not any(0 < v < t for c in kt.columns for v in _numbers(kt[c]))
    texts = [r.text for r in ev.results.values()] + [ev.cohort.text, ev.matched.text]
    import re
    for s in texts:
        for m in re.finditer(r"\b(\d+)\s+(customers?|cases?|contacts?|comparisons?|units?|calls?|people)\b", s):
            assert not 0 < int(m.group(1)) < t, s
    assert rep.for_people() is not rep and people.for_people() is people      # idempotent


def test_kaplan_meier_curves_people_see_are_the_bundles_points(people_report):
    from carecall_eval.compare.suppress import km_points

    rep, people = people_report
    t = rep.config.small_cell_threshold
    full, shown = rep.evaluation.results["retention"], people.evaluation.results["retention"]
    km = shown.get_plot_data("km")
    assert len(km) < len(full.get_plot_data("km"))              # the full curve steps at every exit
    assert (km["at_risk"] >= t).all() and (km["day"] % 14 == 0).sum() >= len(km) - 2
    expected = km_points(full.details["table"], t, horizon=int(full.settings["horizon"]), step=14,
                         level=float(full.settings["level"]))
    pd.testing.assert_frame_equal(km.reset_index(drop=True), expected.reset_index(drop=True))


def test_comparison_of_bundles_prints_no_small_count(tmp_path, capsys):
    from carecall_eval.compare.suppress import redact_text

    said = "Pooled over 2 operators: -4.1% (95% CI -9% to +1%); operator B had 6 customers."
    assert "6 customers" not in redact_text(said, (), 10)
