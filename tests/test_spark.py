"""The aggregation layer on Spark gives the DuckDB numbers (local Spark, no network).

Runs when pyspark and Java are available: ``pytest -m spark tests/test_spark.py``.
The sample data are read into Spark temp views and opened with
:func:`carecall_eval.contract.connect`; every aggregate, and one end-to-end
spending estimate, must equal the DuckDB result on the same files.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (no `java` on PATH)", allow_module_level=True)

import ibis  # noqa: E402

import carecall_eval  # noqa: E402
from carecall_eval.cohorts import windows as W  # noqa: E402
from carecall_eval.contract import ContractError, IbisDataset, connect  # noqa: E402
from carecall_eval.contract.spec import LARGE_TABLES  # noqa: E402
from carecall_eval.outcomes.spending import spending_effect  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
CONFIG = SAMPLE / "operator.toml"
RTOL = 1e-9


@pytest.fixture(scope="module")
def spark():
    """A small local SparkSession (one core, no UI, bound to localhost), stopped at teardown."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]")
               .appName("carecall_eval-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "1")
               .config("spark.driver.memory", "1g")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    for f in sorted(SAMPLE.glob("*.parquet")):
        session.read.parquet(str(f)).createOrReplaceTempView(f.stem)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def backend(spark):
    return ibis.pyspark.connect(spark)


@pytest.fixture(scope="module")
def spark_ds(backend):
    ds = connect(backend, config=CONFIG, name="sample")
    yield ds
    ds.close()


@pytest.fixture(scope="module")
def duck_ds():
    ds = carecall_eval.load(SAMPLE)
    yield ds
    ds.close()


@pytest.fixture(scope="module")
def keys(duck_ds):
    cases = duck_ds.table("call_cases").head(300)
    return pd.DataFrame({"row_id": np.arange(len(cases)), "customer_id": cases["customer_id"],
                         "index_date": cases["opened_on"]})


# ----------------------------------------------------------------------------- the dataset interface

def test_connect_gives_the_dataset_interface(spark_ds, duck_ds, backend):
    assert isinstance(spark_ds, IbisDataset)
    assert spark_ds.tables == duck_ds.tables and spark_ds.has("deposits")
    assert spark_ds.path == "pyspark:sample" and spark_ds.backend is backend
    assert spark_ds.config == duck_ds.config
    for name in spark_ds.tables:
        assert spark_ds.n_rows(name) == duck_ds.n_rows(name)
        if name in LARGE_TABLES:
            with pytest.raises(ValueError, match="large table"):
                spark_ds.table(name)
        else:   # same values and the same dtypes as the DuckDB views give
            pd.testing.assert_frame_equal(spark_ds.table(name), duck_ds.table(name))
    assert spark_ds.data_start == duck_ds.data_start
    assert spark_ds.data_end == duck_ds.data_end
    assert spark_ds.ibis_table("activity").schema() == duck_ds.ibis_table("activity").schema()


def test_fingerprint_is_stable_and_backend_specific(spark_ds, duck_ds):
    fp = spark_ds.fingerprint()
    assert len(fp) == 64 and fp == spark_ds.fingerprint()
    assert fp != duck_ds.fingerprint()


def test_duckdb_only_attributes_are_refused(spark_ds):
    with pytest.raises(AttributeError, match="no DuckDB connection"):
        _ = spark_ds.con
    with pytest.raises(NotImplementedError, match="contract.validate"):
        spark_ds.relation("activity")
    with pytest.raises(NotImplementedError, match="Parquet"):
        spark_ds.validate()


# ----------------------------------------------------------------------------- aggregates: Spark == DuckDB

def test_window_aggregates_match_duckdb(spark_ds, duck_ds, keys):
    windows = {"pre": (-84, -1), "post84": (0, 83)}
    got = W.window_aggregates(spark_ds, keys, windows, share_window=(-84, -1))
    want = W.window_aggregates(duck_ds, keys, windows, share_window=(-84, -1))
    assert len(got) == len(keys) and want["tl_pre"].gt(0).any()
    pd.testing.assert_frame_equal(got, want, rtol=RTOL)


def test_prior_rg_flags_match_duckdb(spark_ds, duck_ds, keys):
    got = W.prior_rg_flags(spark_ds, keys, 365)
    want = W.prior_rg_flags(duck_ds, keys, 365)
    pd.testing.assert_frame_equal(got, want)


def test_weekly_moments_match_duckdb(spark_ds, duck_ds, keys):
    k = keys.assign(group=(keys["row_id"] % 2).astype("int64"),
                    weight=0.5 + (keys["row_id"] % 3).astype("float64") / 4)
    got = W.weekly_moments(spark_ds, k, -12, 12)
    want = W.weekly_moments(duck_ds, k, -12, 12)
    assert set(want["group"]) == {0, 1} and len(want) > 20
    pd.testing.assert_frame_equal(got, want, rtol=RTOL, check_dtype=False)


def test_last_play_matches_duckdb(spark_ds, duck_ds, keys):
    got = W.last_play(spark_ds, keys["customer_id"])
    want = W.last_play(duck_ds, keys["customer_id"])
    pd.testing.assert_frame_equal(got, want)


# ----------------------------------------------------------------------------- end to end

def test_spending_estimate_matches_duckdb(spark_ds, duck_ds):
    def matched_change(ds) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cohort = carecall_eval.build_cohort(ds, carecall_eval.StudyDesign())
            res = spending_effect(ds, cohort.sample(), placebo=False, subgroups=False)
        s = res.summary[res.summary["window"] == 84].set_index("metric")
        return float(s.loc["spending.matched_change", "estimate"])

    got, want = matched_change(spark_ds), matched_change(duck_ds)
    assert np.isfinite(want)
    assert got == pytest.approx(want, rel=1e-8, abs=1e-12)


# ----------------------------------------------------------------------------- schema checks

def test_missing_table_and_column_are_named(spark, backend):
    spark.table("customers").drop("gender").createOrReplaceTempView("customers_no_gender")
    with pytest.raises(ContractError) as err:
        connect(backend, {"customers": "customers_no_gender", "call_attempts": "no_such_table"},
                config=CONFIG)
    msg = str(err.value)
    assert "customers.gender [required_column]" in msg
    assert "call_attempts [missing_table]" in msg and "no_such_table" in msg
    problems = err.value.report.problems
    assert set(zip(problems["table"], problems["column"].fillna("-"), problems["rule"])) == {
        ("customers", "gender", "required_column"), ("call_attempts", "-", "missing_table")}


def test_optional_table_may_be_absent_and_casts_are_applied(spark, backend, duck_ds):
    # deposits absent; dates stored as a timestamp and as ISO text; an expression with renamed columns
    spark.sql("SELECT customer_id, CAST(occurred_on AS TIMESTAMP) AS occurred_on, event, via_call "
              "FROM rg_events").createOrReplaceTempView("rg_events_ts")
    spark.sql("SELECT case_id, customer_id, CAST(opened_on AS STRING) AS opened_on, trigger, channel, arm "
              "FROM call_cases").createOrReplaceTempView("call_cases_text")
    prods = backend.table("products").rename(prod_code="product")
    ds = connect(backend, {"deposits": "no_deposits_here", "rg_events": "rg_events_ts",
                           "call_cases": "call_cases_text",
                           "products": prods.rename(product="prod_code")},
                 config=duck_ds.config)
    assert not ds.has("deposits") and "deposits" not in ds.tables
    assert ds.ibis_table("rg_events").schema()["occurred_on"].is_date()
    pd.testing.assert_frame_equal(ds.table("rg_events"), duck_ds.table("rg_events"))
    pd.testing.assert_frame_equal(ds.table("call_cases"), duck_ds.table("call_cases"))
    with pytest.raises(ValueError, match="optional table"):
        ds.ibis_table("deposits")


def test_connect_argument_errors(backend):
    with pytest.raises(TypeError, match="config"):
        connect(backend)
    with pytest.raises(ValueError, match="not contract tables"):
        connect(backend, {"activty": "activity"}, config=CONFIG)
    duck = ibis.duckdb.connect()
    with pytest.raises(ValueError, match="another backend"):
        connect(backend, {"products": duck.create_table("p", schema=ibis.schema(
            {"product": "string", "payback": "float64"}))}, config=CONFIG)


def test_quarterly_report_figures_on_spark_equal_duckdb(spark_ds, duck_ds):
    """The whole report computation runs on an IbisDataset; its metrics equal those from the files."""
    from carecall_eval.report.context import build_quarterly

    kw = dict(placebo=False, pool_quarters=1)
    on_spark = build_quarterly(spark_ds, "2025Q4", **kw)
    on_duck = build_quarterly(duck_ds, "2025Q4", **kw)
    assert on_spark.validation.ok and any("schemas were checked" in n for n in on_spark.notes)
    a, b = on_spark.metrics().summary, on_duck.metrics().summary
    assert len(a) == len(b) > 100
    pd.testing.assert_frame_equal(a.drop(columns=["method"]), b.drop(columns=["method"]), rtol=1e-7)


# ----------------------------------------------------------------------------- where the data live (issue 12)

def test_the_door_checks_codes_and_keys_of_the_small_tables(spark, backend):
    """HIGH_LOSS no longer passes the door: vocabularies, keys and required values are queried on Spark."""
    spark.sql("SELECT case_id, customer_id, opened_on, upper(trigger) AS trigger, channel, arm "
              "FROM call_cases").createOrReplaceTempView("call_cases_upper")
    spark.sql("SELECT * FROM call_attempts UNION ALL SELECT * FROM (SELECT 'NOPE' AS case_id, attempted_at, "
              "answered, duration_s, agent_id, outcome, reception FROM call_attempts LIMIT 2)"
              ).createOrReplaceTempView("call_attempts_orphans")
    with pytest.raises(ContractError) as err:
        connect(backend, {"call_cases": "call_cases_upper", "call_attempts": "call_attempts_orphans"}, config=CONFIG)
    p = err.value.report.problems.set_index(["table", "column", "rule"])["n_failing"].to_dict()
    assert p == {("call_cases", "trigger", "vocabulary"): 1547, ("call_attempts", "case_id", "foreign_key"): 2}
    msg = str(err.value)
    assert "trigger='HIGH_LOSS'" in msg and "'HIGH_LOSS' for 'high_loss'" in msg and "case_id='NOPE'" in msg


@pytest.mark.parametrize("offset", ["UTC", "+02:00"])
def test_offsets_are_converted_on_spark_as_on_files(spark, backend, duck_ds, tmp_path, offset):
    """Text with an offset becomes the operator's wall-clock time, whatever the Spark session's zone."""
    import dataclasses

    from warehouse_export import write_export

    from carecall_eval.errors import DataWarning

    d = write_export(tmp_path / "x", offset=offset, names="contract", upper=False, cust_id=False,
                     decimal_comma=False, upper_codes=False, delimiter=",", only=("call_attempts", "sms"))
    tag = "utc" if offset == "UTC" else "plus2"
    names = {}
    for t in ("call_attempts", "sms"):
        spark.read.csv(str(d / f"{t}.csv"), header=True).createOrReplaceTempView(f"{t}_{tag}")
        names[t] = f"{t}_{tag}"
    zoned = dataclasses.replace(duck_ds.config, timezone="Europe/Stockholm")
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        with pytest.warns(DataWarning, match=r"call_attempts\.attempted_at, sms\.sent_at carry UTC offsets"):
            ds = connect(backend, names, config=zoned)
        for t in names:
            pd.testing.assert_frame_equal(ds.table(t), duck_ds.table(t))
        with pytest.raises(ContractError, match="time zone") as err:
            connect(backend, names, config=duck_ds.config)
        assert set(err.value.report.problems["rule"]) == {"timezone"}
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)


def test_report_through_a_connection_file_on_spark_equals_duckdb(spark, duck_ds, tmp_path, capsys):
    """`carecall-eval report --connection FILE` renders where the data live; its metrics are DuckDB's."""
    import io

    from carecall_eval.cli import main
    from carecall_eval.report.context import build_quarterly

    conn = tmp_path / "connection.toml"
    conn.write_text(f'backend = "pyspark"\nconfig = "{CONFIG}"\nname = "sample"\n'
                    '[spark]\nmaster = "local[1]"\n"spark.sql.session.timeZone" = "UTC"\n')
    assert main(["validate", "--connection", str(conn)]) == 0
    assert "pyspark:sample" in capsys.readouterr().out
    out = tmp_path / "reports"
    assert main(["report", "--connection", str(conn), "--quarter", "2025Q4", "--out", str(out), "--fast",
                 "--pool-quarters", "1", "--quiet"]) == 0
    got = pd.read_csv(next(out.rglob("metrics.csv")))
    want = pd.read_csv(io.StringIO(build_quarterly(duck_ds, "2025Q4", placebo=False, pool_quarters=1).metrics_csv()))
    assert len(got) == len(want) > 100 and list(got["metric"]) == list(want["metric"])
    pd.testing.assert_frame_equal(got.drop(columns=["method"]), want.drop(columns=["method"]), rtol=1e-7)


def test_export_bundle_on_spark_equals_duckdb(spark_ds, duck_ds, tmp_path):
    from carecall_eval.compare import export_bundle, read_bundle

    a = read_bundle(export_bundle(spark_ds, tmp_path / "spark", placebo=False)).tables["metrics"]
    b = read_bundle(export_bundle(duck_ds, tmp_path / "duck", placebo=False)).tables["metrics"]
    assert len(a) == len(b) > 100
    pd.testing.assert_frame_equal(a.drop(columns=["method"]), b.drop(columns=["method"]), rtol=1e-7)
