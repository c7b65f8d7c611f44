"""Each rule of the data contract, broken on purpose, and the message it produces."""
from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from contract_helpers import (
    D,
    T,
    broken,
    set_value,
    valid_tables,
    write_dataset,
)

from carecall_eval.contract import (
    ContractError,
    format_problems,
    load,
    sql_checks,
    validate,
)
from carecall_eval.contract.spec import LARGE_TABLES, TABLES


def _drop(col):
    return lambda df: df.drop(columns=[col])


def _rename(old, new):
    return lambda df: df.rename(columns={old: new})


def _assign(col, values):
    return lambda df: df.assign(**{col: values})


def _dup_first(df):
    return pd.concat([df, df.iloc[[0]]], ignore_index=True)


# id -> (tables, fmt, (table, column, rule, n_failing, text in the examples))
CASES = {
    # required columns and types
    "missing_column": (broken("activity", _drop("wagered")), "parquet",
                       ("activity", "wagered", "required_column", 8, "columns found")),
    "column_name_case": (broken("customers", _rename("gender", "Gender")), "parquet",
                         ("customers", "gender", "required_column", 4, "'Gender'")),
    "type_incompatible": (broken("call_attempts", _assign("answered", [0.0, 0.0, 1.0, 1.0])),
                          "parquet", ("call_attempts", "answered", "type", 4, "DOUBLE")),
    "type_text_not_a_number": (
        broken("customers", _assign("birth_year", ["1970", "1985", "nineteen", "1960"])),
        "parquet", ("customers", "birth_year", "type", 1, "'nineteen'")),
    "type_csv_bad_date": (
        broken("activity", _assign("date", ["2024-01-01"] * 4 + ["2024-13-01"]
                                   + ["2024-01-02"] * 3)),
        "csv", ("activity", "date", "type", 1, "'2024-13-01'")),
    "type_date_with_time": (
        broken("activity", _assign("date", pd.to_datetime(
            ["2024-01-01", "2024-01-01 10:30", "2024-01-02", "2024-01-01", "2024-02-10",
             "2024-01-03", "2024-01-31", "2024-03-31"], format="ISO8601"))),
        "parquet", ("activity", "date", "type", 1, "10:30")),
    "type_time_zone": (
        broken("sms", lambda df: df.assign(sent_at=df.sent_at.dt.tz_localize("Europe/Stockholm"))),
        "parquet", ("sms", "sent_at", "type", 2, "stored as TIMESTAMPTZ")),
    "type_csv_bad_bool": (broken("rg_events", _assign("via_call", ["true", "maybe"])), "csv",
                          ("rg_events", "via_call", "type", 1, "'maybe'")),
    # not null
    "not_null_small": (broken("customers", set_value("gender", 1, None)), "parquet",
                       ("customers", "gender", "not_null", 1, "gender=null")),
    "not_null_large": (broken("activity", set_value("customer_id", 3, None)), "parquet",
                       ("activity", "customer_id", "not_null", 1, "customer_id=null")),
    "not_null_bool": (broken("rg_events", set_value("via_call", 0, None)), "parquet",
                      ("rg_events", "via_call", "not_null", 1, "via_call=null")),
    "not_null_timestamp": (broken("sms", set_value("sent_at", 1, None)), "csv",
                           ("sms", "sent_at", "not_null", 1, "sent_at=null")),
    # vocabularies: exact and case-sensitive
    "vocab_gender": (broken("customers", set_value("gender", 0, "f")), "parquet",
                     ("customers", "gender", "vocabulary", 1, "gender='f'")),
    "vocab_trigger": (broken("triggers", set_value("trigger", 0, "High_loss")), "parquet",
                      ("triggers", "trigger", "vocabulary", 1, "'High_loss'")),
    "vocab_case_trigger": (broken("call_cases", set_value("trigger", 1, "self_test")), "csv",
                           ("call_cases", "trigger", "vocabulary", 1, "'self_test'")),
    "vocab_channel": (broken("call_cases", set_value("channel", 0, "sms")), "parquet",
                      ("call_cases", "channel", "vocabulary", 1, "channel='sms'")),
    "vocab_arm": (broken("call_cases", set_value("arm", 1, "Control")), "parquet",
                  ("call_cases", "arm", "vocabulary", 1, "arm='Control'")),
    "vocab_outcome": (broken("call_attempts", set_value("outcome", 2, "limit")), "parquet",
                      ("call_attempts", "outcome", "vocabulary", 1, "outcome='limit'")),
    "vocab_reception": (broken("call_attempts", set_value("reception", 2, "good")), "parquet",
                        ("call_attempts", "reception", "vocabulary", 1, "'good'")),
    "vocab_sms_kind": (broken("sms", set_value("kind", 1, "reminder")), "parquet",
                       ("sms", "kind", "vocabulary", 1, "kind='reminder'")),
    "vocab_rg_event": (broken("rg_events", set_value("event", 1, "Pause")), "csv",
                       ("rg_events", "event", "vocabulary", 1, "event='Pause'")),
    # ranges
    "payback_above_1": (broken("products", set_value("payback", 0, 1.2)), "parquet",
                        ("products", "payback", "range", 1, "payback=1.2")),
    "payback_negative": (broken("products", set_value("payback", 2, -0.1)), "csv",
                         ("products", "payback", "range", 1, "payback=-0.1")),
    "wagered_negative": (broken("activity", set_value("wagered", 4, -5.0)), "parquet",
                         ("activity", "wagered", "range", 1, "wagered=-5.0")),
    "won_infinite": (broken("activity", set_value("won", 0, math.inf)), "parquet",
                     ("activity", "won", "finite", 1, "won=inf")),
    "deposit_negative": (broken("deposits", set_value("amount", 1, -20.0)), "parquet",
                         ("deposits", "amount", "range", 1, "amount=-20.0")),
    "deposit_nan_text": (broken("deposits", _assign("amount", ["200", "nan", "500"])), "csv",
                         ("deposits", "amount", "finite", 1, "amount=nan")),
    "trigger_value_infinite": (broken("triggers", set_value("value", 0, -math.inf)), "parquet",
                               ("triggers", "value", "finite", 1, "value=-inf")),
    "birth_year_implausible": (broken("customers", set_value("birth_year", 2, 1850)), "parquet",
                               ("customers", "birth_year", "range", 1, "birth_year=1850")),
    "activity_date_implausible": (broken("activity", set_value("date", 0, D(1980, 1, 1))),
                                  "parquet", ("activity", "date", "range", 1, "1980-01-01")),
    "registered_in_future": (broken("customers", set_value("registered_on", 0, D(2150, 1, 1))),
                             "parquet", ("customers", "registered_on", "range", 1, "2150-01-01")),
    "closed_on_9999": (broken("customers", set_value("closed_on", 0, D(9999, 12, 31))),
                       "parquet", ("customers", "closed_on", "range", 1, "9999-12-31")),
    "attempt_implausible": (broken("call_attempts", set_value("attempted_at", 0,
                                                              T(1970, 1, 1, 0, 0))),
                            "csv", ("call_attempts", "attempted_at", "range", 1, "1970-01-01")),
    # order
    "closed_before_registered": (broken("customers", set_value("closed_on", 1, D(2020, 1, 1))),
                                 "parquet", ("customers", "closed_on", "date_order", 1,
                                             "closed_on=2020-01-01")),
    # keys
    "duplicate_customer": (broken("customers", _dup_first), "parquet",
                           ("customers", "customer_id", "unique", 2, "customer_id='c1'")),
    "duplicate_product": (broken("products", _dup_first), "csv",
                          ("products", "product", "unique", 2, "product='slots'")),
    "duplicate_case": (broken("call_cases", _dup_first), "parquet",
                       ("call_cases", "case_id", "unique", 2, "case_id='k1'")),
    "duplicate_activity_row": (broken("activity", _dup_first), "parquet",
                               ("activity", "customer_id, date, product", "unique", 2,
                                "customer_id='c1', date=2024-01-01, product='slots'")),
    # foreign keys
    "fk_activity_product": (broken("activity", set_value("product", 1, "poker")), "parquet",
                            ("activity", "product", "foreign_key", 1, "product='poker'")),
    "fk_activity_customer": (broken("activity", set_value("customer_id", 2, "c99")), "csv",
                             ("activity", "customer_id", "foreign_key", 1, "'c99'")),
    "fk_deposits_customer": (broken("deposits", set_value("customer_id", 0, "c99")), "parquet",
                             ("deposits", "customer_id", "foreign_key", 1, "'c99'")),
    "fk_triggers_customer": (broken("triggers", set_value("customer_id", 0, "C1")), "parquet",
                             ("triggers", "customer_id", "foreign_key", 1, "'C1'")),
    "fk_cases_customer": (broken("call_cases", set_value("customer_id", 0, "c99")), "parquet",
                          ("call_cases", "customer_id", "foreign_key", 1, "'c99'")),
    "fk_rg_events_customer": (broken("rg_events", set_value("customer_id", 1, "c99")), "csv",
                              ("rg_events", "customer_id", "foreign_key", 1, "'c99'")),
    "fk_attempts_case": (broken("call_attempts", set_value("case_id", 3, "k99")), "parquet",
                         ("call_attempts", "case_id", "foreign_key", 1, "case_id='k99'")),
    "fk_sms_case": (broken("sms", set_value("case_id", 0, "k99")), "parquet",
                    ("sms", "case_id", "foreign_key", 1, "case_id='k99'")),
    # answered and unanswered calls
    "answered_zero_duration": (broken("call_attempts", set_value("duration_s", 2, 0.0)),
                               "parquet", ("call_attempts", "duration_s",
                                           "answered_needs_duration", 1, "duration_s=0.0")),
    "answered_no_duration": (broken("call_attempts", set_value("duration_s", 3, None)), "csv",
                             ("call_attempts", "duration_s", "answered_needs_duration", 1,
                              "duration_s=null")),
    "answered_no_outcome": (broken("call_attempts", set_value("outcome", 2, None)), "parquet",
                            ("call_attempts", "outcome", "answered_needs_outcome", 1,
                             "outcome=null")),
    "unanswered_with_duration": (broken("call_attempts", set_value("duration_s", 0, 30.0)),
                                 "parquet", ("call_attempts", "duration_s",
                                             "unanswered_no_duration", 1, "duration_s=30.0")),
    "unanswered_with_outcome": (broken("call_attempts", set_value("outcome", 1, "declined")),
                                "csv", ("call_attempts", "outcome", "unanswered_no_outcome", 1,
                                        "outcome='declined'")),
}


@pytest.fixture(scope="module")
def case_dirs(tmp_path_factory):
    """Every malformed dataset written once."""
    root = tmp_path_factory.mktemp("cases")
    return {cid: write_dataset(root / cid, tables, fmt=fmt)
            for cid, (tables, fmt, _) in CASES.items()}


@pytest.fixture(scope="module")
def reports(case_dirs):
    return {cid: validate(path) for cid, path in case_dirs.items()}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_valid_dataset_is_clean(tmp_path, fmt):
    report = validate(write_dataset(tmp_path, fmt=fmt))
    assert report.ok, report.message()
    assert list(report.problems.columns) == ["table", "column", "rule", "n_failing",
                                             "examples", "expected"]
    assert report.n_rows["activity"] == 8
    assert report.engines["activity"] == "sql" and report.engines["customers"] == "pandera"
    report.raise_if_failed()  # no error


@pytest.mark.parametrize("cid", list(CASES))
def test_each_rule_reports_exactly_its_problem(cid, reports):
    table, column, rule, n_failing, shown = CASES[cid][2]
    report = reports[cid]
    assert not report.ok
    got = report.problems
    # exactly one problem: no rule reports another's failure twice
    assert len(got) == 1, got.to_string()
    p = got.iloc[0]
    assert (p.table, p.column, p.rule, p.n_failing) == (table, column, rule, n_failing)
    assert shown in p.examples, p.examples
    assert p.expected


@pytest.mark.parametrize("cid", list(CASES))
def test_error_message_names_table_column_rule_count_and_rows(cid, reports):
    table, column, rule, n_failing, shown = CASES[cid][2]
    with pytest.raises(ContractError) as info:
        reports[cid].raise_if_failed()
    msg = str(info.value)
    assert f"{table}.{column} [{rule}]" in msg
    assert f"{n_failing} failing row" in msg
    assert shown in msg
    assert "expected" in msg
    assert isinstance(info.value, ValueError)
    assert info.value.report is not None and len(info.value.report.problems) == 1


@pytest.mark.parametrize("cid", ["vocab_gender", "fk_activity_customer", "type_csv_bad_date",
                                 "missing_column"])
def test_load_raises_the_same_error(cid, case_dirs, reports):
    with pytest.raises(ContractError) as info:
        load(case_dirs[cid])
    assert str(info.value) == reports[cid].message()
    load(case_dirs[cid], validate=False).close()  # files are fine: opens without checks


SMALL_CASES = [cid for cid, (_, _, want) in CASES.items() if want[0] not in LARGE_TABLES]


@pytest.mark.parametrize("cid", SMALL_CASES)
def test_pandera_and_sql_engines_agree(cid, case_dirs, reports):
    """The pandera schemas and the SQL checks are two translations of one spec."""
    sql = validate(case_dirs[cid], engine="sql")
    assert set(sql.engines.values()) == {"sql"}
    pd.testing.assert_frame_equal(sql.problems, reports[cid].problems)


def test_engines_agree_on_null_keys(tmp_path):
    tables = broken("customers", lambda df: df.assign(customer_id=[None, None, "c3", "c4"]))
    for name in ("activity", "deposits", "triggers", "call_cases", "rg_events"):
        tables[name] = tables[name][~tables[name].customer_id.isin(["c1", "c2"])]
    tables["call_attempts"] = tables["call_attempts"][tables["call_attempts"].case_id == "k4"]
    tables["sms"] = tables["sms"].iloc[0:0]
    path = write_dataset(tmp_path, tables)
    auto, sql = validate(path), validate(path, engine="sql")
    pd.testing.assert_frame_equal(auto.problems, sql.problems)
    assert auto.problems[["column", "rule", "n_failing"]].values.tolist() == [
        ["customer_id", "not_null", 2]]


def test_all_problems_are_collected_not_just_the_first(tmp_path):
    tables = valid_tables()
    tables["customers"].loc[0, "gender"] = "x"
    tables["products"].loc[0, "payback"] = 2.0
    tables["activity"].loc[0, "wagered"] = -1.0
    tables["activity"].loc[1, "product"] = "poker"
    tables["call_attempts"].loc[2, "outcome"] = None
    tables["sms"].loc[0, "kind"] = "Other"
    report = validate(write_dataset(tmp_path, tables))
    assert report.problems[["table", "rule"]].values.tolist() == [
        ["customers", "vocabulary"], ["products", "range"], ["activity", "foreign_key"],
        ["activity", "range"], ["call_attempts", "answered_needs_outcome"],
        ["sms", "vocabulary"]]
    with pytest.raises(ContractError) as info:
        report.raise_if_failed()
    assert "6 problems" in str(info.value)


def test_valid_oddities_are_accepted(tmp_path):
    """Rows real data carry that the toolkit filters rather than rejects."""
    tables = valid_tables()
    assert "other" in set(tables["sms"].kind)
    cases = tables["call_cases"]
    control = cases.loc[cases.arm == "control", "case_id"]
    assert not control.isin(tables["call_attempts"].case_id).any()
    assert "letter" in set(cases.channel)
    # an all-null arm column (no randomised study), stored without a type
    tables["call_cases"] = cases.assign(arm=[None] * len(cases))
    report = validate(write_dataset(tmp_path, tables))
    assert report.ok, report.message()


def test_missing_required_table_and_config_are_reported(tmp_path):
    tables = valid_tables()
    del tables["sms"]
    path = write_dataset(tmp_path, tables, config=None)
    report = validate(path)
    got = report.problems[["table", "rule"]].values.tolist()
    assert ["sms", "missing_table"] in got
    assert ["operator.toml", "missing_file"] in got
    # the other tables are still checked: a broken one is reported alongside
    tables["products"].loc[0, "payback"] = -1.0
    write_dataset(tmp_path, tables, config=None)
    assert ["products", "range"] in validate(path).problems[["table", "rule"]].values.tolist()


def test_unreadable_file_is_reported(tmp_path):
    path = write_dataset(tmp_path)
    (path / "products.parquet").write_bytes(b"not a parquet file")
    report = validate(path)
    row = report.problems.iloc[0]
    assert (row.table, row.rule) == ("products", "unreadable_file")
    # foreign keys into an unreadable table are skipped, not reported as failures
    assert len(report.problems) == 1


def test_format_problems_is_a_fixed_width_table(reports, tmp_path):
    text = format_problems(reports["vocab_gender"])
    lines = text.splitlines()
    assert lines[0].startswith("FAILED:") and "1 problem." in lines[0]
    assert lines[1].split() == ["table", "column", "rule", "failing", "expected", "examples"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    header, row = lines[1], lines[3]
    assert row.index("gender") == header.index("column")
    assert row.index("vocabulary") == header.index("rule")
    assert "gender='f'" in row
    ok = format_problems(validate(write_dataset(tmp_path)))
    assert ok.startswith("OK:") and "activity 8" in ok


def test_activity_is_validated_in_sql_without_pandas(tmp_path):
    """Validating a large activity table keeps Python memory flat.

    A pandas copy of 1.5 million activity rows would take well over 100 MB;
    tracemalloc sees numpy and Python allocations but not DuckDB's own.
    """
    path = write_dataset(tmp_path, {k: v for k, v in valid_tables().items()
                                    if k not in ("activity", "customers")})
    n_customers, n_days = 3000, 500
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT 'c' || (i + 1)::VARCHAR AS customer_id, 'Demo Spel' AS operator,
                     1950 + i % 50 AS birth_year, ['F', 'M', 'U'][1 + i % 3] AS gender,
                     DATE '2019-01-01' AS registered_on, NULL::DATE AS closed_on
              FROM range({n_customers}) t(i))
        TO '{path / "customers.parquet"}' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT 'c' || (1 + i % {n_customers})::VARCHAR AS customer_id,
                     DATE '2022-01-01' + (i // {n_customers})::INTEGER AS date,
                     'slots' AS product,
                     CASE WHEN i = 1234567 THEN -1.0 ELSE (i % 50)::DOUBLE END AS wagered,
                     (i % 7)::DOUBLE AS won
              FROM range({n_customers * n_days}) t(i))
        TO '{path / "activity.parquet"}' (FORMAT parquet)""")
    con.close()
    tracemalloc.start()
    try:
        report = validate(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.engines["activity"] == "sql"
    assert report.n_rows["activity"] == n_customers * n_days
    assert report.problems[["table", "column", "rule", "n_failing"]].values.tolist() == [
        ["activity", "wagered", "range", 1]]
    assert "customer_id='c1568', date=2023-02-16, product='slots', wagered=-1.0" in \
        report.problems.examples.iloc[0]
    assert peak < 20e6, f"validation allocated {peak / 1e6:.0f} MB in Python"


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.mark.skipif(not (SAMPLE / "operator.toml").exists(), reason="data/sample not generated")
def test_sample_data_meets_the_contract():
    report = validate(SAMPLE)
    assert report.ok, report.message()


def test_every_column_rule_has_a_sql_check():
    for name, table in TABLES.items():
        rules = {(c.column, c.rule) for c in sql_checks(name)}
        for col in table.columns:
            assert (col.name, "not_null") in rules or col.nullable
            assert (col.name, "vocabulary") in rules or col.vocabulary is None
            assert (col.name, "range") in rules or (col.min is None and col.max is None)
            assert (col.name, "foreign_key") in rules or col.references is None


def test_report_follows_the_result_protocol(reports):
    rep = reports["vocab_gender"]
    row = rep.metric("validation.n_failing", "customers", rule="vocabulary")
    assert row["estimate"] == 1 and row["column"] == "gender" and row["n"] == rep.n_rows["customers"]
    assert rep.metric("validation.n_rows", "activity")["estimate"] == rep.n_rows["activity"]
    assert rep.text == format_problems(rep) == str(rep)
    assert repr(rep).endswith(": 1 problem>")
    d = rep.to_dict()
    assert d["name"] == "validation" and d["settings"]["contract_version"] == rep.contract_version
    back = type(rep).from_json(rep.to_json())
    pd.testing.assert_frame_equal(back.problems, rep.problems)
    assert (back.n_rows, back.engines, back.path) == (dict(rep.n_rows), dict(rep.engines), rep.path)


def test_contract_modules_import_without_cycles_and_validation_uses_public_dataset_methods():
    """contract/ is layered (each module imports only modules before it), and the validator reads a
    Dataset only through its public methods."""
    import ast

    import carecall_eval.contract as contract

    folder = Path(contract.__file__).parent
    graph = {}
    for f in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.add(node.module or "")
        graph[f.stem] = deps - {"__init__"}
    done: set[str] = set()

    def visit(m, path):
        assert m not in path, f"import cycle in contract/: {' -> '.join(path + [m])}"
        if m not in done:
            for d in graph.get(m, ()):
                visit(d, path + [m])
            done.add(m)

    for m in graph:
        if m != "__init__":
            visit(m, [])
    tree = ast.parse((folder / "validation.py").read_text())
    private = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                      and n.attr.startswith("_") and not n.attr.startswith("__")
                      and not (isinstance(n.value, ast.Name) and n.value.id == "self")})
    assert private == []
