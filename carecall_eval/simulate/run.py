"""The driver: :func:`simulate` runs the chunks, numbers cases across them, writes the files into a
temporary directory and renames it into place."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from .calls import number_cases
from .chunk import simulate_chunk
from .params import SimulationParams
from .truth import accumulate, finish_truth
from .writer import TableWriter, temporary_dir, write_operator_toml, write_products, write_truth


def simulate(out: str | os.PathLike, *, customers: int = 4000, seed: int = 1, progress: bool = False,
             **params) -> dict:
    """Simulate an operator's data set in the contract and write it to ``out``.

    Parameters
    ----------
    out : path
        Directory to write (created; replaced atomically if it exists).
    customers : int
        Number of customers.
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed and parameters
        give byte-identical files.
    progress : bool
        Print one line per chunk.
    **params
        Any field of :class:`SimulationParams`.

    Returns
    -------
    dict
        The content of ``truth.json``.
    """
    p = SimulationParams(customers=customers, seed=seed, **params)
    if p.customers < 1:
        raise ValueError(f"customers must be >= 1, got {p.customers}")
    out = Path(out)
    tmp = temporary_dir(out)
    t0 = time.perf_counter()
    try:
        truth = _run(p, tmp, progress, t0)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return truth


# contract table -> attribute of Chunk
_TABLES = {"customers": "customers", "activity": "activity", "deposits": "deposits", "triggers": "triggers",
           "call_cases": "cases", "call_attempts": "attempts", "sms": "sms", "rg_events": "rg_events"}


def _run(p: SimulationParams, out: Path, progress: bool, t0: float) -> dict:
    rng_master = np.random.default_rng(p.seed)
    n_chunks = -(-p.customers // p.chunk_size)
    seeds = rng_master.integers(0, 2**63 - 1, size=n_chunks)
    agent_rng = np.random.default_rng([p.seed, 7])
    writer = TableWriter(out)
    acc: dict = {}
    n_case = 0
    try:
        for c in range(n_chunks):
            off = c * p.chunk_size
            n = min(p.chunk_size, p.customers - off)
            ch = simulate_chunk(p, off, n, np.random.default_rng(seeds[c]))
            # stable case ids and agents across chunks
            ch.cases, ch.attempts, ch.sms = number_cases(ch.cases, ch.attempts, ch.sms, n_case, agent_rng)
            n_case += len(ch.cases)
            for name, attr in _TABLES.items():
                writer.write(name, getattr(ch, attr))
            accumulate(acc, ch.truth, ch.attempts)
            if progress:
                print(f"  chunk {c + 1}/{n_chunks}: {off + n:,} customers, "
                      f"{time.perf_counter() - t0:,.1f} s", flush=True)
    finally:
        writer.close()
    write_products(out)
    write_operator_toml(p, out)
    truth = finish_truth(p, acc)
    write_truth(truth, out)
    return truth

