"""The operator data contract (v1): definition, loading and validation.

>>> from carecall_eval.contract import load, validate, format_problems
>>> ds = load("data/sample")                      # doctest: +SKIP
>>> ds.con.sql("SELECT count(*) FROM activity")    # doctest: +SKIP
>>> spark_ds = connect(ibis.pyspark.connect(spark), config="operator.toml")  # doctest: +SKIP

Modules: :mod:`.spec` (the contract, defined once), :mod:`.schemas` (pandera
schemas and SQL checks derived from it), :mod:`.config` (``operator.toml``),
:mod:`.dataset` (:func:`load`, :class:`Dataset` over DuckDB views), :mod:`.remote`
(:func:`connect`, :class:`IbisDataset`: the same tables on Spark or a warehouse via ibis),
:mod:`.validation` (:func:`validate`, :class:`ValidationReport`, :func:`format_problems`).
"""
from .config import OperatorConfig, read_operator_config
from .errors import PROBLEM_COLUMNS, ContractError, Problem
from .dataset import Dataset, load, open_dataset
from .remote import IbisDataset, connect
from .schemas import pandera_schema, sql_checks
from .spec import (
    CONTRACT_VERSION,
    LARGE_TABLES,
    REQUIRED_TABLES,
    SMALL_TABLES,
    TABLES,
)
from .validation import ValidationReport, format_problems, validate

__all__ = [
    "CONTRACT_VERSION",
    "ContractError",
    "Dataset",
    "IbisDataset",
    "LARGE_TABLES",
    "OperatorConfig",
    "PROBLEM_COLUMNS",
    "Problem",
    "REQUIRED_TABLES",
    "SMALL_TABLES",
    "TABLES",
    "ValidationReport",
    "connect",
    "format_problems",
    "load",
    "open_dataset",
    "pandera_schema",
    "read_operator_config",
    "sql_checks",
    "validate",
]
