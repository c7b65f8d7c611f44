"""Keyed pseudonymisation of customer and agent ids before data leave the operator's own systems.

A pseudonym is ``HMAC-SHA256(key, column + ":" + id)``, hex, truncated to 24
characters (96 bits) and prefixed by the column's letter (``c`` customer,
``a`` agent, ``k`` case).  The key is read from an environment variable
(default ``CARECALL_PSEUDONYM_KEY``) and is never written anywhere: the same key
gives the same pseudonyms every quarter (so data sets can be joined over
time), a different key gives unrelated ones, and without the key nobody can
recompute or reverse them (unlike a plain hash of an id, which can be found by
hashing every possible id).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["KEY_ENV", "DEFAULT_COLUMNS", "get_key", "pseudonymise_ids", "pseudonymise_frame",
           "pseudonymise_directory"]

#: Environment variable holding the key.
KEY_ENV = "CARECALL_PSEUDONYM_KEY"
#: Columns pseudonymised by default, in every table where they occur, and their prefixes.
DEFAULT_COLUMNS = {"customer_id": "c", "agent_id": "a"}
_PREFIX = {"customer_id": "c", "agent_id": "a", "case_id": "k"}
_MIN_KEY_BYTES = 16
_DIGITS = 24


class MissingKeyError(InputError, KeyError):
    """The environment variable holding the pseudonymisation key is not set."""

    __str__ = BaseException.__str__   # the message itself, not KeyError's quoted repr


def get_key(env: str = KEY_ENV) -> bytes:
    """Read the pseudonymisation key from the environment variable ``env``.

    Raises
    ------
    MissingKeyError
        If the variable is not set or empty (with instructions to set it); an
        :class:`~carecall_eval.errors.InputError` and a ``KeyError``.
    carecall_eval.errors.InputError
        If the key is shorter than 16 bytes.
    """
    value = os.environ.get(env)
    if not value:
        raise MissingKeyError(f"environment variable {env} is not set; set it to a secret of at least {_MIN_KEY_BYTES} "
                       f"characters kept by the operator, e.g. `export {env}=$(openssl rand -hex 32)`, and use the "
                       "same key every quarter so pseudonyms stay stable")
    key = value.encode()
    if len(key) < _MIN_KEY_BYTES:
        raise InputError(f"the key in {env} is {len(key)} bytes; use at least {_MIN_KEY_BYTES} "
                         "(e.g. `openssl rand -hex 32`)")
    return key


def pseudonymise_ids(values: Iterable, key: bytes, *, column: str = "customer_id") -> np.ndarray:
    """Pseudonyms of ``values`` (missing values stay missing).

    Examples
    --------
    >>> pseudonymise_ids(["C001", None], b"0123456789abcdef-secret")[0][:5]
    'c332e'
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"key must be bytes of length >= {_MIN_KEY_BYTES}; read it with get_key()")
    prefix = _PREFIX.get(column, "x")
    salt = f"{column}:".encode()
    cache: dict = {}
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(None)
            continue
        s = str(v)
        p = cache.get(s)
        if p is None:
            p = prefix + hmac.new(bytes(key), salt + s.encode(), hashlib.sha256).hexdigest()[:_DIGITS]
            cache[s] = p
        out.append(p)
    return np.array(out, dtype=object)


def pseudonymise_frame(df: pd.DataFrame, key: bytes, columns: Iterable[str] = tuple(DEFAULT_COLUMNS)) -> pd.DataFrame:
    """A copy of ``df`` with the listed id columns (where present) pseudonymised."""
    out = df.copy()
    for col in columns:
        if col in out.columns:
            out[col] = pseudonymise_ids(out[col].tolist(), key, column=col)
    return out


def pseudonymise_directory(src: str | os.PathLike, dst: str | os.PathLike, *,
                           columns: Iterable[str] = tuple(DEFAULT_COLUMNS), env: str = KEY_ENV) -> Path:
    """Copy a data directory with ids pseudonymised in every table (Parquet or CSV).

    Parameters
    ----------
    src, dst : path
        Data directory in the contract, and the new directory (it must not exist, be empty, or hold an
        earlier pseudonymised copy; it is written by :func:`carecall_eval.writer.output_dir`).
    columns : iterable of str
        Id columns to replace wherever they occur (default customer and agent
        ids; add ``"case_id"`` to replace case ids too).  The same column gets
        the same pseudonym in every table, so keys still join.
    env : str
        Environment variable with the key (never written to ``dst``).

    Returns
    -------
    Path
        ``dst``, with a ``pseudonymised.json`` naming the columns and method
        (not the key, nor anything derived from it).  Other files (``operator.toml``)
        are copied unchanged; ``truth.json`` of simulated data is not copied.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..writer import check_output_path, output_dir

    key = get_key(env)
    columns = list(columns)
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputError(f"{src} is not a data directory" + (" (it does not exist)" if not src.exists() else
                                                             " (it is a file)"))
    if os.path.abspath(dst) == os.path.abspath(src) or Path(os.path.abspath(dst)).is_relative_to(os.path.abspath(src)):
        raise InputError(f"pseudonymise: the output {dst} is the data directory {src} or inside it; choose a new "
                         "output directory elsewhere")
    check_output_path(dst, directory=True, what="pseudonymised copy", kind="pseudonymised data")
    with output_dir(dst, kind="pseudonymised data", what="pseudonymised copy") as tmp:
        for f in sorted(src.iterdir()):
            if f.is_dir() or f.name.startswith(".") or f.name == "truth.json":
                continue
            try:
                if f.suffix == ".parquet":
                    t = pq.read_table(f)
                    for col in columns:
                        if col in t.column_names:
                            i = t.column_names.index(col)
                            t = t.set_column(i, col, pa.array(pseudonymise_ids(t.column(col).to_pylist(), key,
                                                                               column=col).tolist(), type=pa.string()))
                    pq.write_table(t, tmp / f.name)
                elif f.suffix == ".csv":
                    d = pd.read_csv(f, dtype=str, keep_default_na=False)
                    for col in columns:
                        if col in d.columns:
                            vals = d[col].where(d[col] != "", None)
                            d[col] = pd.Series(pseudonymise_ids(vals.tolist(), key, column=col)).fillna("")
                    d.to_csv(tmp / f.name, index=False)
                else:
                    shutil.copy2(f, tmp / f.name)
            except PermissionError:
                raise InputError(f"cannot read {f}: permission denied; fix its permissions or copy the data "
                                 "first") from None
            except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read {f}: {str(exc).splitlines()[0]}; run `carecall-eval validate "
                                 f"{src}` to see what is wrong with it") from None
        (tmp / "pseudonymised.json").write_text(json.dumps(
            {"method": "HMAC-SHA256(key, '<column>:' + id), hex truncated to 24 characters, column prefix",
             "columns": columns, "key": f"read from environment variable {env}; not stored"}, indent=2) + "\n")
    return dst
