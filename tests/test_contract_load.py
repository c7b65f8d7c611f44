"""Loading a data directory: views, pandas tables, config, files, fingerprint."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest
from contract_helpers import OPERATOR_TOML, valid_tables, write_dataset

from carecall_eval.contract import (
    TABLES,
    ContractError,
    Dataset,
    OperatorConfig,
    load,
    read_operator_config,
    validate,
)

FORMATS = ["parquet", "csv"]


@pytest.fixture(scope="module", params=FORMATS)
def ds(request, tmp_path_factory):
    path = write_dataset(tmp_path_factory.mktemp(request.param), fmt=request.param)
    with load(path) as dataset:
        yield dataset


def test_each_table_is_a_view_with_contract_types(ds):
    assert ds.tables == tuple(TABLES)
    views = {r[0] for r in ds.con.sql(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == set(TABLES)
    for name, spec in TABLES.items():
        types = dict(ds.con.sql(f"SELECT column_name, column_type FROM "
                                f"(DESCRIBE {name})").fetchall())
        for col in spec.columns:
            if getattr(col, "optional", False) and col.name not in types:
                continue                  # an optional column may be absent
            assert types[col.name] == col.duckdb_type, (name, col.name)


def test_sql_over_views_gives_theoretical_loss(ds):
    # wagered x (1 - payback), by hand from contract_helpers.valid_tables
    got = dict(ds.con.sql("""
        SELECT customer_id, sum(wagered * (1 - payback))
        FROM activity JOIN products USING (product) GROUP BY ALL""").fetchall())
    want = {"c1": 100 * 0.06 + 50 * 0.07 + 20 * 0.06, "c2": 10 * 0.5 + 0.0,
            "c3": 5.5 * 0.07, "c4": 300 * 0.06 + 12 * 0.5}
    assert got == pytest.approx(want, rel=1e-12)


def test_table_gives_typed_pandas_frames(ds):
    cust = ds.table("customers")
    assert cust["registered_on"].dtype == "datetime64[ns]"
    assert cust["closed_on"].dtype == "datetime64[ns]"
    assert cust["closed_on"].isna().sum() == 3
    assert cust["closed_on"].iloc[1] == pd.Timestamp("2024-03-01")
    assert cust["birth_year"].dtype == "int64"
    assert cust["segment"].tolist() == ["a", "b", "a", "c"]  # extra column kept
    att = ds.table("call_attempts")
    assert att["attempted_at"].dtype == "datetime64[ns]"
    assert att["attempted_at"].iloc[1] == pd.Timestamp("2024-01-04 14:30")
    assert att["answered"].dtype == bool
    assert att["duration_s"].dtype == "float64" and att["duration_s"].isna().sum() == 2
    assert att["agent_id"].dtype == object and att["agent_id"].iloc[3] is None
    assert ds.table("rg_events")["via_call"].dtype == bool
    assert ds.table("sms")["sent_at"].dtype == "datetime64[ns]"


def test_table_is_cached_and_returns_a_copy(ds):
    first = ds.table("products")
    first.loc[0, "payback"] = 0.0
    assert ds.table("products").loc[0, "payback"] == 0.94
    assert ds.table("products") is not ds.table("products")


def test_large_tables_are_relations_not_frames(ds):
    with pytest.raises(ValueError, match="relation"):
        ds.table("activity")
    rel = ds.relation("activity")
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    totals = dict(rel.aggregate("customer_id, sum(won) AS won").fetchall())
    assert totals == {"c1": 110.0, "c2": 0.0, "c3": 11.0, "c4": 250.0}


def test_span_counts_and_lookups(ds):
    assert ds.data_start == pd.Timestamp("2024-01-01")
    assert ds.data_end == pd.Timestamp("2024-03-31")
    assert {t: ds.n_rows(t) for t in ds.tables} == {
        t: len(df) for t, df in valid_tables().items()}
    assert ds.has("deposits") and not ds.has("bets")
    with pytest.raises(ValueError, match="unknown table"):
        ds.n_rows("bets")
    assert ds.config == OperatorConfig("Demo Spel", "SEK", dt.date(2024, 2, 1), 10)


def test_csv_and_parquet_load_to_the_same_data(tmp_path):
    a = load(write_dataset(tmp_path / "p", fmt="parquet"))
    b = load(write_dataset(tmp_path / "c", fmt="csv"))
    for name in TABLES:
        if TABLES[name].large:
            q = f"SELECT * FROM {name} ORDER BY ALL"
            pd.testing.assert_frame_equal(a.con.sql(q).df(), b.con.sql(q).df())
        else:
            pd.testing.assert_frame_equal(a.table(name), b.table(name))
    assert a.fingerprint() != b.fingerprint()


def test_pandas_datetimes_in_parquet_are_read_as_dates(tmp_path):
    """A frame written with datetime64 date columns (TIMESTAMP at midnight) loads as DATE."""
    tables = valid_tables()
    for name, col in [("activity", "date"), ("customers", "registered_on"),
                      ("customers", "closed_on"), ("rg_events", "occurred_on")]:
        tables[name][col] = pd.to_datetime(tables[name][col])
    ds = load(write_dataset(tmp_path / "ts", tables))
    ref = load(write_dataset(tmp_path / "ref"))
    assert ds.con.sql("SELECT typeof(date) FROM activity LIMIT 1").fetchall() == [("DATE",)]
    pd.testing.assert_frame_equal(ds.table("customers"), ref.table("customers"))


def test_integer_ids_in_parquet_are_read_as_text(tmp_path):
    tables = valid_tables()
    for name in ("customers", "activity", "deposits", "triggers", "call_cases", "rg_events"):
        tables[name]["customer_id"] = tables[name]["customer_id"].str[1:].astype("int64")
    ds = load(write_dataset(tmp_path, tables))
    assert ds.table("customers")["customer_id"].tolist() == ["1", "2", "3", "4"]
    assert ds.con.sql("SELECT count(*) FROM activity JOIN customers USING (customer_id)"
                      ).fetchall() == [(8,)]


def test_parquet_part_files_in_a_directory(tmp_path):
    tables = valid_tables()
    act = tables.pop("activity")
    path = write_dataset(tmp_path, tables)
    (path / "activity").mkdir()
    act.iloc[:5].to_parquet(path / "activity" / "part-00000.parquet", index=False)
    act.iloc[5:].to_parquet(path / "activity" / "part-00001.parquet", index=False)
    ds = load(path)
    assert ds.n_rows("activity") == len(act)
    assert ds.con.sql("SELECT sum(wagered) FROM activity").fetchall()[0][0] == act.wagered.sum()


def test_optional_deposits_may_be_absent(tmp_path):
    tables = valid_tables()
    del tables["deposits"]
    ds = load(write_dataset(tmp_path, tables))
    assert not ds.has("deposits") and "deposits" not in ds.tables
    with pytest.raises(ValueError, match="has\\('deposits'\\)"):
        ds.relation("deposits")


@pytest.mark.parametrize("missing", ["customers", "activity", "sms"])
def test_missing_required_table_is_an_error(tmp_path, missing):
    tables = valid_tables()
    del tables[missing]
    path = write_dataset(tmp_path, tables)
    for kwargs in ({}, {"validate": False}):
        with pytest.raises(ContractError, match=f"{missing} \\[missing_table\\]") as info:
            load(path, **kwargs)
        assert f"{missing}.parquet or {missing}.csv" in str(info.value)


def test_two_files_for_one_table_is_an_error(tmp_path):
    path = write_dataset(tmp_path)
    valid_tables()["products"].to_csv(path / "products.csv", index=False)
    with pytest.raises(ContractError, match="ambiguous_file") as info:
        load(path, validate=False)
    assert "products.parquet, products.csv" in str(info.value)


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")


def test_memory_limit_is_applied(tmp_path):
    ds = load(write_dataset(tmp_path), memory_limit="256MB")
    assert ds.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == "244.1 MiB"


def test_fingerprint_is_stable_and_tracks_every_input(tmp_path):
    path = write_dataset(tmp_path)
    fp = load(path, validate=False).fingerprint()
    assert len(fp) == 64 and fp == load(path, validate=False).fingerprint()
    (path / "operator.toml").write_text(OPERATOR_TOML.replace("SEK", "NOK"))
    fp2 = load(path, validate=False).fingerprint()
    assert fp2 != fp
    (path / "operator.toml").write_text(OPERATOR_TOML)
    assert load(path, validate=False).fingerprint() == fp
    tables = valid_tables()
    tables["activity"].loc[0, "wagered"] = 101.0
    write_dataset(path, tables)
    assert load(path, validate=False).fingerprint() != fp


def test_validation_leaves_the_connection_as_it_found_it(tmp_path):
    ds = load(write_dataset(tmp_path, fmt="csv"))
    before = ds.con.sql("SELECT count(*) FROM duckdb_tables()").fetchall()
    validate(ds)
    assert ds.con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == before
    assert ds.con.sql("SELECT current_setting('disabled_optimizers')").fetchall() == [("",)]
    assert not {r[0] for r in ds.con.sql("SELECT view_name FROM duckdb_views()").fetchall()
                if r[0].startswith("__check")}


def test_unvalidated_csv_with_bad_cell_fails_loudly_on_query(tmp_path):
    tables = valid_tables()
    tables["activity"]["date"] = tables["activity"]["date"].astype(str)
    tables["activity"].loc[0, "date"] = "2024-02-30"
    ds = load(write_dataset(tmp_path, tables, fmt="csv"), validate=False)
    with pytest.raises(duckdb.ConversionException):
        ds.con.sql("SELECT sum(wagered) FROM activity WHERE date > DATE '2024-01-01'").fetchall()


def test_dataset_closes(tmp_path):
    with load(write_dataset(tmp_path)) as ds:
        assert isinstance(ds, Dataset) and "tables=" in repr(ds)
    with pytest.raises(duckdb.Error):
        ds.con.sql("SELECT 1").fetchall()


# ----------------------------------------------------------------- operator.toml
@pytest.mark.parametrize("line, expected", [
    ("sms_policy_start = 2024-02-01", dt.date(2024, 2, 1)),
    ('sms_policy_start = "2024-02-01"', dt.date(2024, 2, 1)),
    ("", None),
])
def test_operator_toml_date_forms(tmp_path, line, expected):
    (tmp_path / "operator.toml").write_text(f'operator = "X"\ncurrency = "EUR"\n{line}\n')
    cfg = read_operator_config(tmp_path)
    assert cfg.sms_policy_start == expected
    assert cfg.small_cell_threshold == 10


def test_operator_toml_threshold_and_extra_keys(tmp_path):
    (tmp_path / "operator.toml").write_text(
        'operator = "X"\ncurrency = "EUR"\nsmall_cell_threshold = 5\nregion = "SE"\n')
    cfg = read_operator_config(tmp_path / "operator.toml")
    assert cfg.small_cell_threshold == 5 and cfg.extra["region"] == "SE"


@pytest.mark.parametrize("text, key", [
    ('operator = "X"\ncurrency = "EUR"\nsms_policy_start = 2024-02-01T09:00:00\n',
     "sms_policy_start"),
    ('operator = "X"\ncurrency = "EUR"\nsms_policy_start = "01/02/2024"\n', "sms_policy_start"),
    ('operator = "X"\n', "currency"),
    ('currency = "EUR"\n', "operator"),
    ('operator = "X"\ncurrency = "EUR"\nsmall_cell_threshold = 0\n', "small_cell_threshold"),
    ('operator = "X"\ncurrency = "EUR"\nsmall_cell_threshold = true\n', "small_cell_threshold"),
])
def test_operator_toml_errors_name_the_key(tmp_path, text, key):
    (tmp_path / "operator.toml").write_text(text)
    with pytest.raises(ContractError, match=key):
        read_operator_config(tmp_path)
    write_dataset(tmp_path, config=text)
    report = validate(tmp_path)
    assert report.problems[["table", "column"]].values.tolist() == [["operator.toml", key]]
    with pytest.raises(ContractError, match=f"operator.toml.{key}"):
        load(tmp_path, validate=False)


def test_operator_toml_missing_or_invalid(tmp_path):
    write_dataset(tmp_path, config=None)
    with pytest.raises(ContractError, match="missing_file"):
        load(tmp_path)
    (tmp_path / "operator.toml").write_text("operator = \n")
    with pytest.raises(ContractError, match="unreadable_file"):
        load(tmp_path)
