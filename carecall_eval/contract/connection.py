"""A connection file: where the contract tables live when they are not files (:func:`open_connection`).

The command line reaches Spark or a warehouse with ``--connection FILE`` instead of a data folder
(``carecall-eval validate/evaluate/report/export --connection connection.toml``).  The file names the
ibis backend and its connect arguments, the tables, and the operator's files::

    backend = "postgres"            # an ibis backend: pyspark, duckdb, postgres, snowflake, bigquery, ...
    config = "operator.toml"        # the operator's settings (paths are relative to this file)
    mapping = "mapping.toml"        # optional: names, codes, decimal commas, the time zone
    name = "rg_2025"                # optional label of the data in reports

    [connect]                       # keyword arguments of ibis.<backend>.connect(...)
    host = "db.internal"
    database = "rg"
    user = "analyst"
    password_env = "PGPASSWORD"     # KEY_env = "VAR": the value of $VAR (never write secrets here)

    [tables]                        # contract table = table on the backend (default: its own name)
    activity = "daily_play"

For ``backend = "pyspark"`` there are no connect arguments: the session is
``SparkSession.builder.getOrCreate()`` with the settings of an optional ``[spark]`` table
(``master = "local[2]"``, ``"spark.sql.session.timeZone" = "Europe/Stockholm"``, ...); a session
already running in the process is used as it is.  The backend's ibis extra must be installed
(``pip install 'ibis-framework[postgres]'``); see ``docs/backends.md``.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError

__all__ = ["ConnectionSpec", "read_connection", "open_connection"]

_KEYS = ("backend", "config", "mapping", "name", "connect", "spark", "tables")
#: Connect arguments that are file paths (resolved relative to the connection file).
_PATH_ARGS = {"duckdb": ("database",), "sqlite": ("database",)}


@dataclass(frozen=True)
class ConnectionSpec:
    """A parsed connection file (secrets are read from the environment when connecting, never kept)."""

    path: Path
    backend: str
    config: Path
    mapping: Path | None = None
    name: str | None = None
    connect: Mapping[str, Any] = field(default_factory=dict)
    spark: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, str] = field(default_factory=dict)


def read_connection(path: str | os.PathLike) -> ConnectionSpec:
    """Read and check a connection file.

    Raises
    ------
    InputError
        If the file is missing or malformed, naming the key and what is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"connection file {path} does not exist")
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"connection file {path} is not valid TOML: {exc}") from None

    def bad(key: str, expected: str):
        return InputError(f"connection file {path}: {key} = {doc.get(key)!r}: expected {expected}")

    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise InputError(f"connection file {path}: unknown keys {unknown}; known: {', '.join(_KEYS)}")
    backend = doc.get("backend")
    if not isinstance(backend, str) or not backend.strip():
        raise bad("backend", 'the name of an ibis backend, e.g. "pyspark", "duckdb", "postgres"')
    if not isinstance(doc.get("config"), str):
        raise bad("config", 'the path of the operator.toml, e.g. config = "operator.toml"')
    for key in ("mapping", "name"):
        if key in doc and not isinstance(doc[key], str):
            raise bad(key, "a quoted string")
    for key in ("connect", "spark", "tables"):
        if not isinstance(doc.get(key, {}), dict):
            raise bad(key, f"a [{key}] table")
    tables = doc.get("tables", {})
    if not all(isinstance(v, str) for v in tables.values()):
        raise bad("tables", "contract table = \"name on the backend\" lines")
    base = path.parent
    args = dict(doc.get("connect", {}))
    for key in _PATH_ARGS.get(backend, ()):
        if isinstance(args.get(key), str) and args[key] != ":memory:" and not Path(args[key]).is_absolute():
            args[key] = str(base / args[key])
    return ConnectionSpec(path, backend.strip(), base / doc["config"],
                          base / doc["mapping"] if doc.get("mapping") else None, doc.get("name"), args,
                          dict(doc.get("spark", {})), dict(tables))


def _arguments(spec: ConnectionSpec) -> dict[str, Any]:
    out = {}
    for key, value in spec.connect.items():
        if key.endswith("_env"):
            var = str(value)
            if var not in os.environ:
                raise InputError(f"connection file {spec.path}: {key} = {var!r}, but the environment variable "
                                 f"{var} is not set")
            out[key[: -len("_env")]] = os.environ[var]
        else:
            out[key] = value
    return out


def _backend(spec: ConnectionSpec):
    import ibis

    if spec.backend == "pyspark":
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise InputError("backend = \"pyspark\" needs pyspark: pip install 'carecall_eval[spark]'") from None
        builder = SparkSession.builder
        for key, value in spec.spark.items():
            if key == "master":
                builder = builder.master(str(value))
            elif key in ("app_name", "appName"):
                builder = builder.appName(str(value))
            else:
                builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
        return ibis.pyspark.connect(builder.getOrCreate())
    try:
        module = getattr(ibis, spec.backend)
    except (AttributeError, ImportError) as exc:
        raise InputError(f"connection file {spec.path}: backend = {spec.backend!r} is not an installed ibis backend "
                         f"({exc}); install it with pip install 'ibis-framework[{spec.backend}]'") from None
    try:
        return module.connect(**_arguments(spec))
    except (TypeError, ValueError) as exc:
        raise InputError(f"connection file {spec.path}: ibis.{spec.backend}.connect(...) refused the [connect] "
                         f"arguments: {exc}") from None


def open_connection(path: str | os.PathLike, *, check_values: bool = True):
    """Connect as a connection file says and open the contract tables (:func:`~carecall_eval.contract.connect`).

    Returns
    -------
    IbisDataset

    Raises
    ------
    InputError
        For a malformed file, a missing environment variable or backend.
    ContractError
        When the tables do not meet the checks :func:`~carecall_eval.contract.connect` runs.
    """
    from .remote import connect

    spec = read_connection(path)
    if not spec.config.exists():
        raise InputError(f"connection file {spec.path}: config = {str(spec.config)!r} does not exist")
    backend = _backend(spec)
    return connect(backend, spec.tables or None, config=spec.config, name=spec.name,
                   mapping=spec.mapping, check_values=check_values)
