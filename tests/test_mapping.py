"""An operator's own export through mapping.toml: written by `map init`, edited once, then validated and
evaluated with the sample's own metrics, on files and through connect().

The export (tests/warehouse_export.py) is data/sample as a warehouse would write it: other file names with
activity split over two files, upper-case headers, CUST_ID for customer_id, ``;`` separators with decimal
commas, HIGH_LOSS / PHONE codes and timestamps with the operator's UTC offsets.  Every number in it is the
sample's (shortest round-trip text), so every metric must equal the sample's; 1e-9 is the tolerance the
project keeps for unchanged figures (they come out identical).
"""
from __future__ import annotations

import tomllib
import warnings

import ibis
import pandas as pd
import pytest
from warehouse_export import DWH_NAMES, SAMPLE, write_export

import carecall_eval as ce
from carecall_eval.cli import main
from carecall_eval.contract import ContractError, connect, validate
from carecall_eval.errors import DataWarning, InputError

RTOL = 1e-9
NUMERIC = ["estimate", "se", "ci_low", "ci_high", "n"]
#: The one edit a person makes to the generated file: the operator's time zone.
EDIT = ('# timezone = "Europe/Stockholm"', 'timezone = "Europe/Stockholm"')


def _metrics(data) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ce.errors.CarecallWarning)
        s = ce.evaluate(data, placebo=False, subgroups=False).summary
    return s.reset_index(drop=True)


def _same_metrics(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got["metric"]) == list(want["metric"]) and len(want) > 100
    pd.testing.assert_series_equal(got["group"].astype(str), want["group"].astype(str))
    cols = [c for c in NUMERIC if c in want]
    pd.testing.assert_frame_equal(got[cols].astype(float), want[cols].astype(float), rtol=RTOL, atol=0)


@pytest.fixture(scope="module")
def sample_metrics():
    return _metrics(SAMPLE)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The export with a starter mapping written by `carecall-eval map init` (not yet edited)."""
    d = write_export(tmp_path_factory.mktemp("dwh") / "export", offset="local")
    assert main(["map", "init", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def mapped(export, tmp_path_factory):
    """A copy of the export after the one edit (the time zone)."""
    import shutil

    d = tmp_path_factory.mktemp("dwh_edited") / "export"
    shutil.copytree(export, d)
    text = (d / "mapping.toml").read_text()
    assert text.count(EDIT[0]) == 1
    (d / "mapping.toml").write_text(text.replace(*EDIT))
    return d


# ----------------------------------------------------------------------------- the starter mapping

def test_map_init_guesses_files_dialect_names_and_codes(export, capsys):
    doc = tomllib.loads((export / "mapping.toml").read_text())
    assert "timezone" not in doc                      # left for a person: offsets were seen
    assert doc["csv"] == {"delimiter": ";", "decimal": ",", "encoding": "utf-8"}
    t = doc["tables"]
    assert {name: t[name]["source"] for name in DWH_NAMES} == DWH_NAMES
    assert t["activity"]["source"] == "dwh_activity_*.csv"
    assert t["activity"]["columns"] == {"customer_id": "CUST_ID", "date": "DATE", "product": "PRODUCT",
                                        "wagered": "WAGERED", "won": "WON"}
    for name in ("customers", "deposits", "triggers", "call_cases", "rg_events"):
        assert t[name]["columns"]["customer_id"] == "CUST_ID"
    assert t["call_cases"]["values"]["channel"] == {"EMAIL": "email", "LETTER": "letter", "PHONE": "phone"}
    assert t["call_cases"]["values"]["trigger"]["HIGH_LOSS"] == "high_loss"
    assert t["triggers"]["values"]["trigger"] == t["call_cases"]["values"]["trigger"]
    assert "values" not in t["call_attempts"]          # answered is true/false already: nothing to map


def test_map_init_refuses_to_overwrite(export):
    with pytest.raises(InputError, match="--force"):
        from carecall_eval.contract.cli import cmd_map_init

        cmd_map_init(type("A", (), {"dir": str(export), "out": None, "force": False})())
    assert main(["map", "init", str(export)]) == 2


def test_unedited_mapping_refuses_offsets_and_says_how_to_set_the_zone(export):
    rep = validate(export)
    assert set(zip(rep.problems["table"], rep.problems["column"], rep.problems["rule"])) == {
        ("call_attempts", "attempted_at", "timezone"), ("sms", "sent_at", "timezone")}
    assert int(rep.problems["n_failing"].sum()) == 3574 + 494
    text = rep.text
    assert 'timezone = "Europe/Stockholm"' in text and "operator.toml or mapping.toml" in text
    assert "carry UTC offsets" in text


def test_map_show_shows_each_table_as_mapped(mapped, capsys):
    with pytest.warns(DataWarning, match="converted to local time"):
        assert main(["map", "show", str(mapped), "--table", "call_cases", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "call_cases <- dwh_cases.csv" in out and "delimiter ';', decimal ','" in out
    assert "customer_id" in out and "<- CUST_ID" in out and "PHONE -> phone" in out
    assert "first 3 rows as the pipeline reads them" in out
    assert "high_loss" in out and "HIGH_LOSS" in out.split("first 3 rows")[0]


# ----------------------------------------------------------------------------- one edit later

def test_edited_mapping_validates(mapped, capsys):
    with pytest.warns(DataWarning, match="converted to local time in Europe/Stockholm") as rec:
        assert main(["validate", str(mapped)]) == 0
    assert len([w for w in rec if issubclass(w.category, DataWarning)]) == 1     # said once
    assert "conform" in capsys.readouterr().out


def test_edited_mapping_reads_the_sample_exactly(mapped):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        a = ce.load(mapped)
    b = ce.load(SAMPLE)
    for t in b.tables:
        if t in ("activity", "deposits"):
            q = "SELECT * FROM {} ORDER BY ALL"
            pd.testing.assert_frame_equal(a.con.sql(q.format(t)).df(), b.con.sql(q.format(t)).df())
        else:
            pd.testing.assert_frame_equal(a.table(t)[list(b.table(t).columns)], b.table(t))
    assert a.fingerprint() != b.fingerprint()
    a.close()
    b.close()


def test_edited_mapping_evaluates_with_the_sample_metrics(mapped, sample_metrics):
    _same_metrics(_metrics(mapped), sample_metrics)


def _duckdb_warehouse(export, con=None):
    """The export's CSV files loaded as text tables into a DuckDB database (an ibis backend)."""
    con = con or ibis.duckdb.connect()
    files = {name: [export / f] for name, f in DWH_NAMES.items()}
    files["activity"] = [export / "dwh_activity_2024.csv", export / "dwh_activity_2025.csv"]
    for name, paths in files.items():
        listed = ", ".join(f"'{p}'" for p in paths)
        con.raw_sql(f"CREATE TABLE {name} AS SELECT * FROM read_csv([{listed}], delim = ';', header = true, "
                    "all_varchar = true)")
    return con


def test_same_export_through_connect_gives_the_same_metrics(mapped, sample_metrics):
    con = _duckdb_warehouse(mapped)
    with pytest.warns(DataWarning, match="attempted_at, sms.sent_at carry UTC offsets"):
        ds = connect(con, config=mapped / "operator.toml")     # the mapping beside it is used
    assert ds.mapping is not None and ds.config.timezone == "Europe/Stockholm"
    assert ds.checks.engines["call_cases"] == "ibis" and ds.checks.n_rows["call_cases"] == 1547
    _same_metrics(_metrics(ds), sample_metrics)


# ----------------------------------------------------------------------------- at the door: values on the ibis route

def test_connect_refuses_unmapped_codes_and_offsets(mapped, tmp_path):
    (tmp_path / "operator.toml").write_text((SAMPLE / "operator.toml").read_text())
    text = (mapped / "mapping.toml").read_text()
    kept = [line for line in text.splitlines() if not line.startswith("timezone")]
    # drop the code maps: HIGH_LOSS and PHONE must not pass the door
    out, skip = [], False
    for line in kept:
        if line.startswith("[tables.") and ".values." in line:
            skip = True
            continue
        if line.startswith("["):
            skip = False
        if not skip:
            out.append(line)
    (tmp_path / "mapping.toml").write_text("\n".join(out) + "\n")
    con = _duckdb_warehouse(mapped)
    with pytest.raises(ContractError) as err:
        connect(con, config=tmp_path)
    p = err.value.report.problems
    assert set(zip(p["table"], p["column"], p["rule"])) == {
        ("triggers", "trigger", "vocabulary"), ("call_cases", "trigger", "vocabulary"),
        ("call_cases", "channel", "vocabulary"), ("call_attempts", "attempted_at", "timezone"),
        ("sms", "sent_at", "timezone")}
    assert int(p.set_index(["table", "column"]).loc[("call_cases", "channel"), "n_failing"]) == 1547
    msg = str(err.value)
    assert "'HIGH_LOSS' for 'high_loss'" in msg and "values" in msg and 'timezone = "Europe/Stockholm"' in msg

    # without the door's value checks, the cohort step names the table, column and values it saw
    ds = connect(con, config=tmp_path, check_values=False)
    with pytest.raises(InputError, match=r"call_cases\.channel holds 'PHONE' \(\d[\d,]*\)") as err:
        ce.build_cohort(ds)
    assert "mapping.toml" in str(err.value) and "'LETTER'" in str(err.value)


def test_connect_checks_keys_and_required_values(tmp_path):
    con = ibis.duckdb.connect()
    for f in SAMPLE.glob("*.parquet"):
        con.read_parquet(str(f), table_name=f.stem)
    con.raw_sql("CREATE TABLE cases2 AS SELECT * FROM call_cases UNION ALL "
                "(SELECT * REPLACE (NULL AS opened_on) FROM call_cases LIMIT 2)")
    con.raw_sql("CREATE TABLE attempts2 AS SELECT * REPLACE ("
                "CASE WHEN row_number() OVER () <= 3 THEN 'NOPE' ELSE case_id END AS case_id) FROM call_attempts")
    with pytest.raises(ContractError) as err:
        connect(con, {"call_cases": "cases2", "call_attempts": "attempts2"}, config=SAMPLE)
    p = err.value.report.problems.set_index(["table", "column", "rule"])["n_failing"].to_dict()
    assert p == {("call_cases", "case_id", "unique"): 4, ("call_cases", "opened_on", "not_null"): 2,
                 ("call_attempts", "case_id", "foreign_key"): 3}
    assert "case_id='NOPE'" in str(err.value)


# ----------------------------------------------------------------------------- messages without a mapping

def test_validation_groups_problems_with_one_cause(tmp_path):
    d = write_export(tmp_path / "upper", names="contract", cust_id=False, offset=None)
    text = validate(d).text
    assert "every column of 9 tables differs from the contract only in case" in text
    assert "(40 of the problems)" in text              # every contract column of the 9 tables
    assert text.count("required_column") == 0        # one cause, no table of 40 rows

    d = write_export(tmp_path / "cust", names="contract", offset=None)
    rep = validate(d)
    assert "'customer_id' is missing from 6 tables" in rep.text and "'CUST_ID' is the closest column" in rep.text
    assert "closest: 'CUST_ID'" in rep.problems.set_index(["table", "column"]).loc[("customers", "customer_id"),
                                                                                     "examples"]


def test_validation_says_when_text_looks_like_decimal_commas(tmp_path):
    d = write_export(tmp_path / "commas", names="contract", upper=False, cust_id=False, offset="UTC")
    rep = validate(d)
    text = rep.text
    assert "look like decimal commas" in text and 'decimal = ","' in text
    assert "'HIGH_LOSS' for 'high_loss'" in text
    assert "no time zone is configured" in text
    assert set(rep.problems["rule"]) == {"type", "vocabulary", "timezone"}


# ----------------------------------------------------------------------------- the mapping file itself

def _copy_with(tmp_path, mapping: str, operator_extra: str = ""):
    from warehouse_export import copy_sample

    d = copy_sample(tmp_path / "data")
    if operator_extra:
        (d / "operator.toml").write_text((d / "operator.toml").read_text() + operator_extra)
    if mapping is not None:
        (d / "mapping.toml").write_text(mapping)
    return d


def test_mapping_mistakes_are_named_with_hints(tmp_path):
    d = _copy_with(tmp_path, """
timezone = "Europe/Stockolm"
[csv]
delimiter = ";;"
[tables.customer]
source = "x.csv"
[tables.call_cases.columns]
custmer_id = "CUST"
[tables.call_cases.values.channel]
TEL = "phne"
[tables.sms]
source = "no_such_*.csv"
""")
    rep = validate(d)
    p = rep.problems
    got = dict(zip(p["column"].fillna("-"), p["expected"]))
    assert "IANA" in got["timezone"]
    assert "one character" in got["csv.delimiter"]
    assert "did you mean 'customers'" in got["tables.customer"]
    assert "did you mean 'customer_id'" in got["tables.call_cases.columns.custmer_id"]
    assert "did you mean 'phone'" in got["tables.call_cases.values.channel.TEL"]
    assert "sms" not in set(p["table"])     # a malformed mapping stops before its sources are looked for


def test_mapping_source_matching_no_file_and_a_renamed_parquet_column(tmp_path):
    import duckdb

    d = _copy_with(tmp_path, """
[tables.products]
source = "prod.parquet"
columns = { payback = "RTP" }
[tables.products.values.product]
casino = "casino"
[tables.sms]
source = "no_such_*.csv"
""")
    duckdb.sql(f"COPY (SELECT product, payback AS RTP FROM '{SAMPLE / 'products.parquet'}') TO '{d / 'prod.parquet'}'")
    (d / "products.parquet").unlink()
    rep = validate(d)
    assert list(zip(rep.problems["table"], rep.problems["rule"])) == [("sms", "missing_table")]
    assert "no_such_*.csv" in rep.problems["examples"].iloc[0]
    (d / "mapping.toml").write_text((d / "mapping.toml").read_text().replace(
        '[tables.sms]\nsource = "no_such_*.csv"\n', ""))
    ds = ce.load(d)
    pd.testing.assert_frame_equal(ds.table("products"), ce.load(SAMPLE).table("products"))


def test_value_map_on_a_column_that_is_not_text(tmp_path):
    d = _copy_with(tmp_path, '[tables.call_attempts.values.answered]\n"1" = "true"\n')
    rep = validate(d)
    assert list(zip(rep.problems["column"], rep.problems["rule"])) == [
        ("tables.call_attempts.values.answered", "mapping")]
    assert "text column" in rep.problems["expected"].iloc[0]


def test_mapping_as_a_section_of_operator_toml_and_not_both(tmp_path):
    section = '\n[mapping]\ntimezone = "Europe/Stockholm"\n[mapping.tables.products]\nsource = "products.parquet"\n'
    d = _copy_with(tmp_path, None, section)
    ds = ce.load(d)
    assert ds.mapping is not None and ds.config.timezone == "Europe/Stockholm"
    assert ds.config.extra == {}
    ds.close()
    (d / "mapping.toml").write_text('timezone = "Europe/Stockholm"\n')
    rep = validate(d)
    assert list(rep.problems["rule"]) == ["ambiguous_file"]


def test_two_different_time_zones_are_refused(tmp_path):
    d = _copy_with(tmp_path, 'timezone = "Europe/Oslo"\n', 'timezone = "Europe/Stockholm"\n')
    rep = validate(d)
    assert list(rep.problems["rule"]) == ["timezone"] and "one time zone" in rep.problems["expected"].iloc[0]


def test_connection_file_reaches_a_database(mapped, tmp_path, capsys):
    db = tmp_path / "warehouse.duckdb"
    con = _duckdb_warehouse(mapped, ibis.duckdb.connect(str(db)))
    con.disconnect()
    conn = tmp_path / "connection.toml"
    conn.write_text(f'backend = "duckdb"\nconfig = "{mapped / "operator.toml"}"\nname = "dwh"\n'
                    '[connect]\ndatabase = "warehouse.duckdb"\nread_only = true\n')
    with pytest.warns(DataWarning):
        assert main(["validate", "--connection", str(conn)]) == 0
    assert "duckdb:dwh" in capsys.readouterr().out
    assert main(["validate", str(mapped), "--connection", str(conn)]) == 2
    assert "not both" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('backend = "duckdb"\nconfig = "operator.toml"\n'
                                       '[connect]\npassword_env = "NO_SUCH_VAR_X"\n')
    (tmp_path / "operator.toml").write_text((SAMPLE / "operator.toml").read_text())
    assert main(["validate", "--connection", str(tmp_path / "bad.toml")]) == 2
    assert "NO_SUCH_VAR_X is not set" in capsys.readouterr().err
