"""The driver: :func:`simulate` runs the chunks, numbers cases across them, writes the files into a
staging folder of the one atomic writer (:func:`carecall_eval.writer.output_dir`), swapped in when complete."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .calls import number_cases
from .chunk import simulate_chunk
from .params import SimulationParams
from .trial import write_trial_files
from .truth import accumulate, finish_truth
from .writer import TableWriter, write_operator_toml, write_products, write_truth


def simulate(out: str | os.PathLike, *, customers: int = 4000, seed: int = 1, progress: bool = False,
             **params) -> dict:
    """Simulate an operator's data set in the contract and write it to ``out``.

    Parameters
    ----------
    out : path
        Directory to write: created, or replaced atomically when it holds an earlier simulation (written by
        :func:`carecall_eval.writer.output_dir`); a folder holding anything else is refused with an
        :class:`~carecall_eval.errors.InputError`, never deleted.
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
    from ..errors import InputError
    from ..writer import check_output_path, output_dir

    p = SimulationParams(customers=customers, seed=seed, **params)
    if isinstance(p.customers, bool) or not isinstance(p.customers, (int, np.integer)) or p.customers < 1:
        raise InputError(f"customers must be a whole number >= 1, got {p.customers!r}")
    check_output_path(out, directory=True, what="simulated data", kind=SIMULATED_KIND, adopt=_old_simulation)
    t0 = time.perf_counter()
    with output_dir(out, kind=SIMULATED_KIND, what="simulated data", adopt=_old_simulation) as tmp:
        truth = _run(p, tmp, progress, t0)
    return truth


#: Kind of output recorded in a simulated data set's marker file.
SIMULATED_KIND = "simulated data"


def _old_simulation(folder: Path) -> bool:
    """A data set simulated before output markers existed (``make sample``'s data/sample): only the files a
    simulation writes (the contract tables, operator.toml, truth.json, a trial/ folder of study files)."""
    from ..contract.spec import TABLES

    names = {f"{t}.parquet" for t in TABLES} | {"operator.toml", "truth.json"}
    for p in folder.iterdir():
        if p.is_symlink():
            return False
        if p.is_dir() and p.name == "trial":
            if not all(q.is_file() and not q.is_symlink() and q.suffix in (".parquet", ".json", ".txt", ".log")
                       for q in p.iterdir()):
                return False
        elif not (p.is_file() and p.name in names):
            return False
    return True


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
            if ch.trial is not None:
                write_trial_files(p, out, ch.trial)
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

