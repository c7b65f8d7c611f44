"""Named pipeline stages: wall time, peak memory and progress lines.

>>> from carecall_eval.stages import Stages
>>> st = Stages(quiet=True)
>>> with st("cohort"):
...     pass
>>> st.records[0]["stage"]
'cohort'

Peak memory is the process's resident high-water mark during the stage; on
Linux it is reset at the start of each stage (``/proc/self/clear_refs``), so
each stage reports its own peak (DuckDB's buffers and the Python heap alike).
Elsewhere the figure is the peak since the process started.
"""
from __future__ import annotations

import contextlib
import resource
import sys
import time


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Resident-memory high-water mark of this process in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Times named steps and prints one progress line per finished step.

    Parameters
    ----------
    quiet : bool
        Print nothing (records are still kept).
    stream : file, optional
        Where progress lines go (default ``sys.stderr``).

    Attributes
    ----------
    records : list of dict
        ``{"stage", "seconds", "peak_mb"}`` per finished stage, in finishing order.
    """

    def __init__(self, quiet: bool = True, stream=None):
        self.quiet = quiet
        self.stream = stream
        self.records: list[dict] = []
        self._t0 = time.perf_counter()
        self._open: list[dict] = []

    def say(self, msg: str) -> None:
        """Print a progress line (unless quiet)."""
        if not self.quiet:
            print(f"[{time.perf_counter() - self._t0:7.1f} s] {msg}", file=self.stream or sys.stderr, flush=True)

    @contextlib.contextmanager
    def __call__(self, name: str):
        now = peak_mb()
        for rec in self._open:          # an enclosing stage keeps the peak reached so far
            rec["peak_mb"] = max(rec["peak_mb"], now)
        _reset_peak()
        rec = {"stage": name, "seconds": 0.0, "peak_mb": 0.0}
        self._open.append(rec)
        t = time.perf_counter()
        try:
            yield rec
        finally:
            rec["seconds"] = time.perf_counter() - t
            now = peak_mb()
            for r in self._open:
                r["peak_mb"] = max(r["peak_mb"], now)
            self._open.remove(rec)
            self.records.append(rec)
            self.say(f"{name}: {rec['seconds']:.1f} s, peak memory {rec['peak_mb']:,.0f} MB")

    def seconds(self) -> dict:
        """``{stage: seconds}`` (a stage run twice adds up)."""
        out: dict[str, float] = {}
        for r in self.records:
            out[r["stage"]] = out.get(r["stage"], 0.0) + r["seconds"]
        return out
