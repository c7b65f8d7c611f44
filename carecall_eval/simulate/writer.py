"""Files: the Parquet schemas of the contract tables, chunked Parquet writing, ``products.parquet``,
``operator.toml`` and ``truth.json`` (written into the staging folder :func:`carecall_eval.writer.output_dir`
gives :func:`~carecall_eval.simulate.simulate`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .params import SimulationParams
from .population import PRODUCTS

SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("operator", pa.string()), ("birth_year", pa.int32()),
                            ("gender", pa.string()), ("registered_on", pa.date32()), ("closed_on", pa.date32())]),
    "activity": pa.schema([("customer_id", pa.string()), ("date", pa.date32()), ("product", pa.string()),
                           ("wagered", pa.float64()), ("won", pa.float64())]),
    "deposits": pa.schema([("customer_id", pa.string()), ("date", pa.date32()), ("amount", pa.float64())]),
    "triggers": pa.schema([("customer_id", pa.string()), ("triggered_on", pa.date32()), ("trigger", pa.string()),
                           ("value", pa.float64())]),
    "call_cases": pa.schema([("case_id", pa.string()), ("customer_id", pa.string()), ("opened_on", pa.date32()),
                             ("trigger", pa.string()), ("channel", pa.string()), ("arm", pa.string())]),
    "call_attempts": pa.schema([("case_id", pa.string()), ("attempted_at", pa.timestamp("s")),
                                ("answered", pa.bool_()), ("duration_s", pa.float64()), ("agent_id", pa.string()),
                                ("outcome", pa.string()), ("reception", pa.string())]),
    "sms": pa.schema([("case_id", pa.string()), ("sent_at", pa.timestamp("s")), ("kind", pa.string())]),
    "rg_events": pa.schema([("customer_id", pa.string()), ("occurred_on", pa.date32()), ("event", pa.string()),
                            ("via_call", pa.bool_())]),
}


def to_arrow(name: str, df: pd.DataFrame) -> pa.Table:
    """A contract table's frame as Arrow with the table's Parquet schema."""
    schema = SCHEMAS[name]
    if name == "call_cases" and "block" in df.columns:      # the optional column of a randomized study
        schema = schema.append(pa.field("block", pa.string()))
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def arrow_table(name: str, columns: dict) -> pa.Table:
    """A contract table as Arrow with the table's Parquet schema, from its columns (NumPy or Arrow arrays)."""
    schema = SCHEMAS[name]
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) if isinstance(columns[f.name], np.ndarray)
                                 else columns[f.name] for f in schema], schema=schema)


def spool_table(path: Path, table: pa.Table) -> None:
    """Write ``table`` to an Arrow IPC file (a worker's hand-over to the parent, uncompressed)."""
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)


def read_spooled(path: Path) -> pa.Table:
    """A table written by :func:`spool_table`, memory-mapped (no copy)."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


class TableWriter:
    """One Parquet file per contract table, written chunk by chunk (zstd)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, df: pd.DataFrame | pa.Table) -> None:
        table = df if isinstance(df, pa.Table) else to_arrow(name, df)
        schema = SCHEMAS[name]              # the file's schema: the contract's, without pandas' metadata
        if name == "call_cases" and "block" in table.column_names:
            schema = schema.append(pa.field("block", pa.string()))
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(self.out / f"{name}.parquet", schema, compression="zstd")
        self.writers[name].write_table(table)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def write_products(out: Path) -> None:
    pq.write_table(pa.Table.from_pandas(PRODUCTS, preserve_index=False), out / "products.parquet",
                   compression="zstd")


def write_operator_toml(p: SimulationParams, out: Path) -> None:
    """``operator.toml``: the operator's name, currency, SMS policy start and small-cell threshold."""
    toml = [f'operator = "{p.operator}"', f'currency = "{p.currency}"']
    if p.sms_policy_start:
        toml.append(f"sms_policy_start = {p.sms_policy_start}")
    toml += ["small_cell_threshold = 10", f"sms_after_attempts = {p.sms_after_attempts}", "sms_window_hours = 48"]
    (out / "operator.toml").write_text("\n".join(toml) + "\n")


def write_truth(truth: dict, out: Path) -> None:
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
