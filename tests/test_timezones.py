"""One time-zone rule on both routes: dates and times with a UTC offset are converted to the operator's
local time when its zone is set (and the conversion is said once), and refused with a message saying how
to set it when it is not.

The exports are data/sample with call_attempts.attempted_at and sms.sent_at written in UTC (``Z``) or at a
fixed +02:00 (tests/warehouse_export.py); the sample's own times are Stockholm wall-clock times, so the
converted tables must equal the sample's exactly, on files (DuckDB views) and on an ibis backend (DuckDB
through ibis here; local PySpark in tests/test_spark.py).
"""
from __future__ import annotations

import dataclasses
import warnings

import ibis
import pandas as pd
import pytest
from warehouse_export import SAMPLE, TIMESTAMPS, copy_sample, write_export

import carecall_eval as ce
from carecall_eval.contract import ContractError, connect, read_operator_config, validate
from carecall_eval.contract.timezones import OFFSET_PATTERN, check_zone
from carecall_eval.errors import DataWarning

ZONE = "Europe/Stockholm"
OFFSETS = ["UTC", "+02:00"]


@pytest.fixture(scope="module")
def want():
    ds = ce.load(SAMPLE)
    out = {t: ds.table(t) for t in TIMESTAMPS}
    ds.close()
    return out


@pytest.fixture(scope="module", params=OFFSETS)
def export(request, tmp_path_factory):
    """Contract-named CSV files (plain headers, decimal points, contract codes) with offset timestamps, no zone."""
    d = tmp_path_factory.mktemp("tz") / request.param.replace(":", "")
    write_export(d, offset=request.param, names="contract", upper=False, cust_id=False, decimal_comma=False,
                 upper_codes=False, delimiter=",")
    first = (d / "call_attempts.csv").read_text().splitlines()[1]
    assert first.split(",")[1].endswith("Z" if request.param == "UTC" else "+02:00")
    return d


def _with_zone(d, tmp_path, where: str = "operator.toml"):
    import shutil

    out = tmp_path / "zoned"
    shutil.copytree(d, out)
    if where == "operator.toml":
        (out / "operator.toml").write_text((out / "operator.toml").read_text() + f'timezone = "{ZONE}"\n')
    else:
        (out / "mapping.toml").write_text(f'timezone = "{ZONE}"\n')
    return out


def _ibis_tables(d):
    con = ibis.duckdb.connect()
    for name in ("customers", "products", "activity", "deposits", "triggers", "call_cases", "call_attempts", "sms",
                 "rg_events"):
        con.raw_sql(f"CREATE TABLE {name} AS SELECT * FROM read_csv('{d / (name + '.csv')}', header = true, "
                    "all_varchar = true)")
    return con


def _converted_once(record) -> str:
    said = [w for w in record if issubclass(w.category, DataWarning) and "UTC offsets" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in record]
    msg = str(said[0].message)
    assert "call_attempts.attempted_at, sms.sent_at" in msg and ZONE in msg
    return msg


# ----------------------------------------------------------------------------- converted, on both routes

@pytest.mark.parametrize("where", ["operator.toml", "mapping.toml"])
def test_file_route_converts_offsets_to_local_time(export, tmp_path, want, where):
    d = _with_zone(export, tmp_path, where)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = ce.load(d, validate=False)      # the conversion is in the views; validation is tested elsewhere
    _converted_once(rec)
    assert ds.config.timezone == ZONE
    for t in TIMESTAMPS:
        pd.testing.assert_frame_equal(ds.table(t), want[t])
    ds.close()


def test_ibis_route_converts_offsets_to_local_time(export, want):
    cfg = dataclasses.replace(read_operator_config(SAMPLE), timezone=ZONE)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = connect(_ibis_tables(export), config=cfg)
    _converted_once(rec)
    for t in TIMESTAMPS:
        pd.testing.assert_frame_equal(ds.table(t), want[t])


def test_the_two_routes_agree_value_for_value(export, tmp_path):
    cfg = dataclasses.replace(read_operator_config(SAMPLE), timezone=ZONE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        files = ce.load(_with_zone(export, tmp_path))
        remote = connect(_ibis_tables(export), config=cfg)
    for t in TIMESTAMPS:
        pd.testing.assert_frame_equal(files.table(t), remote.table(t))


def test_naive_local_times_are_kept_and_nothing_is_said(tmp_path, want):
    d = copy_sample(tmp_path / "naive")
    (d / "operator.toml").write_text((d / "operator.toml").read_text() + f'timezone = "{ZONE}"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        ds = ce.load(d, validate=False)
    for t in TIMESTAMPS:
        pd.testing.assert_frame_equal(ds.table(t), want[t])


# ----------------------------------------------------------------------------- refused without a zone

def test_file_route_refuses_offsets_without_a_zone(export):
    rep = validate(export)
    p = rep.problems
    assert set(zip(p["table"], p["column"], p["rule"])) == {("call_attempts", "attempted_at", "timezone"),
                                                             ("sms", "sent_at", "timezone")}
    assert dict(zip(p["table"], p["n_failing"])) == {"call_attempts": 3574, "sms": 494}
    assert all('timezone = "Europe/Stockholm"' in e and "operator.toml" in e for e in p["expected"])
    with pytest.raises(ContractError, match="time zone"):
        ce.load(export)


def test_ibis_route_refuses_offsets_without_a_zone(export):
    with pytest.raises(ContractError) as err:
        connect(_ibis_tables(export), config=SAMPLE)
    p = err.value.report.problems
    assert set(zip(p["table"], p["column"], p["rule"])) == {("call_attempts", "attempted_at", "timezone"),
                                                             ("sms", "sent_at", "timezone")}
    assert dict(zip(p["table"], p["n_failing"])) == {"call_attempts": 3574, "sms": 494}
    assert 'timezone = "Europe/Stockholm"' in str(err.value)


# ----------------------------------------------------------------------------- stored with a time zone

@pytest.fixture(scope="module")
def zoned(tmp_path_factory):
    """The sample with call_attempts.attempted_at stored as a Parquet TIMESTAMPTZ (the instant)."""
    import duckdb

    d = copy_sample(tmp_path_factory.mktemp("tstz") / "data")
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{ZONE}'")
    con.execute(f"COPY (SELECT * REPLACE (timezone('{ZONE}', attempted_at) AS attempted_at) "
                f"FROM '{SAMPLE / 'call_attempts.parquet'}') TO '{d / 'call_attempts.parquet'}'")
    assert "TIME ZONE" in str(con.sql(f"SELECT attempted_at FROM '{d / 'call_attempts.parquet'}'").types[0])
    return d


def test_timestamp_with_time_zone_is_converted_or_refused_on_files(zoned, tmp_path, want):
    rep = validate(zoned)
    assert list(zip(rep.problems["column"], rep.problems["rule"])) == [("attempted_at", "timezone")]
    assert "stored as a timestamp with a time zone" in rep.problems["expected"].iloc[0]
    d = _with_zone(zoned, tmp_path)
    with pytest.warns(DataWarning, match=r"call_attempts\.attempted_at carry UTC offsets"):
        ds = ce.load(d)
    pd.testing.assert_frame_equal(ds.table("call_attempts"), want["call_attempts"])


def test_timestamp_with_time_zone_is_converted_or_refused_on_ibis(zoned, want):
    con = ibis.duckdb.connect()
    for f in zoned.glob("*.parquet"):
        con.read_parquet(str(f), table_name=f.stem)
    with pytest.raises(ContractError, match="stored as a timestamp with a time zone"):
        connect(con, config=SAMPLE)
    cfg = dataclasses.replace(read_operator_config(SAMPLE), timezone=ZONE)
    with pytest.warns(DataWarning, match=r"call_attempts\.attempted_at carry UTC offsets"):
        ds = connect(con, config=cfg)
    pd.testing.assert_frame_equal(ds.table("call_attempts"), want["call_attempts"])


# ----------------------------------------------------------------------------- the zone setting and the pattern

def test_zone_names_are_checked(tmp_path):
    assert check_zone(" Europe/Oslo ") == "Europe/Oslo"
    for bad in ("Europe/Stockolm", "", 2):
        with pytest.raises(ValueError, match="IANA"):
            check_zone(bad)
    d = copy_sample(tmp_path / "bad")
    (d / "operator.toml").write_text((d / "operator.toml").read_text() + 'timezone = "CEST+2"\n')
    rep = validate(d)
    assert list(zip(rep.problems["table"], rep.problems["column"], rep.problems["rule"])) == [
        ("operator.toml", "timezone", "timezone")]


@pytest.mark.parametrize("text, has", [("2025-03-01 10:15:00+01:00", True), ("2025-03-01T09:15:00Z", True),
                                        ("2025-03-01 10:15+0100", True), ("2025-03-01 10:15:00.123-05", True),
                                        ("2025-03-01 10:15:00", False), ("2025-03-01", False),
                                        ("2025-03-01-02", False)])
def test_offset_pattern(text, has):
    import re

    assert bool(re.search(OFFSET_PATTERN, text)) is has
    con = ibis.duckdb.connect()
    from carecall_eval.contract.timezones import carries_offset

    assert con.execute(carries_offset(ibis.literal(text))) is has
