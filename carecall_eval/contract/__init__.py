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
(:func:`~.base.open_data`, the ``data`` argument of every estimator); beside them :mod:`.hints`
(closest names, problems with one cause), :mod:`.timezones` (the one time-zone rule),
:mod:`.mapping` (``mapping.toml``: an operator's own export read as the contract), :mod:`.guess`
(a starter mapping), :mod:`.connection` (``--connection FILE``) and :mod:`.cli` (``carecall-eval map``).

Names are imported on first use (PEP 562), so the command line registers ``map`` without loading pandas.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "OperatorConfig": "config", "read_operator_config": "config",
    "Dataset": "dataset", "open_dataset": "dataset",
    "PROBLEM_COLUMNS": "problems", "ContractError": "problems", "Problem": "problems",
    "ValidationReport": "problems", "format_problems": "problems",
    "IbisDataset": "remote", "connect": "remote",
    "pandera_schema": "schemas", "sql_checks": "schemas",
    "CONTRACT_VERSION": "spec", "LARGE_TABLES": "spec", "REQUIRED_TABLES": "spec", "SMALL_TABLES": "spec",
    "TABLES": "spec",
    "load": "validation", "validate": "validation",
    "Mapping": "mapping", "read_mapping": "mapping",
    "open_connection": "connection",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
