"""The one pool of worker processes (the simulator's chunks, the self-check's replicates).

Workers are forked, so they inherit what the parent prepared (nothing is pickled but the tasks and the
results).  SIGTERM while they are being forked is only noted (Python swallows an exception raised in its
at-fork hooks) and raised once the pool is up, inside the ``with`` block, so the pool is stopped on the way
out and the atomic writer removes partial output.  A worker writes nothing: SIGTERM (``Pool.terminate``)
simply ends it, and Ctrl-C is left to the parent.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator


def _worker_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a worker outlives a SIGKILLed parent otherwise (its siblings keep the task pipe open): on Linux the
    # kernel sends it SIGTERM when the parent dies
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def worker_pool(processes: int) -> Iterator:
    """A ``multiprocessing`` pool of ``processes`` forked workers, terminated when the block ends."""
    import multiprocessing as mp

    from .writer import check_terminated, terminate_later

    with terminate_later():
        pool = mp.get_context("fork").Pool(processes, initializer=_worker_signals)
    with pool:
        check_terminated()
        yield pool
