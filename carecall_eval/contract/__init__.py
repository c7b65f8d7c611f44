"""The operator data contract (v1): definition, loading and validation.

>>> from carecall_eval.contract import load, validate, format_problems
>>> ds = load("data/sample")                      # doctest: +SKIP
>>> ds.con.sql("SELECT count(*) FROM activity")    # doctest: +SKIP
>>> spark_ds = connect(ibis.pyspark.connect(spark), config="operator.toml")  # doctest: +SKIP

Modules, each importing only those before it: :mod:`.spec` (the contract, defined once),
:mod:`.schemas` (pandera schemas and SQL checks derived from it), :mod:`.problems`
(:class:`Problem`, :class:`ValidationReport`, :class:`ContractError`, :func:`format_problems`),
:mod:`.config` (``operator.toml``), :mod:`.tables` (:class:`~.tables.TablesBase`, what every
dataset offers), :mod:`.dataset` (:func:`open_dataset`, :class:`Dataset` over DuckDB views),
:mod:`.remote` (:func:`connect`, :class:`IbisDataset`: the same tables on Spark or a warehouse via
ibis), :mod:`.validation` (:func:`validate`, and :func:`load`: open and validate), :mod:`.base`
(:func:`~.base.open_data`, the ``data`` argument of every estimator).
"""
from .config import OperatorConfig, read_operator_config
from .dataset import Dataset, open_dataset
from .problems import PROBLEM_COLUMNS, ContractError, Problem, ValidationReport, format_problems
from .remote import IbisDataset, connect
from .schemas import pandera_schema, sql_checks
from .spec import (
    CONTRACT_VERSION,
    LARGE_TABLES,
    REQUIRED_TABLES,
    SMALL_TABLES,
    TABLES,
)
from .validation import load, validate

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
