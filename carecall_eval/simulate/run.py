"""The driver: :func:`simulate` runs the chunks, numbers cases across them, writes the files into a
staging folder of the one atomic writer (:func:`carecall_eval.writer.output_dir`), swapped in when complete."""
from __future__ import annotations

import collections
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .calls import number_cases
from .chunk import Chunk, simulate_chunk
from .params import SimulationParams
from .trial import write_trial_files
from .truth import accumulate, finish_truth
from .writer import TableWriter, read_spooled, spool_table, to_arrow, write_operator_toml, write_products, write_truth


def simulate(out: str | os.PathLike, *, customers: int = 4000, seed: int = 1, progress: bool = False,
             jobs: int | None = None, **params) -> dict:
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
    jobs : int, optional
        Worker processes simulating chunks of :attr:`~SimulationParams.chunk_size` customers side by side
        (default: one per CPU when there are several chunks; forked by :func:`carecall_eval._pool.worker_pool`).
        Each chunk has its own seed and the files
        are written in chunk order, so the output is byte-identical whatever ``jobs`` is.
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
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1):
        raise InputError(f"jobs must be a whole number >= 1, got {jobs!r}")
    t0 = time.perf_counter()
    with output_dir(out, kind=SIMULATED_KIND, what="simulated data", adopt=_old_simulation) as tmp:
        truth = _run(p, tmp, progress, t0, jobs)
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


def _run(p: SimulationParams, out: Path, progress: bool, t0: float, jobs: int | None = None) -> dict:
    rng_master = np.random.default_rng(p.seed)
    n_chunks = -(-p.customers // p.chunk_size)
    seeds = rng_master.integers(0, 2**63 - 1, size=n_chunks)
    agent_rng = np.random.default_rng([p.seed, 7])
    writer = TableWriter(out)
    acc: dict = {}
    n_case = 0
    jobs = min(os.cpu_count() or 1, n_chunks) if jobs is None else min(int(jobs), n_chunks)
    try:
        with _chunks(p, [int(s) for s in seeds], jobs, out) as chunks:
            for c, ch in enumerate(chunks):
                off = c * p.chunk_size
                n = min(p.chunk_size, p.customers - off)
                # stable case ids and agents across chunks: numbered here, in chunk order
                ch.cases, ch.attempts, ch.sms = number_cases(ch.cases, ch.attempts, ch.sms, n_case, agent_rng)
                n_case += len(ch.cases)
                for name, attr in _TABLES.items():
                    table = getattr(ch, attr)
                    if isinstance(table, Path):     # spooled by a worker
                        writer.write(name, read_spooled(table))
                        table.unlink()
                    else:
                        writer.write(name, table)
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


#: Tables a worker hands back in Arrow IPC files of a spool folder in the staging folder (read by the parent
#: memory-mapped: no pickling, no copies through a pipe); the case tables stay pandas, numbered in the parent.
_ARROW = ("customers", "activity", "deposits", "triggers", "rg_events")


def _chunk_job(task: tuple) -> Chunk:
    """Simulate one chunk (in a worker or in this process)."""
    p, c, seed = task[:3]
    off = c * p.chunk_size
    return simulate_chunk(p, off, min(p.chunk_size, p.customers - off), np.random.default_rng(seed))


def _worker_job(task: tuple) -> Chunk:
    """Simulate one chunk in a worker; its bulky tables are spooled to files (the Chunk holds their paths)."""
    ch = _chunk_job(task)
    c, spool = task[1], task[3]
    for name in _ARROW:
        table = getattr(ch, _TABLES[name])
        path = spool / f"{c}-{name}.arrow"
        spool_table(path, table if isinstance(table, pa.Table) else to_arrow(name, table))
        setattr(ch, _TABLES[name], path)
    return ch


@contextlib.contextmanager
def _chunks(p: SimulationParams, seeds: list[int], jobs: int, out: Path) -> Iterator[Iterator[Chunk]]:
    """The chunks in order: simulated here (``jobs`` 1), or by ``jobs`` forked workers, at most a few
    chunks ahead of the writer (memory stays a few chunks whatever the size; their tables spooled in a
    private folder of the staging folder ``out``, removed on every exit and with the staging folder after a
    SIGKILL)."""
    if jobs <= 1:
        yield (_chunk_job((p, c, seed)) for c, seed in enumerate(seeds))
        return
    from .._pool import worker_pool
    from ..writer import private_dir

    with private_dir(out, prefix=".carecall-spool-") as spool, worker_pool(jobs) as pool:
        yield _bounded(pool, [(p, c, seed, spool) for c, seed in enumerate(seeds)], ahead=2 * jobs)


def _bounded(pool, tasks: list, ahead: int) -> Iterator[Chunk]:
    pending: collections.deque = collections.deque()
    it = iter(tasks)
    for t in itertools.islice(it, ahead):
        pending.append(pool.apply_async(_worker_job, (t,)))
    while pending:
        ch = pending.popleft().get()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.apply_async(_worker_job, (nxt,)))
        yield ch
